package segmentlog

import (
	"errors"

	"golang.org/x/sys/unix"
)

// fallocate allocates [offset, offset+length) of the file, extending its
// size (mode 0). A file system without fallocate reports an error matching
// errors.ErrUnsupported.
func fallocate(fd uintptr, offset, length int64) error {
	for {
		err := unix.Fallocate(int(fd), 0, offset, length)
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EOPNOTSUPP || err == unix.ENOSYS:
			return errors.Join(errors.ErrUnsupported, err)
		}
		return err
	}
}

// ftruncate sets the file's size.
func ftruncate(fd uintptr, size int64) error {
	for {
		err := unix.Ftruncate(int(fd), size)
		if err != unix.EINTR {
			return err
		}
	}
}
