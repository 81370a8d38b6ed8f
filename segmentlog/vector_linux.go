package segmentlog

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// vectorWrites reports whether the platform has pwritev.
const vectorWrites = true

// iovecs is the reused scratch a vectored write describes its pieces in.
type iovecs = []unix.Iovec

// pwritev writes pieces (at most maxPieces, none empty) at pos of the file
// with descriptor fd with one pwritev call and returns how many bytes it
// wrote, which may be fewer than the pieces hold. iov is the caller's
// scratch; it is cleared again before pwritev returns, so it keeps no
// reference to the pieces.
func pwritev(fd uintptr, pieces [][]byte, pos int64, iov *iovecs) (int, error) {
	v := (*iov)[:0]
	for _, p := range pieces {
		v = append(v, unix.Iovec{Base: unsafe.SliceData(p)})
		v[len(v)-1].SetLen(len(p))
	}
	*iov = v
	defer clear(v)
	// The offset goes in two words, low and high (on 64-bit Linux the
	// high word is ignored), as in golang.org/x/sys/unix.
	const longBits = unix.SizeofLong * 8
	lo, hi := uintptr(pos), uintptr(uint64(pos)>>(longBits-1)>>1)
	for {
		n, _, errno := unix.Syscall6(unix.SYS_PWRITEV, fd, uintptr(unsafe.Pointer(unsafe.SliceData(v))), uintptr(len(v)), lo, hi, 0)
		if errno == unix.EINTR {
			continue
		}
		if errno != 0 {
			return 0, errno
		}
		return int(n), nil
	}
}
