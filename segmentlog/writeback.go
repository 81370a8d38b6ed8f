package segmentlog

import (
	"fmt"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// startWriteback is called after data up to end was written to the active
// segment's file (at path): when at least WritebackBytes were written since
// the last Sync or the last start, it asks the kernel to start writing the
// file's dirty pages up to end to the disk (vfs.File.SyncTo: on Linux,
// sync_file_range with SYNC_FILE_RANGE_WRITE, after waiting for the
// write-back it started before, which bounds the dirty data one large
// Append piles up). Nothing becomes durable by it: only Sync reports
// entries durable. A file system whose SyncTo is a full data sync turns it
// off for the log. A failure is returned as a write failure (the caller
// makes it sticky): it is the disk's error, which the next fdatasync
// would report too. flushMu must be held.
func (l *Log) startWriteback(file vfs.File, path string, end int64) error {
	if l.opts.WritebackBytes == 0 || l.noWriteback {
		return nil
	}
	if l.wbFile != file {
		l.wbFile, l.wbEnd = file, 0
	}
	if end-l.wbEnd < l.opts.WritebackBytes {
		return nil
	}
	l.wbEnd = end
	full, err := file.SyncTo(end)
	if err != nil {
		return fmt.Errorf("segmentlog: start write-back of %s: %w", path, err)
	}
	if full {
		l.noWriteback = true
	}
	return nil
}

// syncedTo notes that a Sync is about to fdatasync the active file (file)
// up to end: write-back counts its bytes from there. flushMu must be held.
func (l *Log) syncedTo(file vfs.File, end int64) {
	l.wbFile, l.wbEnd = file, end
}
