package snapshot

import (
	"errors"
	"fmt"
	"io"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/klauspost/compress/zstd"
	"github.com/raftmq/raftmq/protocol"
)

// Reader reads one snapshot's body. It is used by one goroutine.
//
// The body is checked end to end only when Read reaches the end: Read
// returns io.EOF only after the whole file's CRC and the body's length
// matched. Until then the bytes read are unverified, so an owner restoring
// state must treat the restore as failed unless it read to io.EOF. A
// damaged snapshot makes Read return an error wrapping ErrCorrupt (naming
// the file), and the store stops listing it.
type Reader struct {
	store  *Store
	path   string
	file   vfs.File
	layout layout
	body   *crcReader
	dec    *zstd.Decoder
	rawLen uint64
	err    error
}

// Open opens the snapshot with index for reading. The returned error wraps
// ErrNotFound when the store holds no such snapshot and ErrCorrupt when its
// header, metadata or lengths are damaged.
func (s *Store) Open(index uint64) (*Reader, error) {
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
	r := &Reader{store: s, path: info.Path, file: f, layout: l}
	r.body = &crcReader{
		r:   io.NewSectionReader(f, l.bodyStart(), int64(l.trailer.bodyLen)),
		crc: protocol.CRC32C(l.head),
	}
	r.dec, err = zstd.NewReader(r.body,
		zstd.WithDecoderConcurrency(1),
		zstd.WithDecoderLowmem(true),
		zstd.WithDecoderMaxWindow(maxDecoderWindow))
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("snapshot: zstd decoder: %w", err)
	}
	return r, nil
}

// Meta returns the snapshot's metadata (checked by its own CRC).
func (r *Reader) Meta() Meta { return r.layout.meta }

// Size returns the file's size in bytes.
func (r *Reader) Size() uint64 { return r.layout.size }

// Read reads the decompressed body; see Reader.
func (r *Reader) Read(p []byte) (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	n, err := r.dec.Read(p)
	r.rawLen += uint64(n)
	switch {
	case err == io.EOF:
		err = r.finish()
		if err == nil {
			err = io.EOF
		}
	case err != nil && r.body.err != nil:
		err = fmt.Errorf("snapshot: read %s: %w", r.path, r.body.err)
	case err != nil:
		err = r.corrupt("body does not decompress: %v", err)
	}
	r.err = err
	return n, err
}

// finish checks the CRC and lengths once the body is decompressed.
func (r *Reader) finish() error {
	if _, err := io.Copy(io.Discard, r.body); err != nil {
		return fmt.Errorf("snapshot: read %s: %w", r.path, err)
	}
	t := r.layout.trailer
	crc := protocol.UpdateCRC32C(r.body.crc, appendTrailer(nil, t.bodyLen, t.rawLen))
	if crc != t.crc {
		return r.corrupt("file CRC %#08x, trailer says %#08x", crc, t.crc)
	}
	if r.rawLen != t.rawLen {
		return r.corrupt("body of %d bytes, trailer says %d", r.rawLen, t.rawLen)
	}
	return nil
}

func (r *Reader) corrupt(format string, args ...any) error {
	err := corruptf(r.path, format, args...)
	r.store.markDamaged(r.path, err)
	return err
}

// Close releases the reader. It does not report corruption (Read does).
func (r *Reader) Close() error {
	if r.dec != nil {
		r.dec.Close()
		r.dec = nil
	}
	if r.err == nil {
		r.err = ErrClosed
	}
	if r.file == nil {
		return nil
	}
	err := r.file.Close()
	r.file = nil
	return err
}
