//go:build !linux

package segmentlog

import "errors"

// startWriteRange: outside Linux the log starts no write-back of its own.
func startWriteRange(fd uintptr, off, n int64) error {
	return errors.ErrUnsupported
}
