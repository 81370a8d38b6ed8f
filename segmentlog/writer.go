package segmentlog

import (
	"fmt"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/raftmq/raftmq/protocol"
)

// Append appends entries. entries[0].Index must be LastIndex()+1 and the
// indexes dense. Record batch entries get their base offset stamped into
// the log's own copy of Data; the caller's bytes are never modified. The
// entries are buffered: Sync makes them durable.
func (l *Log) Append(entries []protocol.Entry) error {
	if len(entries) == 0 {
		return nil
	}
	l.mu.RLock()
	err := l.checkWritable()
	l.mu.RUnlock()
	if err != nil {
		return err
	}
	// Validate everything first, so a bad entry appends nothing (and
	// leaves nothing in the batches scratch).
	l.batches = l.batches[:0]
	frameBytes := int64(0)
	for i := range entries {
		e := &entries[i]
		frameBytes += int64(frameHeaderSize + len(e.Data))
		if e.Index != l.lastIndex+1+uint64(i) {
			return fmt.Errorf("segmentlog: append index %d, expected %d (gap or overlap)", e.Index, l.lastIndex+1+uint64(i))
		}
		if !e.Type.Valid() {
			return fmt.Errorf("segmentlog: append index %d: unknown entry type %d", e.Index, uint8(e.Type))
		}
		if len(e.Data) > l.opts.MaxEntryBytes {
			return fmt.Errorf("segmentlog: append index %d: %d bytes exceeds MaxEntryBytes %d", e.Index, len(e.Data), l.opts.MaxEntryBytes)
		}
		if e.Type == protocol.EntryRecordBatch {
			info, err := protocol.ReadBatchSummary(e.Data)
			if err != nil {
				return fmt.Errorf("segmentlog: append index %d: %w", e.Index, err)
			}
			l.batches = append(l.batches, info)
		}
	}
	l.reserveCacheSlots(len(entries))
	rollFirst := l.rollBefore(frameBytes)
	batches := l.batches
	l.batches = l.batches[:0]
	through := l.throughCount(entries, frameBytes)
	if through > 0 {
		if err := l.beginThrough(); err != nil {
			return err
		}
	}
	for i := range entries {
		if i == through && l.through {
			if err := l.endThrough(); err != nil {
				return err
			}
		}
		var batch *protocol.BatchSummary
		if entries[i].Type == protocol.EntryRecordBatch {
			batch, batches = &batches[0], batches[1:]
		}
		var err error
		if l.vector {
			err = l.appendVector(&entries[i], batch, rollFirst)
		} else {
			err = l.appendOne(&entries[i], batch, rollFirst)
		}
		if err != nil {
			if l.through {
				l.dropThrough()
			} else {
				l.publish()
			}
			return err
		}
		rollFirst = false
	}
	if l.through {
		return l.endThrough()
	}
	l.publish()
	return nil
}

// Write-through. An Append call larger than the tail cache ends with the
// cache holding at most its last TailCacheBytes of entries: every earlier
// entry is written and evicted within the call. Those entries do not go
// through the cache: Append empties the cache (after writing what it
// holds), frames them into one chunk, writes the chunk when full, publishes
// the entries as written and not cached, and frames the next ones into the
// same chunk, from its start. The call's last entries are then appended as
// usual. One chunk, reused while it is in the processor's cache, instead of
// a chunk recycled from a TailCacheBytes ago per WriteBufferBytes: with
// 64 KiB entries the CPU time of framing a 64 MiB call, copy and CRC32C,
// fell about a third on the benchmark machine, and the chunk is still
// cached when the kernel copies it into the page cache. Where the file has
// a descriptor, the write-through entries are not copied at all: they are
// written by vector from the caller's memory (see vector.go).

// throughCount returns how many of entries (frameBytes in all) Append
// writes through: those before the last TailCacheBytes of the call, when
// they fill at least one chunk; 0 otherwise.
func (l *Log) throughCount(entries []protocol.Entry, frameBytes int64) int {
	keep := int64(l.opts.TailCacheBytes)
	if frameBytes-keep < int64(l.opts.WriteBufferBytes) {
		return 0
	}
	k := 0
	for rest := frameBytes; rest > keep; k++ {
		rest -= int64(frameHeaderSize + len(entries[k].Data))
	}
	return k
}

// beginThrough writes what the append chunk holds, empties the tail cache,
// and restarts the chunk at its beginning for the write-through entries
// (a chunk Entries lent is left for a new one).
func (l *Log) beginThrough() error {
	l.flushMu.Lock()
	defer l.flushMu.Unlock()
	if _, err := l.flush(); err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	// flush wrote every entry: flushedIndex is lastIndex.
	l.cache.evict(0, l.cache.count)
	if l.chunk != nil && l.chunk.lent.Load() {
		l.chunk = nil
	}
	l.chunkUsed, l.chunkFlushed = 0, 0
	l.chunkPos = l.active().end
	l.recycleChunksLocked()
	l.through = true
	l.vector = l.canWriteVector()
	return nil
}

// endThrough writes and publishes the last write-through entries and
// returns Append to framing entries into the cache.
func (l *Log) endThrough() error {
	err := l.publishThrough()
	l.through, l.vector = false, false
	return err
}

// dropThrough forgets write-through entries framed but not written after
// a failure (which is sticky).
func (l *Log) dropThrough() {
	l.npending, l.pendingBytes, l.pendingRecords = 0, 0, 0
	l.pendingPoints = l.pendingPoints[:0]
	l.through, l.vector = false, false
	l.vec.reset()
}

// publishThrough writes the framed write-through entries, at the start of
// the chunk (or, writing by vector, as the pending group's pieces: see
// vector.go), to the active file and publishes them as written, and not
// cached (the cache is empty while Append writes through); the chunk then
// starts again at the new end of the file. The cache ring's pending slots
// describe the entries, as for publish, and are not added to the cache.
func (l *Log) publishThrough() error {
	if l.npending == 0 {
		return nil
	}
	l.flushMu.Lock()
	defer l.flushMu.Unlock()
	active := l.active()
	var err error
	if l.vector {
		err = l.writeVector(l.writeFile, active.path, active.end)
	} else {
		err = l.writeActive(l.writeFile, active.path, l.chunk.buf[:l.pendingBytes], l.chunkPos)
	}
	if err != nil {
		l.dropThrough()
		return l.setSticky(err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	index := l.advanceLocked(active)
	l.flushedEnd, l.flushedIndex = active.end, index
	l.chunkPos = active.end
	return nil
}

// advanceLocked moves the log's and the active segment's ends past the
// pending entries (the cache ring's pending slots describe them), clears
// the pending state and returns the new last index. The caller holds
// l.mu and decides where the entries live (cache or file).
func (l *Log) advanceLocked(active *segment) uint64 {
	last := l.cache.slot(l.npending - 1)
	active.points = l.growPoints(active.points, len(l.pendingPoints))
	active.points = append(active.points, l.pendingPoints...)
	active.maxTime = l.pendingMaxTime
	index := l.lastIndex + uint64(l.npending)
	active.end += int64(l.pendingBytes)
	active.lastIndex, active.lastTerm = index, last.term
	active.lastFramePos, active.lastFrameCRC = active.end-int64(last.frameSize()), last.crc
	l.nextOffset += l.pendingRecords
	active.nextOffset = l.nextOffset
	l.lastIndex = index
	l.npending, l.pendingBytes, l.pendingRecords = 0, 0, 0
	l.pendingPoints = l.pendingPoints[:0]
	return index
}

// growPoints returns points with room for n more. The active segment's
// point list grows as entries are appended, up to SegmentMaxBytes /
// IndexIntervalBytes points (512 KiB for a 256 MiB segment at the default
// interval, 2 MiB at 4 KiB). append's own growth for a slice that large is
// about 1.25x a step, each step a new allocation copied into, and memory
// the process has not touched before is what costs (a page fault per 4
// KiB, 14-23 us on the benchmark VM, where writing the page takes well
// under a microsecond): from empty to 2 MiB that was some 10 MiB of new
// memory and 8 MiB of copies per segment. Growing eightfold a step,
// bounded by the most points a segment can need, touches at most about
// 1.15 times the final list and copies a seventh of it; a list holds at
// most eight times the points in use, and never more than a full
// segment's (1/512 of its data at the defaults).
func (l *Log) growPoints(points []indexPoint, n int) []indexPoint {
	if len(points)+n <= cap(points) {
		return points
	}
	limit := int(l.opts.SegmentMaxBytes/int64(l.opts.IndexIntervalBytes)) + 2
	newCap := min(max(pointsGrowth*cap(points), minPointsCap), limit)
	newCap = max(newCap, len(points)+n)
	grown := make([]indexPoint, len(points), newCap)
	copy(grown, points)
	return grown
}

// pointsGrowth is the factor by which growPoints grows a point list.
const pointsGrowth = 8

// minPointsCap is the smallest point list growPoints allocates.
const minPointsCap = 64

// rollBefore reports whether Append rolls the active segment before its
// first entry: when the segment is too old, or when the call's frameBytes
// do not fit in what is left of the segment but fit in an empty one. So a
// segment rolls between Append calls rather than in the middle of one, and
// the data of one call, usually synced by one Sync, lies in one file: the
// sealed segment was made durable by the Sync after the previous call, and
// the roll's fdatasync of it finds nothing left to write, where a roll in
// the middle of a call splits the call's data over two fdatasyncs, the
// first of which stops the writer. A call larger than a segment still
// rolls entry by entry (appendOne).
func (l *Log) rollBefore(frameBytes int64) bool {
	active := l.active()
	if active.empty() {
		return false
	}
	if l.opts.SegmentMaxAge > 0 && l.ageExpired(active, l.opts.Now()) {
		return true
	}
	return active.end+frameBytes > l.opts.SegmentMaxBytes && segmentHeaderSize+frameBytes <= l.opts.SegmentMaxBytes
}

// reserveCacheSlots makes room in the tail cache ring for n more entries,
// so appendOne can fill slots past the cached ones without a lock (the
// count is read under mu: a concurrent Sync's flush may be evicting).
func (l *Log) reserveCacheSlots(n int) {
	l.mu.RLock()
	fits := l.cache.count+n <= len(l.cache.ring)
	l.mu.RUnlock()
	if fits {
		return
	}
	l.mu.Lock()
	l.cache.grow(l.cache.count + n)
	l.mu.Unlock()
}

// activeFor returns the active segment a size-byte frame goes into:
// first, when rollFirst is set (the Append call's frames do not fit, see
// rollBefore) or the frame would take the segment past SegmentMaxBytes,
// it publishes what is framed (writing it, when Append writes through)
// and rolls. appendOne and appendVector share it, so both roll by one
// rule.
func (l *Log) activeFor(size int, rollFirst bool) (*segment, error) {
	active := l.active()
	if rollFirst || (!active.empty() || l.npending > 0) && active.end+int64(l.pendingBytes+size) > l.opts.SegmentMaxBytes {
		if err := l.publishPending(); err != nil {
			return nil, err
		}
		if err := l.roll(); err != nil {
			return nil, err
		}
		active = l.active()
	}
	return active, nil
}

// appendOne frames one validated entry into the append chunk and describes
// it in the next free slot of the tail cache ring (past the published
// entries, so no reader looks at it); publish makes it visible. Only the
// writer goroutine runs it, so the writer-owned fields it reads without mu
// (lastIndex, nextOffset, the active segment, chunk, the cache's ring and
// next slot) cannot change under it, and it writes only past chunkUsed and
// in the cache slots after the newest entry.
func (l *Log) appendOne(e *protocol.Entry, batch *protocol.BatchSummary, rollFirst bool) error {
	size := frameHeaderSize + len(e.Data)
	active, err := l.activeFor(size, rollFirst)
	if err != nil {
		return err
	}
	if l.chunk == nil || len(l.chunk.buf)-l.chunkUsed-l.pendingBytes < size {
		if err := l.publishPending(); err != nil {
			return err
		}
		// Writing through, the chunk starts again once written.
		if l.chunk == nil || len(l.chunk.buf)-l.chunkUsed < size {
			if err := l.newChunk(size); err != nil {
				return err
			}
		}
	}
	if l.npending == 0 {
		l.pendingMaxTime = active.maxTime
	}
	at := l.chunkUsed + l.pendingBytes
	frame := l.chunk.buf[at : at+size : at+size]
	putFrameHeader(frame, len(e.Data), e.Index, e.Term, e.Type)
	payload := frame[frameHeaderSize:]
	// Large payloads: the batch header is copied and stamped first, the
	// rest copied and checksummed in one pass (copySealFrame).
	head := frameHead(len(e.Data))
	copy(payload[:head], e.Data[:head])
	c := l.cache.slot(l.npending)
	*c = cachedEntry{term: e.Term, typ: e.Type, baseOffset: l.nextOffset + l.pendingRecords,
		chunkSeq: l.chunkSeq, off: uint32(at + frameHeaderSize), length: uint32(len(e.Data))}
	if batch != nil {
		protocol.StampBatch(payload, c.baseOffset, batch.AppendTime)
		c.recordCount = batch.RecordCount
		l.pendingMaxTime = max(l.pendingMaxTime, batch.MaxTimestamp)
	}
	c.crc = copySealFrame(frame, e.Data, head)
	if pos := active.end + int64(l.pendingBytes); l.lastPointPos < 0 || pos-l.lastPointPos >= int64(l.opts.IndexIntervalBytes) {
		l.pendingPoints = append(l.pendingPoints, indexPoint{index: e.Index, pos: pos, offset: c.baseOffset, maxTime: l.pendingMaxTime})
		l.lastPointPos = pos
	}
	l.npending++
	l.pendingBytes += size
	l.pendingRecords += uint64(c.recordCount)
	return nil
}

// publishPending publishes the framed entries: writes and publishes them
// when Append writes through, else publishes them into the cache.
func (l *Log) publishPending() error {
	if l.through {
		return l.publishThrough()
	}
	l.publish()
	return nil
}

// publish makes the entries appendOne framed visible to readers, under
// one lock acquisition per Append call.
func (l *Log) publish() {
	if l.npending == 0 {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	n, frameBytes := l.npending, l.pendingBytes
	index := l.advanceLocked(l.active())
	l.cache.add(n, frameBytes)
	l.chunk.lastIndex = index
	l.chunkUsed += frameBytes
	l.evictLocked()
}

func (l *Log) ageExpired(s *segment, now time.Time) bool {
	return !s.empty() && now.UnixMilli()-s.header.createdMs >= l.opts.SegmentMaxAge.Milliseconds()
}

// newChunk flushes the append chunk and starts a new one that fits size,
// reusing a free chunk when it can. (A background flusher that wrote full
// chunks while Append framed the next was tried and left out: see the
// package documentation, Performance.)
func (l *Log) newChunk(size int) error {
	l.flushMu.Lock()
	defer l.flushMu.Unlock()
	if _, err := l.flush(); err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.chunk = l.takeChunkLocked(size)
	l.chunks = append(l.chunks, l.chunk)
	l.chunkSeq = l.chunkBase + uint64(len(l.chunks)) - 1
	l.chunkUsed, l.chunkFlushed = 0, 0
	l.chunkPos = l.active().end
	l.recycleChunksLocked()
	return nil
}

// evictLocked drops the oldest cached entries beyond the cache budget
// (entries not yet written to the file always stay) and recycles the
// chunks no cached entry uses any more.
func (l *Log) evictLocked() {
	if l.cache.bytes <= l.opts.TailCacheBytes {
		return
	}
	start := l.tailStartLocked()
	if start > l.flushedIndex {
		return
	}
	// Entries up to flushedIndex are in the file.
	if l.cache.evict(l.opts.TailCacheBytes, int(min(l.flushedIndex+1-start, uint64(l.cache.count)))) > 0 {
		l.recycleChunksLocked()
	}
}

// flush writes the buffered frames to the active file. flushMu must be
// held. It returns the last index the file now holds.
func (l *Log) flush() (uint64, error) {
	l.mu.RLock()
	err := l.checkWritable()
	chunk, used, flushed, pos := l.chunk, l.chunkUsed, l.chunkFlushed, l.chunkPos
	file, lastIndex, path := l.writeFile, l.lastIndex, l.active().path
	l.mu.RUnlock()
	if err != nil || used == flushed {
		return lastIndex, err
	}
	if err := l.writeActive(file, path, chunk.buf[flushed:used], pos+int64(flushed)); err != nil {
		return 0, l.setSticky(err)
	}
	l.mu.Lock()
	l.chunkFlushed = used
	l.flushedEnd = pos + int64(used)
	l.flushedIndex = lastIndex
	l.evictLocked()
	l.mu.Unlock()
	return lastIndex, nil
}

// Sync makes every entry appended so far durable and returns the durable
// last index. Concurrent callers share one fdatasync: a caller whose
// entries another caller's sync covered returns without syncing. A failed
// sync is sticky: it and every later Sync and Append return the error.
func (l *Log) Sync() (uint64, error) {
	l.mu.RLock()
	err, target, durable := l.checkWritable(), l.lastIndex, l.durableIndex
	l.mu.RUnlock()
	if err != nil {
		return 0, err
	}
	if durable >= target {
		return durable, nil
	}
	l.syncMu.Lock()
	defer l.syncMu.Unlock()
	l.mu.RLock()
	err, durable = l.checkWritable(), l.durableIndex
	l.mu.RUnlock()
	if err != nil {
		return 0, err
	}
	if durable >= target {
		return durable, nil
	}
	l.flushMu.Lock()
	l.syncing = true // the fdatasync writes back what this flush writes
	covered, err := l.flush()
	l.syncing = false
	l.mu.RLock()
	file, path, end := l.writeFile, l.active().path, l.flushedEnd
	l.mu.RUnlock()
	l.syncedTo(file, end)
	l.flushMu.Unlock()
	if err != nil {
		return 0, err
	}
	l.noteSyncBytes(end)
	if err := file.SyncData(); err != nil {
		return 0, l.setSticky(fmt.Errorf("segmentlog: sync %s: %w", path, err))
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err != nil {
		return 0, l.err
	}
	l.durableIndex = max(l.durableIndex, covered)
	return l.durableIndex, nil
}

// roll seals the active segment (flush, fdatasync, index file) and starts a
// new one. Any failure is sticky.
func (l *Log) roll() error {
	l.syncMu.Lock()
	defer l.syncMu.Unlock()
	l.flushMu.Lock()
	defer l.flushMu.Unlock()
	if err := l.rollLocked(); err != nil {
		return l.setSticky(err)
	}
	return nil
}

func (l *Log) rollLocked() error {
	covered, err := l.flush()
	if err != nil {
		return err
	}
	old := l.active()
	l.mu.RLock()
	durable := l.durableIndex
	l.mu.RUnlock()
	// The sealed segment ends at its last frame: its preallocated space is
	// cut, durably, before the next segment exists.
	cut, err := l.cutPreallocated(old.end)
	if err != nil {
		return err
	}
	// A Sync since the last write made the old segment durable already
	// (the usual case: rollBefore rolls between Append calls).
	if durable < covered || cut {
		if err := l.writeFile.SyncData(); err != nil {
			return fmt.Errorf("segmentlog: sync %s: %w", old.path, err)
		}
	}
	if err := l.writeIndexFile(old); err != nil {
		return err
	}
	h := segmentHeader{
		firstIndex: l.lastIndex + 1, prevTerm: old.lastTerm, firstOffset: l.nextOffset,
		generation: l.generation, createdMs: l.opts.Now().UnixMilli(),
	}
	seg, writeFile, allocEnd, err := l.createSegment(h)
	if err != nil {
		return err
	}
	oldWriteFile := l.writeFile
	l.allocEnd = allocEnd
	l.mu.Lock()
	// A segment usually gets about as many index points as the one before:
	// sizing its point list once spares the appends regrowing it.
	seg.points = l.takePointsLocked(len(old.points))
	l.setSegmentsLocked(append(l.segments, seg))
	l.writeFile, l.flushedEnd = writeFile, segmentHeaderSize
	l.syncedEnd = segmentHeaderSize
	l.chunk, l.chunkUsed, l.chunkFlushed = nil, 0, 0
	l.lastPointPos = -1
	l.flushedIndex = l.lastIndex
	l.evictLocked()
	l.durableIndex = max(l.durableIndex, covered)
	l.mu.Unlock()
	if err := oldWriteFile.Close(); err != nil {
		return fmt.Errorf("segmentlog: close %s: %w", old.path, err)
	}
	return nil
}

// maxFreePoints bounds the point lists of deleted segments kept for new
// segments.
const maxFreePoints = 2

// takePointsLocked returns an empty point list with room for n points,
// reusing one a deleted segment left (see recyclePointsLocked) when one is
// large enough. mu must be held for writing.
func (l *Log) takePointsLocked(n int) []indexPoint {
	for i, p := range l.freePoints {
		if cap(p) >= n {
			last := len(l.freePoints) - 1
			l.freePoints[i] = l.freePoints[last]
			l.freePoints[last] = nil
			l.freePoints = l.freePoints[:last]
			return p
		}
	}
	return make([]indexPoint, 0, n)
}

// recyclePointsLocked keeps the point list of segment s, which DeleteBefore
// has just removed from the log, for a later segment. A point list is
// appended to for the life of its segment (512 KiB of points for 256 MiB
// at the default interval); in new memory every page of it costs a page
// fault on first touch (14-23 us each on the benchmark VM),
// a reused list has them all mapped already. Readers use a segment's
// points only under mu and through the segment list, which no longer
// holds s. mu must be held for writing.
func (l *Log) recyclePointsLocked(s *segment) {
	p := s.points[:0]
	s.points = nil
	if cap(p) < minRecycledPoints {
		return
	}
	if len(l.freePoints) < maxFreePoints {
		l.freePoints = append(l.freePoints, p)
		return
	}
	// Keep the largest lists.
	for i, q := range l.freePoints {
		if cap(q) < cap(p) {
			l.freePoints[i] = p
			return
		}
	}
}

// minRecycledPoints is the smallest point list worth keeping (32 KiB).
const minRecycledPoints = 1024

// createSegment writes a new segment file holding only its header, under
// a temporary name, preallocates its first step (see prealloc.go), syncs
// it, renames it into place and syncs the directory, so a segment file
// never exists with a torn header. It returns the segment (with a read
// handle), a read-write handle and the file's size.
func (l *Log) createSegment(h segmentHeader) (*segment, vfs.File, int64, error) {
	path := l.path(segmentFileName(h.firstIndex))
	tmp := path + tempSuffix
	f, err := l.fs.Create(tmp, vfs.WriteCategoryUnspecified)
	if err != nil {
		return nil, nil, 0, fmt.Errorf("segmentlog: create %s: %w", tmp, err)
	}
	var buf [segmentHeaderSize]byte
	encodeSegmentHeader(buf[:], &h)
	fail := func(op string, err error) (*segment, vfs.File, int64, error) {
		f.Close()
		return nil, nil, 0, fmt.Errorf("segmentlog: %s %s: %w", op, tmp, err)
	}
	if _, err := f.Write(buf[:]); err != nil {
		return fail("write", err)
	}
	allocEnd := int64(segmentHeaderSize)
	if target := l.allocTarget(allocEnd+1, allocEnd, f); target > 0 {
		if allocEnd, err = l.extendFile(f, tmp, allocEnd, target); err != nil {
			f.Close()
			return nil, nil, 0, err
		}
	}
	if err := f.SyncData(); err != nil {
		return fail("sync", err)
	}
	if err := l.fs.Rename(tmp, path); err != nil {
		return fail("rename", err)
	}
	if err := l.syncDir(); err != nil {
		f.Close()
		return nil, nil, 0, err
	}
	readFile, err := l.fs.Open(path)
	if err != nil {
		f.Close()
		return nil, nil, 0, fmt.Errorf("segmentlog: open %s: %w", path, err)
	}
	seg := &segment{
		path: path, indexPath: l.path(indexFileName(h.firstIndex)), header: h, file: readFile,
		lastIndex: h.firstIndex - 1, lastTerm: h.prevTerm, nextOffset: h.firstOffset,
		end: segmentHeaderSize, lastFramePos: -1,
	}
	return seg, f, allocEnd, nil
}

// writeIndexFile writes a sealed segment's sparse index under a temporary
// name and renames it into place. It is not synced: an index that did not
// survive a crash is found missing or invalid and rebuilt.
func (l *Log) writeIndexFile(s *segment) error {
	// Only the writer changes a segment's points (and only the active
	// one's), and it is the caller (or Open, before the log is shared).
	l.mu.RLock()
	sum, points := s.summary(), s.points
	l.mu.RUnlock()
	tmp := s.indexPath + tempSuffix
	f, err := l.fs.Create(tmp, vfs.WriteCategoryUnspecified)
	if err != nil {
		return fmt.Errorf("segmentlog: create %s: %w", tmp, err)
	}
	buf := indexPieces.Get().(*[]byte)
	err = writeIndexFileTo(f, *buf, &sum, points)
	indexPieces.Put(buf)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = l.fs.Rename(tmp, s.indexPath)
	}
	if err != nil {
		return fmt.Errorf("segmentlog: write index %s: %w", s.indexPath, err)
	}
	return nil
}

// indexPieces holds the buffers index files are encoded in, piece by piece.
var indexPieces = sync.Pool{New: func() any { b := make([]byte, indexPieceBytes); return &b }}
