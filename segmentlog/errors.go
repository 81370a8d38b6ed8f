package segmentlog

import (
	"errors"
	"fmt"
)

var (
	// ErrCorrupt marks every corruption the log detects: a CRC mismatch, a
	// malformed frame or header, segments that do not follow each other.
	// Errors wrapping it are *CorruptError values naming file and position.
	ErrCorrupt = errors.New("segmentlog: corrupt log")
	// ErrClosed is returned by every call on a closed log.
	ErrClosed = errors.New("segmentlog: log closed")
	// ErrOutOfRange is returned for an index or record offset the log does
	// not hold (deleted by retention or never appended).
	ErrOutOfRange = errors.New("segmentlog: out of range")
	// ErrNotRecordBatch is returned by OffsetOfIndex for an entry that is
	// not a record batch and so has no record offsets.
	ErrNotRecordBatch = errors.New("segmentlog: entry is not a record batch")
)

// CorruptError describes one detected corruption. It matches ErrCorrupt
// with errors.Is.
type CorruptError struct {
	File   string // path of the segment or index file
	Pos    int64  // byte position inside File
	Reason string
}

func (e *CorruptError) Error() string {
	return fmt.Sprintf("segmentlog: corrupt log: %s at byte %d: %s", e.File, e.Pos, e.Reason)
}

// Is makes errors.Is(err, ErrCorrupt) true.
func (e *CorruptError) Is(target error) bool { return target == ErrCorrupt }

func corruptf(file string, pos int64, format string, args ...any) error {
	return &CorruptError{File: file, Pos: pos, Reason: fmt.Sprintf(format, args...)}
}
