package snapshot

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"

	"github.com/cockroachdb/errors/oserror"
	"github.com/cockroachdb/pebble/v2/vfs"
)

const (
	fileSuffix = ".snap"
	tempSuffix = ".tmp"
)

// fileName is the name of the snapshot file with id: snap-<index>-<term>.snap,
// both zero-padded to 20 digits so names sort by index.
func fileName(id ID) string {
	return fmt.Sprintf("snap-%020d-%020d%s", id.Index, id.Term, fileSuffix)
}

func parseFileName(name string) (ID, bool) {
	var id ID
	if len(name) != len(fileName(ID{})) || !strings.HasSuffix(name, fileSuffix) {
		return id, false
	}
	if _, err := fmt.Sscanf(name, "snap-%020d-%020d.snap", &id.Index, &id.Term); err != nil {
		return id, false
	}
	return id, fileName(id) == name
}

// Info describes one snapshot held by a Store.
type Info struct {
	Meta Meta
	// Path is the file's path in the store's file system.
	Path string
	// Size is the file's size in bytes (what a Sender streams).
	Size uint64
}

// Store is a directory of snapshot files. See the package documentation.
// Its methods are safe for concurrent use; one Store owns its directory.
type Store struct {
	fs  vfs.FS
	dir string

	mu        sync.Mutex
	snapshots map[uint64]*entry // by index
	damaged   []error
	tempSeq   uint64
}

type entry struct {
	info Info
}

// OpenStore opens (creating it if needed) the snapshot directory dir on fs.
// It removes temporary files left by interrupted writes and installs, and
// reads every snapshot's header and metadata (not its body). A snapshot
// whose header, metadata or lengths are damaged is left in place, not
// listed, and reported by Damaged; it is not an error of OpenStore.
func OpenStore(fs vfs.FS, dir string) (*Store, error) {
	s := &Store{fs: fs, dir: dir, snapshots: map[uint64]*entry{}}
	if err := fs.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("snapshot: create %s: %w", dir, err)
	}
	if err := s.syncDir(fs.PathDir(dir)); err != nil {
		return nil, err
	}
	names, err := fs.List(dir)
	if err != nil {
		return nil, fmt.Errorf("snapshot: list %s: %w", dir, err)
	}
	slices.Sort(names)
	removed := false
	for _, name := range names {
		path := fs.PathJoin(dir, name)
		if strings.HasSuffix(name, tempSuffix) {
			if err := fs.Remove(path); err != nil && !oserror.IsNotExist(err) {
				return nil, fmt.Errorf("snapshot: remove %s: %w", path, err)
			}
			removed = true
			continue
		}
		id, ok := parseFileName(name)
		if !ok {
			continue
		}
		info, err := s.readInfo(path)
		if errors.Is(err, ErrCorrupt) || errors.Is(err, ErrUnsupportedVersion) {
			s.damaged = append(s.damaged, err)
			continue
		}
		if err != nil {
			return nil, err
		}
		if info.Meta.ID() != id {
			s.damaged = append(s.damaged, corruptf(path, "metadata names snapshot %v", info.Meta.ID()))
			continue
		}
		if old := s.snapshots[id.Index]; old != nil {
			// Two terms at one index: a crash between installing the
			// second and removing the first. Names sort by term, so
			// the later one is the newer install.
			if err := fs.Remove(old.info.Path); err != nil && !oserror.IsNotExist(err) {
				return nil, fmt.Errorf("snapshot: remove %s: %w", old.info.Path, err)
			}
			removed = true
		}
		s.snapshots[id.Index] = &entry{info: info}
	}
	if removed {
		if err := s.syncDir(dir); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// Dir returns the store's directory.
func (s *Store) Dir() string { return s.dir }

// List returns the usable snapshots, oldest (lowest index) first.
func (s *Store) List() []Info {
	s.mu.Lock()
	defer s.mu.Unlock()
	infos := make([]Info, 0, len(s.snapshots))
	for _, e := range s.snapshots {
		infos = append(infos, e.info)
	}
	slices.SortFunc(infos, func(a, b Info) int { return cmp.Compare(a.Meta.Index, b.Meta.Index) })
	return infos
}

// Latest returns the snapshot with the highest index, and false when the
// store holds none. Its body is checked only when read (Open) or verified.
func (s *Store) Latest() (Info, bool) {
	infos := s.List()
	if len(infos) == 0 {
		return Info{}, false
	}
	return infos[len(infos)-1], true
}

// Get returns the snapshot with index, or an error wrapping ErrNotFound.
func (s *Store) Get(index uint64) (Info, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.snapshots[index]
	if e == nil {
		return Info{}, fmt.Errorf("%w: index %d in %s", ErrNotFound, index, s.dir)
	}
	return e.info, nil
}

// Damaged returns the errors (each wrapping ErrCorrupt or
// ErrUnsupportedVersion, naming the file) of the snapshot files found
// unusable so far, at open or when read. Those files stay on disk for
// inspection and are never listed, opened or streamed.
func (s *Store) Damaged() []error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.damaged)
}

// Verify reads the whole file of snapshot index and checks its CRC (without
// decompressing the body). A mismatch is an error wrapping ErrCorrupt, and
// the snapshot is no longer listed.
func (s *Store) Verify(index uint64) error {
	info, err := s.Get(index)
	if err != nil {
		return err
	}
	return s.verify(info)
}

func (s *Store) verify(info Info) error {
	err := verifyFile(s.fs, info.Path)
	if errors.Is(err, ErrCorrupt) {
		s.markDamaged(info.Path, err)
	}
	return err
}

// Prune removes old snapshots. It keeps the keep newest ones and, always,
// the newest snapshot whose index is at least need and whose whole file
// passes its CRC check (the owner passes the index its state must be
// rebuildable from, typically its log's FirstIndex()-1: that snapshot plus
// the log cover everything). A snapshot that fails the check is reported
// as damaged and not counted. When no valid snapshot has an index of at
// least need, Prune removes nothing and returns an error wrapping
// ErrNotFound; the owner must then not delete log entries before need.
// It returns the indexes of the removed snapshots; removals are durable
// when it returns without error.
func (s *Store) Prune(keep int, need uint64) (removed []uint64, err error) {
	var anchor *Info
	newestFirst := s.List()
	slices.Reverse(newestFirst)
	for i := range newestFirst {
		if newestFirst[i].Meta.Index < need {
			break
		}
		err := s.verify(newestFirst[i])
		if errors.Is(err, ErrCorrupt) {
			continue
		}
		if err != nil {
			return nil, err
		}
		anchor = &newestFirst[i]
		break
	}
	if anchor == nil {
		return nil, fmt.Errorf("%w: no valid snapshot in %s covers index %d", ErrNotFound, s.dir, need)
	}
	infos := s.List() // without the damaged ones found above
	slices.Reverse(infos)
	for i, info := range infos {
		if i < keep || info.Path == anchor.Path {
			continue
		}
		if err := s.fs.Remove(info.Path); err != nil && !oserror.IsNotExist(err) {
			return removed, fmt.Errorf("snapshot: remove %s: %w", info.Path, err)
		}
		s.mu.Lock()
		if e := s.snapshots[info.Meta.Index]; e != nil && e.info.Path == info.Path {
			delete(s.snapshots, info.Meta.Index)
		}
		s.mu.Unlock()
		removed = append(removed, info.Meta.Index)
	}
	if len(removed) > 0 {
		if err := s.syncDir(s.dir); err != nil {
			return removed, err
		}
	}
	return removed, nil
}

// markDamaged stops listing the snapshot at path and records err.
func (s *Store) markDamaged(path string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for index, e := range s.snapshots {
		if e.info.Path == path {
			delete(s.snapshots, index)
			s.damaged = append(s.damaged, err)
		}
	}
}

// tempPath returns a fresh temporary path for prefix and id.
func (s *Store) tempPath(prefix string, id ID) string {
	s.mu.Lock()
	s.tempSeq++
	seq := s.tempSeq
	s.mu.Unlock()
	return s.fs.PathJoin(s.dir, fmt.Sprintf("%s-%020d-%020d.%d%s", prefix, id.Index, id.Term, seq, tempSuffix))
}

// install renames the complete, synced temporary file tmp to the name of
// meta's snapshot, makes the rename durable, and lists the snapshot. An
// older file with the same index (another term) is removed.
func (s *Store) install(tmp string, meta Meta, size uint64) (Info, error) {
	path := s.fs.PathJoin(s.dir, fileName(meta.ID()))
	if err := s.fs.Rename(tmp, path); err != nil {
		return Info{}, fmt.Errorf("snapshot: rename %s to %s: %w", tmp, path, err)
	}
	if err := s.syncDir(s.dir); err != nil {
		return Info{}, err
	}
	info := Info{Meta: meta, Path: path, Size: size}
	s.mu.Lock()
	old := s.snapshots[meta.Index]
	s.snapshots[meta.Index] = &entry{info: info}
	s.mu.Unlock()
	if old != nil && old.info.Path != path {
		if err := s.fs.Remove(old.info.Path); err != nil && !oserror.IsNotExist(err) {
			return info, fmt.Errorf("snapshot: remove %s: %w", old.info.Path, err)
		}
		if err := s.syncDir(s.dir); err != nil {
			return info, err
		}
	}
	return info, nil
}

func (s *Store) syncDir(dir string) error {
	d, err := s.fs.OpenDir(dir)
	if err != nil {
		return fmt.Errorf("snapshot: open directory %s: %w", dir, err)
	}
	err = d.Sync()
	if closeErr := d.Close(); err == nil {
		err = closeErr
	}
	if err != nil {
		return fmt.Errorf("snapshot: sync directory %s: %w", dir, err)
	}
	return nil
}

// readInfo reads and checks a snapshot file's header, metadata and trailer.
// Damage is an error wrapping ErrCorrupt; I/O errors are returned as such.
func (s *Store) readInfo(path string) (Info, error) {
	f, err := s.fs.Open(path)
	if err != nil {
		return Info{}, fmt.Errorf("snapshot: open %s: %w", path, err)
	}
	defer f.Close()
	l, err := readLayout(f, path)
	if err != nil {
		return Info{}, err
	}
	return Info{Meta: l.meta, Path: path, Size: l.size}, nil
}

// layout is a snapshot file's checked header, metadata and trailer.
type layout struct {
	meta    Meta
	head    []byte // fixed header and metadata bytes
	trailer trailer
	size    uint64
}

func (l layout) bodyStart() int64 { return int64(len(l.head)) }

// readLayout reads and checks the parts of a snapshot file around its body.
func readLayout(f vfs.File, path string) (layout, error) {
	stat, err := f.Stat()
	if err != nil {
		return layout{}, fmt.Errorf("snapshot: stat %s: %w", path, err)
	}
	size := uint64(stat.Size())
	if size < headerSize+trailerSize {
		return layout{}, corruptf(path, "file of %d bytes is too short", size)
	}
	head := make([]byte, headerSize)
	if err := readFull(f, head, 0, path); err != nil {
		return layout{}, err
	}
	h, err := decodeFixedHeader(head)
	if errors.Is(err, ErrUnsupportedVersion) {
		return layout{}, fmt.Errorf("%w: %s", err, path)
	}
	if err != nil {
		return layout{}, corruptf(path, "%v", err)
	}
	if uint64(h.metaLen) > size-headerSize-trailerSize {
		return layout{}, corruptf(path, "metadata length %d exceeds the file", h.metaLen)
	}
	head = append(head, make([]byte, h.metaLen)...)
	if err := readFull(f, head[headerSize:], headerSize, path); err != nil {
		return layout{}, err
	}
	meta, err := checkMeta(head, head[headerSize:], h)
	if err != nil {
		return layout{}, corruptf(path, "%v", err)
	}
	tb := make([]byte, trailerSize)
	if err := readFull(f, tb, int64(size)-trailerSize, path); err != nil {
		return layout{}, err
	}
	t, err := decodeTrailer(tb)
	if err == nil {
		err = checkLayout(size, h, t)
	}
	if err != nil {
		return layout{}, corruptf(path, "%v", err)
	}
	return layout{meta: meta, head: head, trailer: t, size: size}, nil
}

func readFull(f vfs.File, b []byte, off int64, path string) error {
	if _, err := f.ReadAt(b, off); err != nil {
		if errors.Is(err, io.EOF) {
			return corruptf(path, "short read at byte %d", off)
		}
		return fmt.Errorf("snapshot: read %s at byte %d: %w", path, off, err)
	}
	return nil
}

// verifyFile checks the whole-file CRC of the snapshot at path.
func verifyFile(fs vfs.FS, path string) error {
	f, err := fs.Open(path)
	if err != nil {
		return fmt.Errorf("snapshot: open %s: %w", path, err)
	}
	defer f.Close()
	l, err := readLayout(f, path)
	if err != nil {
		return err
	}
	crc := crcReader{r: io.NewSectionReader(f, 0, int64(l.size-trailerCRCSpan))}
	if _, err := io.CopyBuffer(io.Discard, &crc, make([]byte, 256<<10)); err != nil {
		return fmt.Errorf("snapshot: read %s: %w", path, err)
	}
	if crc.crc != l.trailer.crc {
		return corruptf(path, "file CRC %#08x, trailer says %#08x", crc.crc, l.trailer.crc)
	}
	return nil
}
