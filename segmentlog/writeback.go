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
// the writer drops a pending start and waits for the running one
// (waitWriteback), so SyncTo never runs on a closed file. After its
// fdatasync, Sync waits for the starts begun until then before it trusts
// the fdatasync's success: the kernel reports a write-back error to one
// call on the file, and a SyncTo running beside the fdatasync may be the
// one that gets it (the start then makes the log fail, and Sync reports
// that instead).
type writeback struct {
	mu      sync.Mutex
	changed sync.Cond // signalled when done grows; L is &mu
	running bool      // a goroutine is making the starts
	// begun and done count the SyncTo calls begun and finished.
	begun, done uint64
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
// the log. A failed start makes the log fail (sticky): the kernel may have
// reported a write-back error to it and not to the next fdatasync.
// flushMu must be held.
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
	defer w.mu.Unlock()
	for w.file != nil && !l.noWriteback.Load() {
		file, path, end := w.file, w.path, w.end
		w.file = nil
		w.begun++
		w.mu.Unlock()
		full, err := file.SyncTo(end)
		if err != nil {
			l.setSticky(fmt.Errorf("segmentlog: start write-back of %s: %w", path, err))
		} else if full {
			l.noWriteback.Store(true)
		}
		w.mu.Lock()
		w.done++
		w.changed.Broadcast()
	}
	w.file = nil
	w.running = false
}

// waitWriteback waits until every start begun so far has finished, having
// first dropped the pending one when drop is set (the writer, before it
// closes the active file: flushMu keeps new ones from being posted).
func (l *Log) waitWriteback(drop bool) {
	w := &l.wb
	w.mu.Lock()
	defer w.mu.Unlock()
	if drop {
		w.file = nil
	}
	if w.changed.L == nil {
		w.changed.L = &w.mu
	}
	for target := w.begun; w.done < target; {
		w.changed.Wait()
	}
}

// syncedTo notes that a Sync is about to fdatasync the active file (file)
// up to end: write-back counts its bytes from there, and a pending start,
// which the fdatasync makes needless, is dropped. flushMu must be held.
func (l *Log) syncedTo(file vfs.File, end int64) {
	l.wbFile, l.wbEnd = file, end
	l.wb.mu.Lock()
	l.wb.file = nil
	l.wb.mu.Unlock()
}
