package segmentlog

import (
	"fmt"
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
	// Validate everything first, so a bad entry appends nothing.
	for i := range entries {
		e := &entries[i]
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
			if _, err := protocol.ReadBatchHeader(e.Data); err != nil {
				return fmt.Errorf("segmentlog: append index %d: %w", e.Index, err)
			}
		}
	}
	rollAge := l.opts.SegmentMaxAge > 0 && l.ageExpired(l.active(), l.opts.Now())
	for i := range entries {
		if err := l.appendOne(&entries[i], rollAge); err != nil {
			l.publish()
			return err
		}
		rollAge = false
	}
	l.publish()
	return nil
}

// appendOne copies one validated entry into the append buffer; publish
// makes it visible. Only the writer goroutine runs it, so the writer-owned
// fields it reads without mu (lastIndex, nextOffset, segments, chunk)
// cannot change under it.
func (l *Log) appendOne(e *protocol.Entry, rollAge bool) error {
	size := frameHeaderSize + len(e.Data)
	active := l.active()
	if rollAge || (!active.empty() || len(l.pending) > 0) && active.end+int64(l.pendingBytes+size) > l.opts.SegmentMaxBytes {
		l.publish()
		if err := l.roll(); err != nil {
			return err
		}
		active = l.active()
	}
	if cap(l.chunk)-l.chunkUsed-l.pendingBytes < size {
		l.publish()
		if err := l.newChunk(size); err != nil {
			return err
		}
	}
	at := l.chunkUsed + l.pendingBytes
	frame := l.chunk[at : at+size : at+size]
	putFrameHeader(frame, len(e.Data), e.Index, e.Term, e.Type)
	payload := frame[frameHeaderSize:]
	copy(payload, e.Data)
	baseOffset := l.nextOffset + l.pendingRecords
	var recordCount uint32
	if e.Type == protocol.EntryRecordBatch {
		h, _ := protocol.ReadBatchHeader(payload) // validated by Append
		protocol.StampBatch(payload, baseOffset, h.AppendTime)
		recordCount = h.RecordCount
	}
	sealFrame(frame)
	l.pending = append(l.pending, cachedEntry{
		entry:      protocol.Entry{Index: e.Index, Term: e.Term, Type: e.Type, Data: payload},
		baseOffset: baseOffset, recordCount: recordCount, crc: le.Uint32(frame),
		seg: active, pos: active.end + int64(l.pendingBytes),
	})
	l.pendingBytes += size
	l.pendingRecords += uint64(recordCount)
	return nil
}

// publish makes the entries appendOne prepared visible to readers, under
// one lock acquisition per Append call.
func (l *Log) publish() {
	if len(l.pending) == 0 {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for i := range l.pending {
		c := &l.pending[i]
		active := c.seg
		if c.entry.Type == protocol.EntryRecordBatch {
			h, _ := protocol.ReadBatchHeader(c.entry.Data)
			active.maxTime = max(active.maxTime, h.MaxTimestamp)
		}
		pos := c.pos
		if l.lastPointPos < 0 || pos-l.lastPointPos >= int64(l.opts.IndexIntervalBytes) {
			active.points = append(active.points, indexPoint{index: c.entry.Index, pos: pos, offset: c.baseOffset, maxTime: active.maxTime})
			l.lastPointPos = pos
		}
		size := c.frameSize()
		active.end = pos + int64(size)
		active.lastIndex, active.lastTerm = c.entry.Index, c.entry.Term
		active.lastFramePos, active.lastFrameCRC = pos, c.crc
		l.nextOffset = c.baseOffset + uint64(c.recordCount)
		active.nextOffset = l.nextOffset
		l.lastIndex = c.entry.Index
		l.chunkUsed += size
		l.tailBytes += size
	}
	l.tail = append(l.tail, l.pending...)
	clear(l.pending)
	l.pending, l.pendingBytes, l.pendingRecords = l.pending[:0], 0, 0
	l.evictLocked()
}

func (l *Log) ageExpired(s *segment, now time.Time) bool {
	return !s.empty() && now.UnixMilli()-s.header.createdMs >= l.opts.SegmentMaxAge.Milliseconds()
}

// newChunk flushes the append buffer and starts a new one that fits size.
func (l *Log) newChunk(size int) error {
	l.flushMu.Lock()
	defer l.flushMu.Unlock()
	if _, err := l.flush(); err != nil {
		return err
	}
	chunk := make([]byte, 0, max(l.opts.WriteBufferBytes, size))
	l.mu.Lock()
	l.chunk, l.chunkUsed, l.chunkFlushed = chunk[:cap(chunk)], 0, 0
	l.chunkPos = l.active().end
	l.mu.Unlock()
	return nil
}

// evictLocked drops the oldest cached entries beyond the cache budget;
// entries not yet written to the file always stay.
func (l *Log) evictLocked() {
	active := l.active()
	for l.tailBytes > l.opts.TailCacheBytes && l.tailHead < len(l.tail) {
		c := &l.tail[l.tailHead]
		if c.seg == active && c.pos+int64(c.frameSize()) > l.flushedEnd {
			break
		}
		l.tailBytes -= c.frameSize()
		*c = cachedEntry{}
		l.tailHead++
	}
	if l.tailHead > 1024 && l.tailHead > len(l.tail)/2 {
		n := copy(l.tail, l.tail[l.tailHead:])
		clear(l.tail[n:])
		l.tail = l.tail[:n]
		l.tailHead = 0
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
	if _, err := file.WriteAt(chunk[flushed:used], pos+int64(flushed)); err != nil {
		return 0, l.setSticky(fmt.Errorf("segmentlog: write %s: %w", path, err))
	}
	l.mu.Lock()
	l.chunkFlushed = used
	l.flushedEnd = pos + int64(used)
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
	covered, err := l.flush()
	l.mu.RLock()
	file, path := l.writeFile, l.active().path
	l.mu.RUnlock()
	l.flushMu.Unlock()
	if err != nil {
		return 0, err
	}
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
	if err := l.writeFile.SyncData(); err != nil {
		return fmt.Errorf("segmentlog: sync %s: %w", old.path, err)
	}
	if err := l.writeIndexFile(old); err != nil {
		return err
	}
	h := segmentHeader{
		firstIndex: l.lastIndex + 1, prevTerm: old.lastTerm, firstOffset: l.nextOffset,
		generation: l.generation, createdMs: l.opts.Now().UnixMilli(),
	}
	seg, writeFile, err := l.createSegment(h)
	if err != nil {
		return err
	}
	oldWriteFile := l.writeFile
	l.mu.Lock()
	l.segments = append(l.segments, seg)
	l.writeFile, l.flushedEnd = writeFile, segmentHeaderSize
	l.chunk, l.chunkUsed, l.chunkFlushed = nil, 0, 0
	l.lastPointPos = -1
	l.durableIndex = max(l.durableIndex, covered)
	l.mu.Unlock()
	if err := oldWriteFile.Close(); err != nil {
		return fmt.Errorf("segmentlog: close %s: %w", old.path, err)
	}
	return nil
}

// createSegment writes a new segment file holding only its header, under
// a temporary name, syncs it, renames it into place and syncs the
// directory, so a segment file never exists with a torn header. It returns
// the segment (with a read handle) and a read-write handle.
func (l *Log) createSegment(h segmentHeader) (*segment, vfs.File, error) {
	path := l.path(segmentFileName(h.firstIndex))
	tmp := path + tempSuffix
	f, err := l.fs.Create(tmp, vfs.WriteCategoryUnspecified)
	if err != nil {
		return nil, nil, fmt.Errorf("segmentlog: create %s: %w", tmp, err)
	}
	var buf [segmentHeaderSize]byte
	encodeSegmentHeader(buf[:], &h)
	fail := func(op string, err error) (*segment, vfs.File, error) {
		f.Close()
		return nil, nil, fmt.Errorf("segmentlog: %s %s: %w", op, tmp, err)
	}
	if _, err := f.Write(buf[:]); err != nil {
		return fail("write", err)
	}
	if err := f.SyncData(); err != nil {
		return fail("sync", err)
	}
	if err := l.fs.Rename(tmp, path); err != nil {
		return fail("rename", err)
	}
	if err := l.syncDir(); err != nil {
		f.Close()
		return nil, nil, err
	}
	readFile, err := l.fs.Open(path)
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("segmentlog: open %s: %w", path, err)
	}
	seg := &segment{
		path: path, indexPath: l.path(indexFileName(h.firstIndex)), header: h, file: readFile,
		lastIndex: h.firstIndex - 1, lastTerm: h.prevTerm, nextOffset: h.firstOffset,
		end: segmentHeaderSize, lastFramePos: -1,
	}
	return seg, f, nil
}

// writeIndexFile writes a sealed segment's sparse index under a temporary
// name and renames it into place. It is not synced: an index that did not
// survive a crash is found missing or invalid and rebuilt.
func (l *Log) writeIndexFile(s *segment) error {
	l.mu.RLock()
	sum := s.summary()
	b := encodeIndexFile(&sum, s.points)
	l.mu.RUnlock()
	tmp := s.indexPath + tempSuffix
	f, err := l.fs.Create(tmp, vfs.WriteCategoryUnspecified)
	if err != nil {
		return fmt.Errorf("segmentlog: create %s: %w", tmp, err)
	}
	_, err = f.Write(b)
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
