//go:build !linux

package segmentlog

import "errors"

// vectorWrites reports whether the platform has pwritev: outside Linux the
// log writes through by copying.
const vectorWrites = false

type iovecs = struct{}

// pwritev is never reached outside Linux (vectorWrites is false).
func pwritev(fd uintptr, pieces [][]byte, pos int64, iov *iovecs) (int, error) {
	return 0, errors.ErrUnsupported
}
