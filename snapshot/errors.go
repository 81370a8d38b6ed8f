package snapshot

import (
	"errors"
	"fmt"
)

// Sentinel errors. Test them with errors.Is; the messages of the wrapping
// errors name the file (and, where known, what is wrong with it).
var (
	// ErrCorrupt marks every kind of damage to a snapshot file: a bad magic,
	// a CRC mismatch, inconsistent lengths, an undecodable body. The file
	// can not be used; the store stops listing it (see Store.Damaged).
	ErrCorrupt = errors.New("snapshot: corrupt")
	// ErrUnsupportedVersion is returned for a file or chunk written in a
	// format version this package does not know (written by a newer raftmq).
	ErrUnsupportedVersion = errors.New("snapshot: unsupported format version")
	// ErrNotFound is returned when no snapshot has the asked index (or none
	// covers the asked index).
	ErrNotFound = errors.New("snapshot: not found")
	// ErrClosed is returned by a Writer or Receiver used after Commit, Abort,
	// Abandon or the completed install.
	ErrClosed = errors.New("snapshot: closed")
	// ErrBadChunk marks a chunk or ack message that does not decode (bad
	// CRC, bad lengths) or does not fit the transfer it was given to.
	ErrBadChunk = errors.New("snapshot: bad chunk")
	// ErrWrongSnapshot is returned by Receiver.Receive for a chunk of
	// another snapshot (another index or term) than the receiver's.
	ErrWrongSnapshot = errors.New("snapshot: chunk of another snapshot")
	// ErrInvalidMeta is returned by Store.Create for metadata that can not be
	// written (zero index, an oversized Extra or configuration).
	ErrInvalidMeta = errors.New("snapshot: invalid metadata")
)

// corruptf returns an error wrapping ErrCorrupt that names path.
func corruptf(path, format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s", ErrCorrupt, path, fmt.Sprintf(format, args...))
}
