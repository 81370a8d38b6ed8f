package snapshot

import (
	"errors"
	"fmt"

	"github.com/cockroachdb/errors/oserror"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/raftmq/raftmq/protocol"
)

// Sender reads a stored snapshot's raw file in chunks for InstallSnapshot.
// It holds the file open, so a Prune during the transfer does not cut it
// short. It keeps no transfer state: the owner asks for the chunk at the
// offset the receiver wants (Ack.Next) and decides how many chunks to keep
// in flight. One goroutine at a time.
type Sender struct {
	id          ID
	meta        Meta
	path        string
	file        vfs.File
	size        uint64
	maxChunkLen int
}

// NewSender opens snapshot index for streaming in chunks whose encoding
// (AppendChunk) is at most maxMessageBytes long; pick it to fit the
// transport's max payload with the owner's own framing subtracted. It
// must exceed ChunkHeaderSize.
func (s *Store) NewSender(index uint64, maxMessageBytes int) (*Sender, error) {
	if maxMessageBytes <= ChunkHeaderSize {
		return nil, fmt.Errorf("snapshot: chunk message size %d leaves no room after the %d-byte header", maxMessageBytes, ChunkHeaderSize)
	}
	info, err := s.Get(index)
	if err != nil {
		return nil, err
	}
	f, err := s.fs.Open(info.Path)
	if err != nil {
		return nil, fmt.Errorf("snapshot: open %s: %w", info.Path, err)
	}
	l, err := readLayout(f, info.Path)
	if err != nil {
		f.Close()
		if errors.Is(err, ErrCorrupt) {
			s.markDamaged(info.Path, err)
		}
		return nil, err
	}
	return &Sender{id: l.meta.ID(), meta: l.meta, path: info.Path, file: f, size: l.size,
		maxChunkLen: maxMessageBytes - ChunkHeaderSize}, nil
}

// ID returns the snapshot's id.
func (s *Sender) ID() ID { return s.id }

// Meta returns the snapshot's metadata.
func (s *Sender) Meta() Meta { return s.meta }

// Size returns the file size, the Total of every chunk.
func (s *Sender) Size() uint64 { return s.size }

// MaxChunkLen returns the most data bytes one chunk carries.
func (s *Sender) MaxChunkLen() int { return s.maxChunkLen }

// AppendChunk appends to dst the encoded chunk that starts at offset
// (offset < Size()), reading the data straight into dst.
func (s *Sender) AppendChunk(dst []byte, offset uint64) ([]byte, error) {
	if offset >= s.size {
		return dst, fmt.Errorf("snapshot: chunk offset %d is not below the size %d of %s", offset, s.size, s.path)
	}
	n := int(min(uint64(s.maxChunkLen), s.size-offset))
	start := len(dst)
	dst = appendChunkHeader(dst, s.id, offset, s.size, offset+uint64(n) == s.size, n)
	dst = append(dst, make([]byte, n)...)
	if _, err := s.file.ReadAt(dst[len(dst)-n:], int64(offset)); err != nil {
		return dst[:start], fmt.Errorf("snapshot: read %s at byte %d: %w", s.path, offset, err)
	}
	return sealChunk(dst, start), nil
}

// Close closes the file.
func (s *Sender) Close() error {
	if s.file == nil {
		return nil
	}
	err := s.file.Close()
	s.file = nil
	return err
}

// Receiver assembles a snapshot from chunks into a temporary file and
// installs it into its Store once the last chunk arrived and the whole
// file checked out. It is used by one goroutine.
//
// Chunks are taken in order only: a duplicate (below the next wanted
// offset) or a chunk after a gap is ignored, and Receive answers with the
// offset it still wants, which the sender resumes from. A crash at any
// point leaves the store as it was, or with the new snapshot complete and
// durable; the temporary file is removed by the next OpenStore.
type Receiver struct {
	store   *Store
	id      ID
	total   uint64
	tmpPath string
	file    vfs.File
	next    uint64
	crc     uint32 // over bytes [0, min(next, total-trailerCRCSpan))
	head    []byte // the first bytes: fixed header, then metadata
	headLen int    // how many head bytes to keep (known after the fixed header)
	tail    [trailerSize]byte
	info    Info
	done    bool
	err     error
}

// NewReceiver starts receiving snapshot id, whose file has total bytes (the
// Total of its chunks). It creates the temporary file at once.
func (s *Store) NewReceiver(id ID, total uint64) (*Receiver, error) {
	if total < headerSize+trailerSize {
		return nil, fmt.Errorf("%w: snapshot %v of %d bytes is too short", ErrBadChunk, id, total)
	}
	tmp := s.tempPath("recv", id)
	f, err := s.fs.Create(tmp, vfs.WriteCategoryUnspecified)
	if err != nil {
		return nil, fmt.Errorf("snapshot: create %s: %w", tmp, err)
	}
	return &Receiver{store: s, id: id, total: total, tmpPath: tmp, file: f, headLen: headerSize}, nil
}

// ID returns the snapshot being received.
func (r *Receiver) ID() ID { return r.id }

// Next returns the next offset the receiver wants.
func (r *Receiver) Next() uint64 { return r.next }

// Done reports whether the snapshot is installed.
func (r *Receiver) Done() bool { return r.done }

// Ack returns the receiver's progress as an Ack for the sender.
func (r *Receiver) Ack() Ack { return Ack{ID: r.id, Next: r.next, Done: r.done} }

// Info returns the installed snapshot (once Done).
func (r *Receiver) Info() Info { return r.info }

// Receive takes one chunk and returns the receiver's progress. A chunk at
// another offset than Next is ignored (nil error). A chunk of another
// snapshot is an error wrapping ErrWrongSnapshot and one with another total
// size an error wrapping ErrBadChunk; both leave the receiver as it was.
// The chunk that completes the file makes Receive verify and install it;
// Done then reports true. An I/O error, or a file that turns out damaged
// (an error wrapping ErrCorrupt), abandons the receiver: its temporary file
// is removed and every later call returns the error.
func (r *Receiver) Receive(c Chunk) (Ack, error) {
	switch {
	case r.done:
		return r.Ack(), nil
	case r.err != nil:
		return r.Ack(), r.err
	case c.ID != r.id:
		return r.Ack(), fmt.Errorf("%w: chunk of %v, receiving %v", ErrWrongSnapshot, c.ID, r.id)
	case c.Total != r.total:
		return r.Ack(), fmt.Errorf("%w: chunk says %d bytes, snapshot %v has %d", ErrBadChunk, c.Total, r.id, r.total)
	case c.Offset != r.next || len(c.Data) == 0:
		return r.Ack(), nil
	case c.Offset+uint64(len(c.Data)) > r.total:
		return r.Ack(), fmt.Errorf("%w: bytes beyond the size %d", ErrBadChunk, r.total)
	}
	if err := r.write(c.Data); err != nil {
		r.fail(err)
		return r.Ack(), err
	}
	if r.next == r.total {
		if err := r.install(); err != nil {
			r.fail(err)
			return r.Ack(), err
		}
	}
	return r.Ack(), nil
}

// write appends data at r.next, checksums it and checks the header early.
// The bookkeeping comes before the file write: a file may reuse data once
// Write returns (pebble's MemFS scrambles it under the race detector).
func (r *Receiver) write(data []byte) error {
	if crcEnd := r.total - trailerCRCSpan; r.next < crcEnd {
		r.crc = protocol.UpdateCRC32C(r.crc, data[:min(uint64(len(data)), crcEnd-r.next)])
	}
	if tailStart := r.total - trailerSize; r.next+uint64(len(data)) > tailStart {
		skip := uint64(0)
		if r.next < tailStart {
			skip = tailStart - r.next
		}
		copy(r.tail[r.next+skip-tailStart:], data[skip:])
	}
	if err := r.keepHead(data); err != nil {
		return err
	}
	if _, err := r.file.Write(data); err != nil {
		return fmt.Errorf("snapshot: write %s: %w", r.tmpPath, err)
	}
	r.next += uint64(len(data))
	return nil
}

// keepHead keeps the fixed header and metadata bytes of data (which starts
// at r.next) and checks the fixed header as soon as it is complete.
func (r *Receiver) keepHead(data []byte) error {
	for len(r.head) < r.headLen && len(data) > 0 {
		n := min(len(data), r.headLen-len(r.head))
		r.head = append(r.head, data[:n]...)
		data = data[n:]
		if len(r.head) != headerSize || r.headLen != headerSize {
			continue
		}
		h, err := decodeFixedHeader(r.head)
		if errors.Is(err, ErrUnsupportedVersion) {
			return fmt.Errorf("%w: %s", err, r.tmpPath)
		}
		if err != nil {
			return corruptf(r.tmpPath, "%v", err)
		}
		if uint64(h.metaLen) > r.total-headerSize-trailerSize {
			return corruptf(r.tmpPath, "metadata length %d exceeds the file", h.metaLen)
		}
		r.headLen = headerSize + int(h.metaLen)
	}
	return nil
}

// install checks the complete temporary file, syncs it and installs it.
func (r *Receiver) install() error {
	h, err := decodeFixedHeader(r.head)
	if err != nil {
		return corruptf(r.tmpPath, "%v", err)
	}
	meta, err := checkMeta(r.head, r.head[headerSize:], h)
	if err != nil {
		return corruptf(r.tmpPath, "%v", err)
	}
	if meta.ID() != r.id {
		return corruptf(r.tmpPath, "metadata names snapshot %v, chunks name %v", meta.ID(), r.id)
	}
	t, err := decodeTrailer(r.tail[:])
	if err == nil {
		err = checkLayout(r.total, h, t)
	}
	if err != nil {
		return corruptf(r.tmpPath, "%v", err)
	}
	if r.crc != t.crc {
		return corruptf(r.tmpPath, "file CRC %#08x, trailer says %#08x", r.crc, t.crc)
	}
	if err := r.file.Sync(); err != nil {
		return fmt.Errorf("snapshot: sync %s: %w", r.tmpPath, err)
	}
	err = r.file.Close()
	r.file = nil
	if err != nil {
		return fmt.Errorf("snapshot: close %s: %w", r.tmpPath, err)
	}
	info, err := r.store.install(r.tmpPath, meta, r.total)
	if err != nil {
		return err
	}
	r.info, r.done = info, true
	return nil
}

func (r *Receiver) fail(err error) {
	r.err = err
	r.abandon()
}

// Abandon stops receiving and removes the temporary file (for example when
// leadership changed or a newer snapshot arrives). The store is left as it
// was. It does nothing once the snapshot is installed, and is safe to call
// more than once.
func (r *Receiver) Abandon() error {
	if r.done {
		return nil
	}
	if r.err == nil {
		r.err = ErrClosed
	}
	return r.abandon()
}

func (r *Receiver) abandon() error {
	if r.file != nil {
		r.file.Close()
		r.file = nil
	}
	if r.tmpPath == "" {
		return nil
	}
	path := r.tmpPath
	r.tmpPath = ""
	if err := r.store.fs.Remove(path); err != nil && !oserror.IsNotExist(err) {
		return fmt.Errorf("snapshot: remove %s: %w", path, err)
	}
	return nil
}
