package segmentlog

import (
	"errors"
	"fmt"
	"io/fs"
	"time"

	"github.com/cockroachdb/errors/oserror"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// TruncateAfter removes every entry with an index above index (a Raft log
// conflict, §5.3), across segment boundaries. The removal is durable when
// it returns: later segments are removed newest first with a directory sync
// after each, and the cut segment's dropped bytes are zeroed and synced, so
// a crash at any point leaves a prefix of the log. Failures are sticky.
func (l *Log) TruncateAfter(index uint64) error {
	l.syncMu.Lock()
	defer l.syncMu.Unlock()
	l.flushMu.Lock()
	defer l.flushMu.Unlock()
	l.fileMu.Lock()
	defer l.fileMu.Unlock()
	l.mu.RLock()
	err, last, first := l.checkWritable(), l.lastIndex, l.firstIndexLocked()
	l.mu.RUnlock()
	if err != nil {
		return err
	}
	if index >= last {
		return nil
	}
	if index+1 < first {
		return fmt.Errorf("%w: truncate after %d, log starts at %d", ErrOutOfRange, index, first)
	}
	if err := l.truncateLocked(index); err != nil {
		return l.setSticky(err)
	}
	return nil
}

func (l *Log) truncateLocked(index uint64) error {
	if _, err := l.flush(); err != nil {
		return err
	}
	// The segment the cut falls in: the last one starting at or before index+1.
	k := len(l.segments) - 1
	for k > 0 && l.segments[k].header.firstIndex > index+1 {
		k--
	}
	for j := len(l.segments) - 1; j > k; j-- {
		if err := l.removeNewest(); err != nil {
			return err
		}
	}
	target := l.active()
	if l.writeFile == nil {
		f, err := l.fs.OpenReadWrite(target.path, vfs.WriteCategoryUnspecified)
		if err != nil {
			return fmt.Errorf("segmentlog: open %s: %w", target.path, err)
		}
		info, err := f.Stat()
		if err != nil {
			f.Close()
			return fmt.Errorf("segmentlog: stat %s: %w", target.path, err)
		}
		l.writeFile, l.allocEnd = f, info.Size()
		if err := l.fs.Remove(target.indexPath); err != nil && !oserror.IsNotExist(err) {
			return fmt.Errorf("segmentlog: remove %s: %w", target.indexPath, err)
		}
	}
	// Find the state after entry index: from the closest index point.
	st := scanState{nextIndex: target.header.firstIndex, lastTerm: target.header.prevTerm,
		nextOffset: target.header.firstOffset, pos: segmentHeaderSize, lastFramePos: -1}
	if index >= target.header.firstIndex {
		pt := target.pointFor(index)
		err := l.walk(target, pt, target.end, defaultReadSize, false, index+1, func(h frameHeader, frame []byte, before scanState) bool {
			st = before
			st.advance(&h, frame)
			return false
		})
		if err != nil {
			return err
		}
	}
	if err := l.zeroRange(target, st.pos, target.end); err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	target.lastIndex, target.lastTerm, target.nextOffset = st.nextIndex-1, st.lastTerm, st.nextOffset
	target.end, target.lastFramePos, target.lastFrameCRC = st.pos, st.lastFramePos, st.lastFrameCRC
	target.maxTime = st.maxTime
	n := len(target.points)
	for n > 0 && target.points[n-1].index > index {
		n--
	}
	target.points = target.points[:n]
	l.lastPointPos = -1
	if n > 0 {
		l.lastPointPos = target.points[n-1].pos
	}
	l.durableIndex = min(l.durableIndex, index)
	l.flushedEnd = st.pos
	l.syncedEnd = min(l.syncedEnd, st.pos)
	// Write-back counts from the cut (a follower's conflict truncation
	// followed by a large catch-up Append starts it as usual).
	l.wbEnd = min(l.wbEnd, st.pos)
	l.flushedIndex = min(l.flushedIndex, index)
	if start := l.tailStartLocked(); index+1 > start {
		l.cache.keep(int(index + 1 - start))
	} else {
		l.cache.keep(0)
	}
	l.lastIndex, l.nextOffset = index, st.nextOffset
	// Abandon the append chunk: kept entries may alias it. Chunks holding
	// only dropped entries are recycled with the kept ones before them.
	l.dropChunksLocked(index)
	return nil
}

// removeNewest deletes the active segment, making the previous one active
// (its read-write handle is opened by the caller). The directory is synced
// so that removals never become durable out of order.
func (l *Log) removeNewest() error {
	s := l.active()
	if l.writeFile != nil {
		l.writeFile.Close()
	}
	l.mu.Lock()
	l.writeFile = nil
	l.setSegmentsLocked(l.segments[:len(l.segments)-1])
	l.mu.Unlock()
	if err := l.removeSegmentFiles(s); err != nil {
		return err
	}
	return l.syncDir()
}

func (l *Log) removeSegmentFiles(s *segment) error {
	if s.file != nil {
		s.file.Close()
		s.file = nil
	}
	for _, p := range []string{s.indexPath, s.path} {
		if err := l.fs.Remove(p); err != nil && !oserror.IsNotExist(err) && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("segmentlog: remove %s: %w", p, err)
		}
	}
	return nil
}

// zeroRange overwrites [from, to) of the active file with zeros and syncs
// it, so no stale frame can reappear after the new end of data.
func (l *Log) zeroRange(s *segment, from, to int64) error {
	if from < to {
		zeros := make([]byte, min(to-from, 1<<20))
		for pos := from; pos < to; {
			n := min(int64(len(zeros)), to-pos)
			if _, err := l.writeFile.WriteAt(zeros[:n], pos); err != nil {
				return fmt.Errorf("segmentlog: write %s: %w", s.path, err)
			}
			pos += n
		}
	}
	if err := l.writeFile.SyncData(); err != nil {
		return fmt.Errorf("segmentlog: sync %s: %w", s.path, err)
	}
	return nil
}

// Reset drops every entry, durably, and continues the log at nextIndex with
// Term(nextIndex-1) = prevTerm (after a snapshot install). NextOffset is
// kept; use ResetOffsets when the snapshot says where offsets continue.
func (l *Log) Reset(nextIndex, prevTerm uint64) error {
	l.mu.RLock()
	next := l.nextOffset
	l.mu.RUnlock()
	return l.ResetOffsets(nextIndex, prevTerm, next)
}

// ResetOffsets is Reset that also sets the record offset the next batch
// gets. It writes a new segment of a newer generation and renames it into
// place (the commit point), then removes every older file; at open, files
// of an older generation are leftovers of an interrupted reset and removed.
func (l *Log) ResetOffsets(nextIndex, prevTerm, nextOffset uint64) error {
	if nextIndex == 0 {
		return fmt.Errorf("segmentlog: reset to index 0")
	}
	l.syncMu.Lock()
	defer l.syncMu.Unlock()
	l.flushMu.Lock()
	defer l.flushMu.Unlock()
	l.fileMu.Lock()
	defer l.fileMu.Unlock()
	l.mu.RLock()
	err := l.checkWritable()
	l.mu.RUnlock()
	if err != nil {
		return err
	}
	if err := l.resetLocked(nextIndex, prevTerm, nextOffset); err != nil {
		return l.setSticky(err)
	}
	return nil
}

func (l *Log) resetLocked(nextIndex, prevTerm, nextOffset uint64) error {
	old := l.segments
	h := segmentHeader{firstIndex: nextIndex, prevTerm: prevTerm, firstOffset: nextOffset,
		generation: l.generation + 1, createdMs: l.opts.Now().UnixMilli()}
	seg, writeFile, allocEnd, err := l.createSegment(h)
	if err != nil {
		// The old segments stay as they were, readable (a failed log
		// still serves reads).
		return err
	}
	// Only now that the new segment is in place are the old files closed:
	// fileMu keeps readers out until the segments are replaced.
	if l.writeFile != nil {
		l.writeFile.Close()
	}
	for _, s := range old {
		if s.file != nil {
			s.file.Close()
			s.file = nil
		}
	}
	l.allocEnd = allocEnd
	l.mu.Lock()
	l.generation = h.generation
	l.setSegmentsLocked([]*segment{seg})
	l.writeFile, l.flushedEnd = writeFile, segmentHeaderSize
	l.syncedEnd = segmentHeaderSize
	l.cache.keep(0)
	l.lastIndex, l.nextOffset, l.durableIndex = nextIndex-1, nextOffset, nextIndex-1
	l.flushedIndex = l.lastIndex
	l.dropChunksLocked(0)
	l.lastPointPos = -1
	l.mu.Unlock()
	removed := false
	for _, s := range old {
		if err := l.fs.Remove(s.indexPath); err != nil && !oserror.IsNotExist(err) {
			return fmt.Errorf("segmentlog: remove %s: %w", s.indexPath, err)
		}
		if s.path != seg.path {
			if err := l.fs.Remove(s.path); err != nil && !oserror.IsNotExist(err) {
				return fmt.Errorf("segmentlog: remove %s: %w", s.path, err)
			}
		}
		removed = true
	}
	if removed {
		return l.syncDir()
	}
	return nil
}

// DeleteBefore deletes whole sealed segments whose entries all have an
// index below index, oldest first, never the active segment. It returns how
// many segments it deleted. Each removal is followed by a directory sync so
// the log stays contiguous after a crash.
func (l *Log) DeleteBefore(index uint64) (int, error) {
	l.syncMu.Lock()
	defer l.syncMu.Unlock()
	l.fileMu.Lock()
	defer l.fileMu.Unlock()
	l.mu.RLock()
	err := l.checkWritable()
	l.mu.RUnlock()
	if err != nil {
		return 0, err
	}
	deleted := 0
	for len(l.segments) > 1 && l.segments[0].lastIndex < index {
		s := l.segments[0]
		l.mu.Lock()
		l.segments = l.segments[1:]
		l.recyclePointsLocked(s)
		l.mu.Unlock()
		if err := l.removeSegmentFiles(s); err != nil {
			return deleted, l.setSticky(err)
		}
		if err := l.syncDir(); err != nil {
			return deleted, l.setSticky(err)
		}
		deleted++
	}
	return deleted, nil
}

// RetentionPolicy says which sealed segments retention may delete. Zero
// fields disable that rule.
type RetentionPolicy struct {
	// MaxAge deletes a sealed segment once it was sealed longer ago than
	// this (sealing time is the creation time of the next segment, a broker
	// clock reading, not a producer timestamp).
	MaxAge time.Duration
	// MaxBytes deletes the oldest sealed segments while the log's segments
	// add up to more than this many bytes.
	MaxBytes int64
}

// RetentionIndex returns the index before which policy allows deleting
// segments at time now: the first index of the oldest segment to keep.
func (l *Log) RetentionIndex(policy RetentionPolicy, now time.Time) uint64 {
	l.mu.RLock()
	defer l.mu.RUnlock()
	var total int64
	for _, s := range l.segments {
		total += s.end
	}
	k := 0 // segments[:k] may go
	for k < len(l.segments)-1 {
		s, next := l.segments[k], l.segments[k+1]
		byAge := policy.MaxAge > 0 && now.UnixMilli()-next.header.createdMs > policy.MaxAge.Milliseconds()
		bySize := policy.MaxBytes > 0 && total > policy.MaxBytes
		if !byAge && !bySize {
			break
		}
		total -= s.end
		k++
	}
	return l.segments[k].header.firstIndex
}

// ApplyRetention deletes the segments policy allows, but none holding an
// index at or above limit (pass the index after the latest snapshot).
func (l *Log) ApplyRetention(policy RetentionPolicy, now time.Time, limit uint64) (int, error) {
	return l.DeleteBefore(min(l.RetentionIndex(policy, now), limit))
}

// SegmentCount and SizeBytes describe the log for metrics.
func (l *Log) SegmentCount() int {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return len(l.segments)
}

// SizeBytes is the total size of the segment files' data.
func (l *Log) SizeBytes() int64 {
	l.mu.RLock()
	defer l.mu.RUnlock()
	var total int64
	for _, s := range l.segments {
		total += s.end
	}
	return total
}
