package segmentlog

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/cockroachdb/errors/oserror"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// open recovers the log directory (see Open).
func (l *Log) open() error {
	if err := l.fs.MkdirAll(l.dir, 0o755); err != nil {
		return fmt.Errorf("segmentlog: create %s: %w", l.dir, err)
	}
	// Make the directory's own entry durable (it may just have been created).
	if parent, err := l.fs.OpenDir(l.fs.PathDir(l.dir)); err != nil {
		return fmt.Errorf("segmentlog: open directory %s: %w", l.fs.PathDir(l.dir), err)
	} else {
		err := parent.Sync()
		parent.Close()
		if err != nil {
			return fmt.Errorf("segmentlog: sync directory %s: %w", l.fs.PathDir(l.dir), err)
		}
	}
	lock, err := l.fs.Lock(l.path(lockFileName))
	if err != nil {
		return fmt.Errorf("segmentlog: lock %s: %w", l.dir, err)
	}
	l.lock = lock
	names, err := l.fs.List(l.dir)
	if err != nil {
		return fmt.Errorf("segmentlog: list %s: %w", l.dir, err)
	}
	slices.Sort(names)
	var firstIndexes []uint64
	indexFiles := map[uint64]bool{}
	for _, name := range names {
		if strings.HasSuffix(name, tempSuffix) {
			if err := l.fs.Remove(l.path(name)); err != nil && !oserror.IsNotExist(err) {
				return fmt.Errorf("segmentlog: remove %s: %w", name, err)
			}
			continue
		}
		if i, ok := parseSegmentName(name, segmentSuffix); ok {
			firstIndexes = append(firstIndexes, i)
		} else if i, ok := parseSegmentName(name, indexSuffix); ok {
			indexFiles[i] = true
		}
	}
	if err := l.openSegments(firstIndexes); err != nil {
		return err
	}
	for i := range indexFiles { // orphan index files
		if !slices.ContainsFunc(l.segments, func(s *segment) bool { return s.header.firstIndex == i }) {
			if err := l.fs.Remove(l.path(indexFileName(i))); err != nil && !oserror.IsNotExist(err) {
				return fmt.Errorf("segmentlog: remove %s: %w", indexFileName(i), err)
			}
		}
	}
	if len(l.segments) == 0 {
		seg, writeFile, allocEnd, err := l.createSegment(segmentHeader{firstIndex: 1, createdMs: l.opts.Now().UnixMilli()})
		if err != nil {
			return err
		}
		l.setSegmentsLocked([]*segment{seg})
		l.writeFile, l.allocEnd = writeFile, allocEnd
	} else if err := l.recoverSegments(); err != nil {
		return err
	}
	active := l.active()
	l.lastIndex, l.nextOffset, l.durableIndex = active.lastIndex, active.nextOffset, active.lastIndex
	l.flushedIndex = l.lastIndex
	l.flushedEnd, l.syncedEnd = active.end, active.end
	if n := len(active.points); n > 0 {
		l.lastPointPos = active.points[n-1].pos
	}
	return nil
}

// openSegments opens every segment file, checks its header, and removes
// the leftovers of an interrupted Reset (segments of an older generation).
func (l *Log) openSegments(firstIndexes []uint64) error {
	for _, first := range firstIndexes {
		path := l.path(segmentFileName(first))
		f, err := l.fs.Open(path)
		if err != nil {
			return fmt.Errorf("segmentlog: open %s: %w", path, err)
		}
		s := &segment{path: path, indexPath: l.path(indexFileName(first)), file: f}
		l.segments = append(l.segments, s)
		var buf [segmentHeaderSize]byte
		n, err := f.ReadAt(buf[:], 0)
		if err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("segmentlog: read %s: %w", path, err)
		}
		h, reason := decodeSegmentHeader(buf[:n])
		if reason != "" {
			return corruptf(path, 0, "%s", reason)
		}
		if h.firstIndex != first {
			return corruptf(path, 16, "header names first index %d", h.firstIndex)
		}
		s.header = h
		l.generation = max(l.generation, h.generation)
	}
	kept := l.segments[:0]
	removed := false
	for _, s := range l.segments {
		if s.header.generation == l.generation {
			kept = append(kept, s)
			continue
		}
		if err := l.removeSegmentFiles(s); err != nil {
			return err
		}
		removed = true
	}
	clear(l.segments[len(kept):])
	l.setSegmentsLocked(kept)
	if removed {
		return l.syncDir()
	}
	return nil
}

// recoverSegments loads the sealed segments' indexes (rebuilding missing
// or stale ones), scans the active segment and cuts its torn tail, and
// checks that the segments follow each other.
func (l *Log) recoverSegments() error {
	last := len(l.segments) - 1
	for _, s := range l.segments[:last] {
		if err := l.loadSealed(s); err != nil {
			return err
		}
	}
	active := l.segments[last]
	if err := l.fs.Remove(active.indexPath); err != nil && !oserror.IsNotExist(err) {
		return fmt.Errorf("segmentlog: remove %s: %w", active.indexPath, err)
	}
	res, size, err := l.scan(active)
	if err != nil {
		return err
	}
	if res.stopReason != "" {
		r := frameReader{file: active.file, path: active.path, limit: size, maxEntry: l.opts.MaxEntryBytes, readSize: 1 << 20}
		if err := checkTornTail(&r, &res); err != nil {
			return err
		}
	}
	active.applyScan(&res)
	writeFile, err := l.fs.OpenReadWrite(active.path, vfs.WriteCategoryUnspecified)
	if err != nil {
		return fmt.Errorf("segmentlog: open %s: %w", active.path, err)
	}
	// The file's zeros after the last frame (preallocated space, or what a
	// truncation zeroed) stay as the active segment's preallocation.
	l.writeFile, l.allocEnd = writeFile, size
	if res.stopReason != "" {
		// A torn tail: zero it so nothing after the cut can come back, and
		// sync the cut.
		if err := l.zeroRange(active, active.end, size); err != nil {
			return err
		}
	} else if err := writeFile.SyncData(); err != nil {
		// What was read may only be in the page cache of a crashed process.
		return fmt.Errorf("segmentlog: sync %s: %w", active.path, err)
	}
	for k := 1; k < len(l.segments); k++ {
		prev, s := l.segments[k-1], l.segments[k]
		switch {
		case s.header.firstIndex != prev.lastIndex+1:
			return corruptf(s.path, 16, "segment starts at index %d but %s ends at %d", s.header.firstIndex, prev.path, prev.lastIndex)
		case s.header.prevTerm != prev.lastTerm:
			return corruptf(s.path, 24, "previous term %d but %s ends with term %d", s.header.prevTerm, prev.path, prev.lastTerm)
		case s.header.firstOffset != prev.nextOffset:
			return corruptf(s.path, 32, "first offset %d but %s ends at offset %d", s.header.firstOffset, prev.path, prev.nextOffset)
		}
	}
	return nil
}

func (l *Log) scan(s *segment) (scanResult, int64, error) {
	info, err := s.file.Stat()
	if err != nil {
		return scanResult{}, 0, fmt.Errorf("segmentlog: stat %s: %w", s.path, err)
	}
	size := info.Size()
	r := frameReader{file: s.file, path: s.path, limit: size, maxEntry: l.opts.MaxEntryBytes, readSize: 1 << 20}
	res, err := scanSegment(&r, s.header, l.opts.IndexIntervalBytes)
	if err != nil {
		return res, size, fmt.Errorf("segmentlog: read %s: %w", s.path, err)
	}
	return res, size, nil
}

// loadSealed loads a sealed segment from its index file when the index is
// valid and current, and otherwise scans the segment, where any invalid
// frame is corruption, and writes a fresh index.
func (l *Log) loadSealed(s *segment) error {
	info, err := s.file.Stat()
	if err != nil {
		return fmt.Errorf("segmentlog: stat %s: %w", s.path, err)
	}
	if ok, err := l.tryIndexFile(s, info.Size()); err != nil || ok {
		return err
	}
	res, _, err := l.scan(s)
	if err != nil {
		return err
	}
	if res.stopReason != "" {
		return corruptf(s.path, res.stopPos, "%s", res.stopReason)
	}
	if res.state.nextIndex == s.header.firstIndex {
		return corruptf(s.path, segmentHeaderSize, "sealed segment holds no entry")
	}
	s.applyScan(&res)
	return l.writeIndexFile(s)
}

func (l *Log) tryIndexFile(s *segment, size int64) (bool, error) {
	f, err := l.fs.Open(s.indexPath)
	if err != nil {
		if oserror.IsNotExist(err) {
			return false, nil
		}
		return false, fmt.Errorf("segmentlog: open %s: %w", s.indexPath, err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return false, fmt.Errorf("segmentlog: stat %s: %w", s.indexPath, err)
	}
	b := make([]byte, info.Size())
	if _, err := f.ReadAt(b, 0); err != nil && !errors.Is(err, io.EOF) {
		return false, fmt.Errorf("segmentlog: read %s: %w", s.indexPath, err)
	}
	sum, points, reason := decodeIndexFile(b)
	if reason != "" {
		return false, nil
	}
	ok, err := s.verifyIndex(&sum, points, size, l.opts.MaxEntryBytes)
	if err != nil || !ok {
		return false, err
	}
	s.lastIndex, s.lastTerm, s.nextOffset, s.end = sum.lastIndex, sum.lastTerm, sum.nextOffset, sum.dataEnd
	s.lastFramePos, s.lastFrameCRC, s.maxTime, s.points = sum.lastFramePos, sum.lastFrameCRC, sum.maxTime, points
	return true, nil
}
