package snapshot

import (
	"bufio"
	"fmt"
	"io"
	"time"

	"github.com/cockroachdb/errors/oserror"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/klauspost/compress/zstd"
	"github.com/raftmq/raftmq/protocol"
)

// Compression parameters. The window bounds the memory of a reader; a
// reader refuses frames that ask for more than maxDecoderWindow.
const (
	encoderWindow    = 1 << 20
	maxDecoderWindow = 8 << 20
	writeBufferSize  = 256 << 10
)

// Writer writes the body of a new snapshot. Get one from Store.Create,
// write the body, then call Commit (or Abort). It is used by one
// goroutine. A write error is sticky: every later Write and Commit returns
// it, and Commit then removes the temporary file.
type Writer struct {
	store   *Store
	meta    Meta
	tmpPath string
	file    vfs.File
	out     *crcWriter
	buf     *bufio.Writer
	enc     *zstd.Encoder
	headLen uint64
	rawLen  uint64
	err     error
	closed  bool
}

// Create starts a snapshot with meta (Created defaults to now). The body
// written to the returned Writer is compressed as it is written, so it
// never has to fit in memory. Nothing is visible in the store until Commit
// returns; a crash before that leaves the store as it was (the temporary
// file is removed by the next OpenStore).
func (s *Store) Create(meta Meta) (*Writer, error) {
	if err := meta.validate(); err != nil {
		return nil, err
	}
	if meta.Created.IsZero() {
		meta.Created = time.Now()
	}
	meta.Created = time.Unix(0, meta.Created.UnixNano()) // as it reads back
	tmp := s.tempPath("snap", meta.ID())
	f, err := s.fs.Create(tmp, vfs.WriteCategoryUnspecified)
	if err != nil {
		return nil, fmt.Errorf("snapshot: create %s: %w", tmp, err)
	}
	w := &Writer{store: s, meta: meta, tmpPath: tmp, file: f}
	w.out = &crcWriter{w: f}
	w.buf = bufio.NewWriterSize(w.out, writeBufferSize)
	head := appendHeader(nil, meta)
	w.headLen = uint64(len(head))
	_, _ = w.buf.Write(head) // errors surface at the next flush
	w.enc, err = zstd.NewWriter(w.buf,
		zstd.WithEncoderConcurrency(1),
		zstd.WithEncoderLevel(zstd.SpeedFastest),
		zstd.WithWindowSize(encoderWindow),
		zstd.WithEncoderCRC(false)) // the file CRC covers the body
	if err != nil {
		w.abort()
		return nil, fmt.Errorf("snapshot: zstd encoder: %w", err)
	}
	return w, nil
}

// Meta returns the metadata the snapshot is written with.
func (w *Writer) Meta() Meta { return w.meta }

// Write appends p to the body.
func (w *Writer) Write(p []byte) (int, error) {
	if w.closed {
		return 0, ErrClosed
	}
	if w.err != nil {
		return 0, w.err
	}
	n, err := w.enc.Write(p)
	w.rawLen += uint64(n)
	if err != nil {
		w.err = fmt.Errorf("snapshot: write %s: %w", w.tmpPath, err)
		return n, w.err
	}
	return n, nil
}

// ReadFrom copies r into the body (so io.Copy(w, r) needs no extra buffer).
func (w *Writer) ReadFrom(r io.Reader) (int64, error) {
	buf := make([]byte, 64<<10)
	var total int64
	for {
		n, err := r.Read(buf)
		if n > 0 {
			m, werr := w.Write(buf[:n])
			total += int64(m)
			if werr != nil {
				return total, werr
			}
		}
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}

// Commit finishes the body, writes the trailer, syncs the file, renames it
// to its final name and syncs the directory. When it returns nil the
// snapshot is durable and listed. On an error the snapshot is not listed
// and its temporary file is removed; the store's other snapshots are
// untouched. (If only the final directory sync failed, the file may or may
// not survive a crash; either way it is complete.)
func (w *Writer) Commit() (Info, error) {
	if w.closed {
		return Info{}, ErrClosed
	}
	if w.err != nil {
		w.abort()
		return Info{}, w.err
	}
	info, err := w.commit()
	if err != nil {
		w.err = err
		w.abort()
		return Info{}, err
	}
	w.closed = true
	return info, nil
}

func (w *Writer) commit() (Info, error) {
	wrap := func(what string, err error) error {
		return fmt.Errorf("snapshot: %s %s: %w", what, w.tmpPath, err)
	}
	if err := w.enc.Close(); err != nil {
		return Info{}, wrap("compress", err)
	}
	if err := w.buf.Flush(); err != nil {
		return Info{}, wrap("write", err)
	}
	bodyLen := w.out.n - w.headLen
	if _, err := w.buf.Write(appendTrailer(nil, bodyLen, w.rawLen)); err != nil {
		return Info{}, wrap("write", err)
	}
	if err := w.buf.Flush(); err != nil {
		return Info{}, wrap("write", err)
	}
	tail := le.AppendUint32(le.AppendUint32(nil, w.out.crc), trailerMagic)
	if _, err := w.out.Write(tail); err != nil {
		return Info{}, wrap("write", err)
	}
	size := w.out.n
	if err := w.file.Sync(); err != nil {
		return Info{}, wrap("sync", err)
	}
	err := w.file.Close()
	w.file = nil
	if err != nil {
		return Info{}, wrap("close", err)
	}
	return w.store.install(w.tmpPath, w.meta, size)
}

// Abort discards the snapshot and removes its temporary file. It is safe
// to call after Commit (it does nothing then) and more than once.
func (w *Writer) Abort() error {
	if w.closed {
		return nil
	}
	return w.abort()
}

func (w *Writer) abort() error {
	w.closed = true
	if w.enc != nil {
		w.enc.Reset(io.Discard) // release the encoder's state
	}
	if w.file != nil {
		w.file.Close()
		w.file = nil
	}
	if err := w.store.fs.Remove(w.tmpPath); err != nil && !oserror.IsNotExist(err) {
		return fmt.Errorf("snapshot: remove %s: %w", w.tmpPath, err)
	}
	return nil
}

// crcWriter counts and checksums what it passes to w. After an error the
// checksum is meaningless (the writer's error is sticky).
type crcWriter struct {
	w   io.Writer
	crc uint32
	n   uint64
}

func (c *crcWriter) Write(p []byte) (int, error) {
	// Checksum first: a writer may reuse p once Write returns (pebble's
	// MemFS even scrambles it under the race detector).
	c.crc = protocol.UpdateCRC32C(c.crc, p)
	n, err := c.w.Write(p)
	c.n += uint64(n)
	return n, err
}

// crcReader counts and checksums what it reads from r, and remembers r's
// first error other than io.EOF (to tell I/O errors from corruption).
type crcReader struct {
	r   io.Reader
	crc uint32
	n   uint64
	err error
}

func (c *crcReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.crc = protocol.UpdateCRC32C(c.crc, p[:n])
	c.n += uint64(n)
	if err != nil && err != io.EOF && c.err == nil {
		c.err = err
	}
	return n, err
}
