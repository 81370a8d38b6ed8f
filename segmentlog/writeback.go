package segmentlog

import (
	"fmt"
	"sync"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// Write-back (see the package documentation, Write-back). The writer,
// under flushMu, decides when to start the write-back of the active file
// (startWriteback); a short-lived goroutine makes the call (SyncTo waits
// for the write-back started before it, which can take as long as the
// disk does, and must not hold up Append: the Raft driver sends a leader's
// entries to its followers only after appending them). The goroutine
// exists only while a start is pending or running, so an idle log has
// none. Before the active file is closed (roll, truncation, reset, Close)
// and before Sync's fdatasync, the writer waits for it (waitWriteback),
// so it never calls SyncTo on a closed file and Sync reports its failure.
type writeback struct {
	mu      sync.Mutex
	idle    sync.Cond // signalled when running turns false; L is &mu
	running bool      // a goroutine is starting write-backs
	// The pending start: file (nil: none) up to end; path names it.
	file vfs.File
	path string
	end  int64
}

// startWriteback is called after data up to end was written to the active
// segment's file (at path): when at least WritebackBytes were written since
// the last Sync or the last start, it has the kernel start writing the
// file's dirty pages up to end to the disk (vfs.File.SyncTo: on Linux,
// sync_file_range with SYNC_FILE_RANGE_WRITE, after waiting for the
// write-back started before, which bounds the dirty data one large Append
// piles up). Nothing becomes durable by it: only Sync reports entries
// durable. A file system whose SyncTo is a full data sync turns it off for
// the log. A failed start is the disk's error, which the next fdatasync
// would report too: it makes the log fail (sticky). flushMu must be held.
func (l *Log) startWriteback(file vfs.File, path string, end int64) {
	if l.opts.WritebackBytes == 0 || l.noWriteback.Load() {
		return
	}
	if l.wbFile != file {
		l.wbFile, l.wbEnd = file, 0
	}
	if end-l.wbEnd < l.opts.WritebackBytes {
		return
	}
	l.wbEnd = end
	w := &l.wb
	w.mu.Lock()
	defer w.mu.Unlock()
	w.file, w.path, w.end = file, path, end
	if !w.running {
		w.running = true
		go l.runWriteback()
	}
}

// runWriteback makes the pending starts until none is left.
func (l *Log) runWriteback() {
	w := &l.wb
	w.mu.Lock()
	for w.file != nil {
		file, path, end := w.file, w.path, w.end
		w.file = nil
		if l.noWriteback.Load() {
			break
		}
		w.mu.Unlock()
		full, err := file.SyncTo(end)
		if err != nil {
			l.setSticky(fmt.Errorf("segmentlog: start write-back of %s: %w", path, err))
		} else if full {
			l.noWriteback.Store(true)
		}
		w.mu.Lock()
	}
	w.running = false
	w.idle.Broadcast()
	w.mu.Unlock()
}

// waitWriteback drops a pending start and waits until no start is
// running. The writer calls it before closing the active file and before
// Sync's fdatasync (which writes back everything anyway).
func (l *Log) waitWriteback() {
	w := &l.wb
	w.mu.Lock()
	defer w.mu.Unlock()
	w.file = nil
	for w.running {
		if w.idle.L == nil {
			w.idle.L = &w.mu
		}
		w.idle.Wait()
	}
}

// syncedTo notes that a Sync is about to fdatasync the active file (file)
// up to end: write-back counts its bytes from there. flushMu must be held.
func (l *Log) syncedTo(file vfs.File, end int64) {
	l.wbFile, l.wbEnd = file, end
}
