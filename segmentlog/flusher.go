package segmentlog

import (
	"fmt"
	"sync"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// The background flusher.
//
// When an append chunk fills, the writer hands its unwritten frames to the
// flusher and goes on framing entries into the next chunk, so the kernel's
// copy of one chunk into the page cache overlaps the framing (copy, stamp,
// CRC) of the next. At most one write is in flight: a writer that fills
// another chunk meanwhile waits for it. Everything that writes the active
// file itself, syncs it, cuts it or closes it (Sync, roll, TruncateAfter,
// ResetOffsets, Close) first waits for the flusher to be idle, with
// flushMu held so no new write starts; so the file is written in order,
// an fdatasync covers every write handed off before it, and no write
// lands in a file that was closed or cut.
//
// Each hand-off (one per WriteBufferBytes appended) starts a goroutine that
// makes that one write and ends: a log has at most one, only while it
// writes, and nothing to stop at Close.
// Its write advances flushedEnd and flushedIndex (what readers may read
// from the file, what the tail cache may evict) only once it returns. A
// failed write is sticky, like every write error: the next Append, Sync or
// maintenance call reports it, and nothing it held is ever reported
// durable.

// flushJob is one hand-off: chunk.buf[from:to] goes to file at position
// pos+from; it ends with entry lastIndex.
type flushJob struct {
	chunk     *appendChunk
	from, to  int
	pos       int64
	file      vfs.File
	path      string
	lastIndex uint64
}

// flusher is the hand-off point between the writer and the flusher
// goroutine. Its mutex is taken after every Log mutex, never before one.
type flusher struct {
	mu   sync.Mutex
	idle sync.Cond // on mu; signalled when busy becomes false
	job  flushJob
	busy bool // job is being written
}

// handOff gives the current chunk's published, unwritten frames to a new
// flusher goroutine, after the write in flight (if any) is done. flushMu
// must be held. It returns the sticky error, if any, instead.
func (l *Log) handOff() error {
	l.waitFlusher()
	l.mu.RLock()
	err := l.checkWritable()
	job := flushJob{chunk: l.chunk, from: l.chunkFlushed, to: l.chunkUsed, pos: l.chunkPos,
		file: l.writeFile, path: l.active().path, lastIndex: l.lastIndex}
	l.mu.RUnlock()
	if err != nil || job.chunk == nil || job.from == job.to {
		return err
	}
	f := &l.flusher
	f.mu.Lock()
	f.job, f.busy = job, true
	f.mu.Unlock()
	go l.flushOne()
	return nil
}

// waitFlusher waits until no handed-off write is in flight. flushMu must
// be held, so none can start before it is released.
func (l *Log) waitFlusher() {
	f := &l.flusher
	f.mu.Lock()
	for f.busy {
		f.idle.Wait()
	}
	f.mu.Unlock()
}

// flushOne writes the handed-off job.
func (l *Log) flushOne() {
	f := &l.flusher
	f.mu.Lock()
	job := f.job
	f.mu.Unlock()
	l.writeJob(&job)
	f.mu.Lock()
	f.job, f.busy = flushJob{}, false
	f.idle.Broadcast()
	f.mu.Unlock()
}

func (l *Log) writeJob(j *flushJob) {
	if _, err := j.file.WriteAt(j.chunk.buf[j.from:j.to], j.pos+int64(j.from)); err != nil {
		l.setSticky(fmt.Errorf("segmentlog: write %s: %w", j.path, err))
		return
	}
	l.mu.Lock()
	l.flushedEnd = j.pos + int64(j.to)
	l.flushedIndex = j.lastIndex
	l.evictLocked()
	l.mu.Unlock()
}
