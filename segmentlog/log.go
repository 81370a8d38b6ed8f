package segmentlog

import (
	"errors"
	"fmt"
	"io"
	"sort"
	"sync"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/raftmq/raftmq/protocol"
)

// Log is a segmented append-only log. See the package documentation for the
// contract; it implements raft.LogStorage.
//
// Lock order: syncMu, flushMu, fileMu, mu.
type Log struct {
	fs   vfs.FS
	dir  string
	opts Options
	lock io.Closer

	// syncMu serialises fdatasync with rolls, truncations, resets,
	// deletions and Close, so a file is never closed or cut mid-sync.
	syncMu sync.Mutex
	// flushMu serialises writes of the append buffer to the active file.
	flushMu sync.Mutex
	// fileMu is held for reading while a reader reads segment files, and for
	// writing while files are cut, removed or closed.
	fileMu sync.RWMutex
	// mu guards the fields below.
	mu sync.RWMutex

	closed bool
	err    error // sticky write error

	segments   []*segment // ascending first index; the last one is active
	activeSeg  *segment   // segments' last element (see active)
	writeFile  vfs.File   // read-write handle of the active segment
	flushedEnd int64      // bytes of the active segment written to writeFile
	// allocEnd is the size of the active segment's file: its data and the
	// preallocated zeros after it (see prealloc.go). Changed under flushMu
	// by the writer, or with the log not yet shared.
	allocEnd    int64
	noFallocate bool // fallocate is not supported: no preallocation
	// wbFile and wbEnd are where write-back was last started (or a Sync
	// flushed to); noWriteback turns it off; startWriteRange, if not nil,
	// replaces the system call (tests). See writeback.go. Writer state,
	// under flushMu.
	wbFile          vfs.File
	wbEnd           int64
	noWriteback     bool
	syncing         bool // Sync is flushing: no write-back start
	startWriteRange func(fd uintptr, off, n int64) error
	// syncedEnd is the active segment's flushedEnd at its last Sync
	// (syncMu); syncBytes the average bytes a Sync wrote, which decides
	// whether preallocating pays (see prealloc.go).
	syncedEnd  int64
	syncBytes  atomic.Int64
	generation uint64

	chunk        *appendChunk   // current append buffer; nil until the next Append needs one
	chunkUsed    int            // chunk.buf[:chunkUsed] holds published frames
	chunkFlushed int            // chunk.buf[:chunkFlushed] is written to writeFile
	chunkPos     int64          // file position of chunk.buf[0]
	chunkSeq     uint64         // sequence number of chunk (writer goroutine only)
	chunks       []*appendChunk // chunks cached entries may alias, oldest first (see cache.go)
	chunkBase    uint64         // sequence number of chunks[0]
	freeChunks   []*appendChunk
	freePoints   [][]indexPoint // point lists of deleted segments, for new segments

	// Entries Append framed but has not yet published (writer goroutine
	// only): they are described in the tail cache ring's npending slots
	// after its count, and add these to the active segment.
	through        bool // Append writes the pending entries through (see writer.go)
	vector         bool // ... by vector, without copying them (see vector.go)
	noVector       bool // write through by copying even where vectors work (tests)
	npending       int
	pendingBytes   int // their frame bytes
	pendingRecords uint64
	pendingMaxTime int64                   // the active segment's max timestamp with them
	pendingPoints  []indexPoint            // their index points
	batches        []protocol.BatchSummary // scratch for Append: the batches' headers, read once while validating

	cache tailCache // the most recent entries, up to lastIndex

	lastIndex    uint64
	flushedIndex uint64 // last index written to a file
	nextOffset   uint64
	durableIndex uint64
	lastPointPos int64 // position of the active segment's last index point; -1 if none

	vec vecState // writing through by vector (writer goroutine; see vector.go)
}

// Open opens or creates the log in dir, recovering it: the active segment's
// torn tail is cut (and the cut synced), missing or stale indexes are
// rebuilt, and corruption anywhere else fails with ErrCorrupt.
func Open(fs vfs.FS, dir string, opts Options) (*Log, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	l := &Log{fs: fs, dir: dir, opts: opts, lastPointPos: -1}
	if err := l.open(); err != nil {
		l.closeFiles()
		return nil, err
	}
	return l, nil
}

func (l *Log) path(name string) string { return l.fs.PathJoin(l.dir, name) }

// syncDir makes the directory's entries durable. The directory is opened
// for each sync (at rolls, deletions, truncations and resets, which are
// rare) instead of held open: a broker runs thousands of logs, and each
// held descriptor counts against the process's open-file limit.
func (l *Log) syncDir() error {
	dir, err := l.fs.OpenDir(l.dir)
	if err != nil {
		return fmt.Errorf("segmentlog: open directory %s: %w", l.dir, err)
	}
	err = dir.Sync()
	if cerr := dir.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("segmentlog: sync directory %s: %w", l.dir, err)
	}
	return nil
}

// active is the segment appends go to. It is a field of its own, not
// l.segments' last element, so the writer reads it without mu while
// DeleteBefore, on another goroutine, replaces l.segments (it never removes
// the active segment). Only the writer changes it, always under mu.
func (l *Log) active() *segment { return l.activeSeg }

// setSegmentsLocked replaces the segment list and the active segment; mu is
// held or the log is not yet shared.
func (l *Log) setSegmentsLocked(segments []*segment) {
	l.segments = segments
	l.activeSeg = nil
	if len(segments) > 0 {
		l.activeSeg = segments[len(segments)-1]
	}
}

func (l *Log) firstIndexLocked() uint64 { return l.segments[0].header.firstIndex }

// tailStartLocked is the index of the oldest cached entry (lastIndex+1
// when the cache is empty).
func (l *Log) tailStartLocked() uint64 { return l.lastIndex + 1 - uint64(l.cache.count) }

// cachedLocked returns the cached entry at index, which must be at or
// after tailStartLocked.
func (l *Log) cachedLocked(index uint64) *cachedEntry {
	return l.cache.at(int(index - l.tailStartLocked()))
}

// segmentFor returns the segment holding index (which the log holds).
func (l *Log) segmentFor(index uint64) *segment {
	i := sort.Search(len(l.segments), func(i int) bool { return l.segments[i].header.firstIndex > index })
	return l.segments[max(i-1, 0)]
}

// readLimit is how far readers may read a segment's file.
func (l *Log) readLimitLocked(s *segment) int64 {
	if s == l.active() {
		return l.flushedEnd
	}
	return s.end
}

func (l *Log) checkReadable() error {
	if l.closed {
		return ErrClosed
	}
	return nil
}

func (l *Log) checkWritable() error {
	if l.closed {
		return ErrClosed
	}
	return l.err
}

// setSticky records the first write error; every later write returns it.
func (l *Log) setSticky(err error) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err == nil {
		l.err = err
	}
	return l.err
}

// FirstIndex is the first index the log holds; LastIndex()+1 when empty.
func (l *Log) FirstIndex() uint64 {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.firstIndexLocked()
}

// LastIndex is the last appended index, durable or not.
func (l *Log) LastIndex() uint64 {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.lastIndex
}

// DurableIndex is the last index known to be on stable storage.
func (l *Log) DurableIndex() uint64 {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.durableIndex
}

// NextOffset is the record offset the next appended record batch gets.
func (l *Log) NextOffset() uint64 {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.nextOffset
}

// FirstOffset is the record offset of the first record the log holds (equal
// to NextOffset when it holds no record).
func (l *Log) FirstOffset() uint64 {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.segments[0].header.firstOffset
}

// Term returns the term of index, for index in [FirstIndex-1, LastIndex].
func (l *Log) Term(index uint64) (uint64, error) {
	l.mu.RLock()
	if err := l.checkReadable(); err != nil {
		l.mu.RUnlock()
		return 0, err
	}
	first := l.firstIndexLocked()
	switch {
	case index+1 == first:
		t := l.segments[0].header.prevTerm
		l.mu.RUnlock()
		return t, nil
	case index < first || index > l.lastIndex:
		last := l.lastIndex
		l.mu.RUnlock()
		return 0, fmt.Errorf("%w: term of index %d, log holds [%d, %d]", ErrOutOfRange, index, first, last)
	case index >= l.tailStartLocked():
		t := l.cachedLocked(index).term
		l.mu.RUnlock()
		return t, nil
	}
	if s := l.segmentFor(index); s.lastIndex == index {
		t := s.lastTerm
		l.mu.RUnlock()
		return t, nil
	}
	l.mu.RUnlock()
	entries, err := l.Entries(index, index+1, 0)
	if err != nil {
		return 0, err
	}
	return entries[0].Term, nil
}

// Entries returns entries [lo, hi) whose Data sizes add up to at most
// maxBytes, but at least one entry when lo < hi. The entries and their Data
// must not be modified; they stay valid after later appends and truncations.
func (l *Log) Entries(lo, hi uint64, maxBytes uint64) ([]protocol.Entry, error) {
	l.mu.RLock()
	if err := l.checkRange(lo, hi); err != nil || lo == hi {
		l.mu.RUnlock()
		return nil, err
	}
	if lo >= l.tailStartLocked() {
		out := l.entriesFromTailLocked(nil, lo, hi, maxBytes, 0)
		l.mu.RUnlock()
		return out, nil
	}
	l.mu.RUnlock()
	return l.entriesSlow(lo, hi, maxBytes)
}

func (l *Log) checkRange(lo, hi uint64) error {
	if err := l.checkReadable(); err != nil {
		return err
	}
	if first := l.firstIndexLocked(); lo < first || hi > l.lastIndex+1 || lo > hi {
		return fmt.Errorf("%w: entries [%d, %d), log holds [%d, %d]", ErrOutOfRange, lo, hi, first, l.lastIndex)
	}
	return nil
}

// entriesFromTailLocked appends cached entries from lo on to out, with the
// byte accounting of Entries, and returns out. Their Data alias the append
// chunks, which are marked lent and so never reused (see cache.go): no copy.
func (l *Log) entriesFromTailLocked(out []protocol.Entry, lo, hi, maxBytes, size uint64) []protocol.Entry {
	start := l.tailStartLocked()
	n := 0
	for next := lo; next < hi; next++ {
		c := l.cache.at(int(next - start))
		if (len(out) > 0 || n > 0) && size+uint64(c.length) > maxBytes {
			break
		}
		size += uint64(c.length)
		n++
	}
	if out == nil {
		out = make([]protocol.Entry, 0, n)
	}
	var lent *appendChunk
	for i := range n {
		c := l.cache.at(int(lo - start + uint64(i)))
		chunk := l.cachedChunk(c)
		if chunk != lent {
			chunk.lend()
			lent = chunk
		}
		out = append(out, protocol.Entry{Index: lo + uint64(i), Term: c.term, Type: c.typ, Data: chunk.data(c)})
	}
	return out
}

// entriesSlow serves a range that starts before the tail cache: it reads
// segment files, holding fileMu so no file is cut or removed meanwhile.
func (l *Log) entriesSlow(lo, hi, maxBytes uint64) ([]protocol.Entry, error) {
	l.fileMu.RLock()
	defer l.fileMu.RUnlock()
	var out []protocol.Entry
	var size uint64
	next := lo
	for next < hi && (len(out) == 0 || size < maxBytes) {
		l.mu.RLock()
		if err := l.checkRange(next, hi); err != nil {
			l.mu.RUnlock()
			return nil, err
		}
		if next >= l.tailStartLocked() {
			out = l.entriesFromTailLocked(out, next, hi, maxBytes, size)
			l.mu.RUnlock()
			return out, nil
		}
		seg := l.segmentFor(next)
		limit := l.readLimitLocked(seg)
		pt := seg.pointFor(next)
		stop := min(hi, seg.lastIndex+1, l.tailStartLocked())
		l.mu.RUnlock()
		var err error
		out, size, err = l.readSegment(seg, pt, limit, next, stop, maxBytes, size, out)
		if err != nil {
			return nil, err
		}
		if out[len(out)-1].Index+1 < stop {
			break // byte limit reached
		}
		next = stop
	}
	return out, nil
}

// readSegment reads entries [lo, hi) of seg from disk, starting the walk at
// index point pt. Frames must end before limit. It reads the span it
// expects to need (the bytes from pt to lo, the byte budget, frame headers)
// with one positional read into one buffer, which the returned entries'
// Data alias; only an entry running past that span costs another read.
func (l *Log) readSegment(seg *segment, pt indexPoint, limit int64, lo, hi, maxBytes, size uint64, out []protocol.Entry) ([]protocol.Entry, uint64, error) {
	budget := min(maxBytes-min(size, maxBytes), 1<<30)
	readSize := int(min(budget+budget/4+uint64(l.opts.IndexIntervalBytes)+8<<10, uint64(limit-pt.pos)))
	if out == nil {
		out = make([]protocol.Entry, 0, min(hi-lo, 1+budget/256))
	}
	err := l.walk(seg, pt, limit, readSize, true, hi, func(h frameHeader, frame []byte, _ scanState) bool {
		if h.index < lo {
			return false
		}
		data := frame[frameHeaderSize:len(frame):len(frame)]
		if len(out) > 0 && size+uint64(len(data)) > maxBytes {
			return true
		}
		size += uint64(len(data))
		out = append(out, protocol.Entry{Index: h.index, Term: h.term, Type: h.typ, Data: data})
		return false
	})
	return out, size, err
}

// walk reads the frames of seg from point pt on, checking each (CRC, index
// and offset continuity), and calls fn with the state before the frame
// until fn returns true or the entry before stopIndex has been visited.
// Data must be there: an end of data before stopIndex is corruption.
func (l *Log) walk(seg *segment, pt indexPoint, limit int64, readSize int, keep bool, stopIndex uint64,
	fn func(h frameHeader, frame []byte, before scanState) bool) error {
	r := frameReader{file: seg.file, path: seg.path, limit: limit, maxEntry: l.opts.MaxEntryBytes, keep: keep, readSize: readSize}
	if !keep {
		// Frames do not outlive the walk: read into a pooled window.
		p := getReadWindow()
		r.buf = *p
		defer func() { putReadWindow(p, r.buf) }()
	}
	st := scanState{nextIndex: pt.index, nextOffset: pt.offset, maxTime: pt.maxTime, pos: pt.pos, lastFramePos: -1}
	for st.nextIndex < stopIndex {
		status, h, frame, reason, err := r.next(st.pos)
		if err != nil {
			return fmt.Errorf("segmentlog: read %s: %w", seg.path, err)
		}
		if status == frameEnd {
			return corruptf(seg.path, st.pos, "data ends before entry %d", st.nextIndex)
		}
		if status.invalid() {
			return corruptf(seg.path, st.pos, "%s", reason)
		}
		before := st
		if reason := st.advance(&h, frame); reason != "" {
			return corruptf(seg.path, before.pos, "%s", reason)
		}
		if fn(h, frame, before) {
			return nil
		}
	}
	return nil
}

// maxReadWindow bounds the read window of one disk read of ReadBatches (a
// frame larger than it still gets a window of its own size).
const maxReadWindow = 4 << 20

// readWindows pools the read windows of walks whose frames do not outlive
// them (ReadBatches, IndexOfOffset, truncation), as *[]byte.
var readWindows sync.Pool

func getReadWindow() *[]byte {
	if p, ok := readWindows.Get().(*[]byte); ok {
		return p
	}
	return new([]byte)
}

// putReadWindow returns buf, the window a walk ended with (it may have
// grown), to the pool in p, unless it is larger than maxReadWindow.
func putReadWindow(p *[]byte, buf []byte) {
	if cap(buf) > maxReadWindow {
		return
	}
	*p = buf[:0]
	readWindows.Put(p)
}

// OffsetOfIndex returns the base record offset of the record batch at index.
func (l *Log) OffsetOfIndex(index uint64) (uint64, error) {
	l.mu.RLock()
	if err := l.checkRange(index, index+1); err != nil {
		l.mu.RUnlock()
		return 0, err
	}
	if index >= l.tailStartLocked() {
		c := l.cachedLocked(index)
		typ, base := c.typ, c.baseOffset
		l.mu.RUnlock()
		if typ != protocol.EntryRecordBatch {
			return 0, fmt.Errorf("%w: index %d is %v", ErrNotRecordBatch, index, typ)
		}
		return base, nil
	}
	l.mu.RUnlock()
	entries, err := l.Entries(index, index+1, 0)
	if err != nil {
		return 0, err
	}
	if entries[0].Type != protocol.EntryRecordBatch {
		return 0, fmt.Errorf("%w: index %d is %v", ErrNotRecordBatch, index, entries[0].Type)
	}
	h, err := protocol.ReadBatchHeader(entries[0].Data)
	if err != nil {
		return 0, err
	}
	return h.BaseOffset, nil
}

// IndexOfOffset returns the index of the record batch holding offset.
func (l *Log) IndexOfOffset(offset uint64) (uint64, error) {
	l.fileMu.RLock()
	defer l.fileMu.RUnlock()
	l.mu.RLock()
	if err := l.checkReadable(); err != nil {
		l.mu.RUnlock()
		return 0, err
	}
	if first, next := l.segments[0].header.firstOffset, l.nextOffset; offset < first || offset >= next {
		l.mu.RUnlock()
		return 0, fmt.Errorf("%w: offset %d, log holds [%d, %d)", ErrOutOfRange, offset, first, next)
	}
	if cache := &l.cache; cache.count > 0 && offset >= cache.at(0).baseOffset {
		i := sort.Search(cache.count, func(i int) bool {
			c := cache.at(i)
			return c.baseOffset+uint64(c.recordCount) > offset
		})
		index := l.tailStartLocked() + uint64(i)
		l.mu.RUnlock()
		return index, nil
	}
	i := sort.Search(len(l.segments), func(i int) bool { return l.segments[i].nextOffset > offset })
	seg := l.segments[i]
	limit := l.readLimitLocked(seg)
	pt := seg.pointForOffset(offset)
	stop := seg.lastIndex + 1
	l.mu.RUnlock()
	found := uint64(0)
	err := l.walk(seg, pt, limit, defaultReadSize/4, false, stop, func(h frameHeader, frame []byte, before scanState) bool {
		if h.typ != protocol.EntryRecordBatch {
			return false
		}
		bh, _ := protocol.ReadBatchHeader(frame[frameHeaderSize:])
		if before.nextOffset <= offset && offset < before.nextOffset+uint64(bh.RecordCount) {
			found = h.index
			return true
		}
		return before.nextOffset > offset
	})
	if err != nil {
		return 0, err
	}
	if found == 0 {
		return 0, corruptf(seg.path, pt.pos, "no batch holds offset %d", offset)
	}
	return found, nil
}

// ReadBatches appends to dst the raw bytes of consecutive record batches,
// starting with the batch that holds fromOffset, never past index maxIndex,
// up to maxBytes but at least one batch when one is available. Entries that
// are not record batches are skipped. It returns the offset after the last
// batch returned (fromOffset when none was).
//
// From disk it walks the segment once, from the sparse index point before
// fromOffset, reading the frames into a pooled read window and copying the
// batches into dst, so a steady reader allocates nothing per call beyond
// dst's growth. fileMu is held throughout: no file is cut or removed, and
// no entry below the tail cache is truncated, while it reads.
func (l *Log) ReadBatches(dst []byte, fromOffset uint64, maxIndex uint64, maxBytes int) ([]byte, uint64, error) {
	l.fileMu.RLock()
	defer l.fileMu.RUnlock()
	l.mu.RLock()
	if err := l.checkReadable(); err != nil {
		l.mu.RUnlock()
		return dst, fromOffset, err
	}
	if fromOffset >= l.nextOffset {
		l.mu.RUnlock()
		return dst, fromOffset, nil
	}
	if first, next := l.segments[0].header.firstOffset, l.nextOffset; fromOffset < first {
		l.mu.RUnlock()
		return dst, fromOffset, fmt.Errorf("%w: offset %d, log holds [%d, %d)", ErrOutOfRange, fromOffset, first, next)
	}
	last := min(maxIndex, l.lastIndex)
	l.mu.RUnlock()

	nextOffset, added := fromOffset, 0
	found := false // whether the batch holding fromOffset has been reached
	index := uint64(0)
	triedTailAt := uint64(0) // tailStart when the segments ended without the batch
	for {
		l.mu.RLock()
		if err := l.checkReadable(); err != nil {
			l.mu.RUnlock()
			return dst, fromOffset, err
		}
		tailStart := l.tailStartLocked()
		cache := &l.cache
		if !found && cache.count > 0 && fromOffset >= cache.at(0).baseOffset {
			i := sort.Search(cache.count, func(i int) bool {
				c := cache.at(i)
				return c.baseOffset+uint64(c.recordCount) > fromOffset
			})
			index, found = tailStart+uint64(i), true
		}
		if found && (index > last || (added > 0 && added >= maxBytes)) {
			l.mu.RUnlock()
			return dst, nextOffset, nil
		}
		if found && index >= tailStart {
			// Copy straight out of the tail cache.
			last = min(last, l.lastIndex)
			for ; index <= last; index++ {
				c := l.cachedLocked(index)
				if c.typ != protocol.EntryRecordBatch {
					continue
				}
				if added > 0 && added+int(c.length) > maxBytes {
					break
				}
				dst = append(dst, l.cachedData(c)...)
				added += int(c.length)
				nextOffset = c.baseOffset + uint64(c.recordCount)
			}
			l.mu.RUnlock()
			return dst, nextOffset, nil
		}
		if !found && triedTailAt == tailStart && tailStart > 0 {
			// The segments end before the tail cache without the batch,
			// and the cache starts after it. (Were the cache's oldest
			// entries evicted meanwhile, tailStart moved: walk again.)
			l.mu.RUnlock()
			return dst, fromOffset, fmt.Errorf("%w: no batch holds offset %d before the tail cache", ErrCorrupt, fromOffset)
		}
		var seg *segment
		var pt indexPoint
		if found {
			seg = l.segmentFor(index)
			pt = seg.pointFor(index)
		} else {
			i := sort.Search(len(l.segments), func(i int) bool { return l.segments[i].nextOffset > fromOffset })
			if i == len(l.segments) {
				i-- // only the tail cache, which the check above did not match, could hold it
			}
			seg = l.segments[i]
			pt = seg.pointForOffset(fromOffset)
		}
		limit := l.readLimitLocked(seg)
		stop := min(last+1, seg.lastIndex+1, tailStart)
		l.mu.RUnlock()

		budget := uint64(max(maxBytes-added, 1))
		readSize := int(min(budget+budget/4+uint64(l.opts.IndexIntervalBytes)+8<<10, maxReadWindow, uint64(max(limit-pt.pos, 0))))
		full := false
		err := l.walk(seg, pt, limit, readSize, false, stop, func(h frameHeader, frame []byte, before scanState) bool {
			if h.typ != protocol.EntryRecordBatch {
				return false
			}
			bh, _ := protocol.ReadBatchHeader(frame[frameHeaderSize:]) // checked by the walk
			if !found {
				if before.nextOffset+uint64(bh.RecordCount) <= fromOffset {
					return false
				}
				found = true
			}
			data := frame[frameHeaderSize:]
			if added > 0 && added+len(data) > maxBytes {
				full = true
				return true
			}
			dst = append(dst, data...)
			added += len(data)
			nextOffset = before.nextOffset + uint64(bh.RecordCount)
			return false
		})
		if err != nil {
			return dst[:len(dst)-added], fromOffset, err
		}
		if full {
			return dst, nextOffset, nil
		}
		switch {
		case stop == last+1:
			// maxIndex reached (before the batch holding fromOffset, if
			// none was found).
			return dst, nextOffset, nil
		case !found && stop == tailStart:
			triedTailAt = tailStart
		case !found:
			return dst, fromOffset, corruptf(seg.path, pt.pos, "no batch holds offset %d", fromOffset)
		}
		index = stop
	}
}

// Close flushes and syncs what was appended, then closes every file.
// Later calls return ErrClosed.
func (l *Log) Close() error {
	l.syncMu.Lock()
	defer l.syncMu.Unlock()
	l.flushMu.Lock()
	defer l.flushMu.Unlock()
	l.fileMu.Lock()
	defer l.fileMu.Unlock()
	l.mu.RLock()
	closed, err := l.closed, l.err
	l.mu.RUnlock()
	if closed {
		return ErrClosed
	}
	if err == nil {
		if _, err = l.flush(); err == nil {
			if err = l.writeFile.SyncData(); err != nil {
				err = fmt.Errorf("segmentlog: sync %s: %w", l.active().path, err)
			}
		}
	}
	l.mu.Lock()
	l.closed = true
	l.mu.Unlock()
	if cerr := l.closeFiles(); err == nil {
		err = cerr
	}
	return err
}

func (l *Log) closeFiles() error {
	var errs []error
	for _, s := range l.segments {
		if s.file != nil {
			errs = append(errs, s.file.Close())
			s.file = nil
		}
	}
	for _, c := range []io.Closer{l.writeFile, l.lock} {
		if c != nil {
			errs = append(errs, c.Close())
		}
	}
	l.writeFile, l.lock = nil, nil
	return errors.Join(errs...)
}
