package segmentlog

import (
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// startWriteback is called after data up to end was written to the active
// segment's file (at path): when at least WritebackBytes were written since
// the last Sync or the last start, and the write is not a Sync's own flush
// (whose fdatasync follows), it has the kernel start writing them to
// the disk (startWriteRange: sync_file_range with SYNC_FILE_RANGE_WRITE
// alone over the bytes written since the last start). That call only
// queues the dirty pages for writing: it neither waits for write-back
// started before (SYNC_FILE_RANGE_WAIT_BEFORE would, holding up Append
// and with it a Raft leader's sends to its followers, on a busy disk)
// nor checks for write-back errors (a waiting call would take a failed
// write-back's error, which the kernel reports once per open file, from
// the next fdatasync). Nothing becomes durable by it: only Sync reports
// entries durable. A file without a descriptor (the in-memory file
// system) or a platform or file system without the call has no
// write-back; any other failure is a write failure (the caller makes it
// sticky). flushMu must be held.
func (l *Log) startWriteback(file vfs.File, path string, end int64) error {
	if l.opts.WritebackBytes == 0 || l.noWriteback || l.syncing {
		return nil
	}
	if l.wbFile != file {
		l.wbFile, l.wbEnd = file, 0
	}
	if end-l.wbEnd < l.opts.WritebackBytes {
		return nil
	}
	fd := file.Fd()
	if fd == vfs.InvalidFd {
		l.noWriteback = true
		return nil
	}
	start := l.wbEnd
	l.wbEnd = end
	startRange := l.startWriteRange
	if startRange == nil {
		startRange = startWriteRange
	}
	if err := startRange(fd, start, end-start); err != nil {
		if errors.Is(err, errors.ErrUnsupported) {
			l.noWriteback = true
			return nil
		}
		return fmt.Errorf("segmentlog: start write-back of %s: %w", path, err)
	}
	return nil
}

// syncedTo notes that a Sync is about to fdatasync the active file (file)
// up to end: write-back counts its bytes from there. flushMu must be held.
func (l *Log) syncedTo(file vfs.File, end int64) {
	l.wbFile, l.wbEnd = file, end
}
