//go:build !linux

package segmentlog

import "errors"

// fallocate is not used outside Linux: the log appends without
// preallocation there.
func fallocate(fd uintptr, offset, length int64) error { return errors.ErrUnsupported }

// ftruncate is never reached outside Linux (nothing is preallocated).
func ftruncate(fd uintptr, size int64) error { return errors.ErrUnsupported }
