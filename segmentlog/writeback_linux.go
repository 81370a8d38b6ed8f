package segmentlog

import (
	"errors"

	"golang.org/x/sys/unix"
)

// startWriteRange queues the dirty pages of n bytes at off of the file with
// descriptor fd for writing to the disk, without waiting (see
// startWriteback). A file system that does not have the call reports
// errors.ErrUnsupported.
func startWriteRange(fd uintptr, off, n int64) error {
	for {
		err := unix.SyncFileRange(int(fd), off, n, unix.SYNC_FILE_RANGE_WRITE)
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.ENOSYS || err == unix.EINVAL || err == unix.EOPNOTSUPP || err == unix.ESPIPE:
			return errors.Join(errors.ErrUnsupported, err)
		}
		return err
	}
}
