package segmentlog

import (
	"errors"
	"fmt"
	"io"
	"sort"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/raftmq/raftmq/protocol"
)

// segment is one segment file. Its immutable fields are set at creation;
// the rest change under Log.mu (appends, for the active segment) or under
// Log.fileMu held for writing (truncation).
type segment struct {
	path      string
	indexPath string
	header    segmentHeader
	file      vfs.File // read handle, positional reads only

	lastIndex    uint64 // header.firstIndex-1 while empty
	lastTerm     uint64 // header.prevTerm while empty
	nextOffset   uint64 // record offset after the segment's last batch
	end          int64  // logical end of data, buffered bytes included
	lastFramePos int64
	lastFrameCRC uint32
	maxTime      int64
	points       []indexPoint
}

func (s *segment) empty() bool { return s.lastIndex < s.header.firstIndex }

// pointFor returns the last sparse index point at or before index. The
// segment must hold index.
func (s *segment) pointFor(index uint64) indexPoint {
	i := sort.Search(len(s.points), func(i int) bool { return s.points[i].index > index })
	if i == 0 {
		return s.startPoint()
	}
	return s.points[i-1]
}

// pointForOffset returns the last sparse index point whose offset is at or
// before offset: the batch holding offset is at or after it.
func (s *segment) pointForOffset(offset uint64) indexPoint {
	i := sort.Search(len(s.points), func(i int) bool { return s.points[i].offset > offset })
	if i == 0 {
		return s.startPoint()
	}
	return s.points[i-1]
}

func (s *segment) startPoint() indexPoint {
	return indexPoint{index: s.header.firstIndex, pos: segmentHeaderSize, offset: s.header.firstOffset}
}

func (s *segment) summary() indexSummary {
	return indexSummary{
		firstIndex: s.header.firstIndex, lastIndex: s.lastIndex, lastTerm: s.lastTerm,
		dataEnd: s.end, nextOffset: s.nextOffset, lastFramePos: s.lastFramePos,
		lastFrameCRC: s.lastFrameCRC, maxTime: s.maxTime,
	}
}

// frameStatus classifies what frameReader.next found.
type frameStatus int

const (
	frameOK          frameStatus = iota
	frameEnd                     // end of data: limit reached or an all-zero header
	frameShortHeader             // fewer than a header's bytes left, not all zero
	frameBadHeader               // the header's fields are invalid
	framePastEnd                 // a valid header whose frame runs past the end of data
	frameBadBody                 // CRC mismatch or invalid batch header
	// Only in scan results:
	frameZeroHeader // an all-zero header followed by non-zero bytes
	frameSequence   // a valid frame that does not follow its predecessor
)

// invalid reports whether the status is one of the torn-or-corrupt kinds.
func (s frameStatus) invalid() bool { return s >= frameShortHeader }

// frameReader reads consecutive frames of one file with large positional
// reads. With keep set, a buffer is never reused, so returned frames stay
// valid for the caller.
type frameReader struct {
	file     vfs.File
	path     string
	limit    int64 // end of readable data
	maxEntry int
	keep     bool
	readSize int

	buf    []byte
	bufPos int64
}

const defaultReadSize = 256 << 10

// window returns b[pos, pos+n) of the file, reading if needed.
func (r *frameReader) window(pos int64, n int) ([]byte, error) {
	if pos >= r.bufPos && pos+int64(n) <= r.bufPos+int64(len(r.buf)) {
		off := pos - r.bufPos
		return r.buf[off : off+int64(n)], nil
	}
	size := max(n, r.readSize)
	if rest := r.limit - pos; int64(size) > rest {
		size = int(rest)
	}
	if size < n {
		return nil, io.ErrUnexpectedEOF
	}
	if r.keep || cap(r.buf) < size {
		r.buf = make([]byte, size)
	}
	r.buf = r.buf[:size]
	got, err := r.file.ReadAt(r.buf, pos)
	if got < size {
		r.buf = r.buf[:0]
		if err == nil || errors.Is(err, io.EOF) {
			err = fmt.Errorf("segmentlog: short read of %s at byte %d: %d of %d bytes", r.path, pos, got, size)
		}
		return nil, err
	}
	r.bufPos = pos
	return r.buf[:n], nil
}

// next reads the frame at pos. On frameOK it returns the frame bytes.
func (r *frameReader) next(pos int64) (frameStatus, frameHeader, []byte, string, error) {
	var h frameHeader
	if pos >= r.limit {
		return frameEnd, h, nil, "", nil
	}
	if rest := r.limit - pos; rest < frameHeaderSize {
		b, err := r.window(pos, int(rest))
		if err != nil {
			return frameBadBody, h, nil, "", err
		}
		if isZero(b) {
			return frameEnd, h, nil, "", nil
		}
		return frameShortHeader, h, nil, "truncated frame header", nil
	}
	hb, err := r.window(pos, frameHeaderSize)
	if err != nil {
		return frameBadBody, h, nil, "", err
	}
	if isZero(hb) {
		return frameEnd, h, nil, "", nil
	}
	h = readFrameHeader(hb)
	if reason := checkFrameHeader(&h, r.maxEntry); reason != "" {
		return frameBadHeader, h, nil, reason, nil
	}
	size := frameHeaderSize + int(h.length)
	if int64(size) > r.limit-pos {
		return framePastEnd, h, nil, fmt.Sprintf("frame of %d bytes runs past the end of data", size), nil
	}
	frame, err := r.window(pos, size)
	if err != nil {
		return frameBadBody, h, nil, "", err
	}
	if reason := checkFrameBody(&h, frame); reason != "" {
		return frameBadBody, h, nil, reason, nil
	}
	return frameOK, h, frame, "", nil
}

// zeroAfter reports the position of the first non-zero byte in [pos,
// limit), or -1 when all are zero.
func (r *frameReader) zeroAfter(pos int64) (int64, error) {
	for pos < r.limit {
		n := int(min(int64(r.readSize), r.limit-pos))
		b, err := r.window(pos, n)
		if err != nil {
			return 0, err
		}
		for i := range b {
			if b[i] != 0 {
				return pos + int64(i), nil
			}
		}
		pos += int64(n)
	}
	return -1, nil
}

// scanState tracks what a walk over frames has seen, so a walk can check
// that each frame follows the previous one.
type scanState struct {
	nextIndex    uint64
	lastTerm     uint64
	nextOffset   uint64
	maxTime      int64
	pos          int64
	lastFramePos int64
	lastFrameCRC uint32
}

// advance checks that frame h (at st.pos) follows the state and applies it.
func (st *scanState) advance(h *frameHeader, frame []byte) string {
	if h.index != st.nextIndex {
		return fmt.Sprintf("entry index %d where %d was expected", h.index, st.nextIndex)
	}
	if h.term < st.lastTerm {
		return fmt.Sprintf("entry %d has term %d below the previous term %d", h.index, h.term, st.lastTerm)
	}
	if h.typ == protocol.EntryRecordBatch {
		bh, _ := protocol.ReadBatchHeader(frame[frameHeaderSize:]) // checked by checkFrameBody
		if bh.BaseOffset != st.nextOffset {
			return fmt.Sprintf("entry %d has base offset %d where %d was expected", h.index, bh.BaseOffset, st.nextOffset)
		}
		st.nextOffset += uint64(bh.RecordCount)
		st.maxTime = max(st.maxTime, bh.MaxTimestamp)
	}
	st.nextIndex++
	st.lastTerm = h.term
	st.lastFramePos = st.pos
	st.lastFrameCRC = h.crc
	st.pos += int64(len(frame))
	return ""
}

// scanResult is the outcome of scanning a whole segment.
type scanResult struct {
	state      scanState
	points     []indexPoint
	stopReason string // empty when the data ended cleanly
	stopPos    int64  // where the problem was seen
	// The first bad frame: where it starts (state.pos), what is wrong with
	// it, and its header (valid for framePastEnd and frameBadBody).
	badKind   frameStatus
	badHeader frameHeader
}

// scanSegment reads every frame of a segment from its header on, building
// the sparse index. It stops at the first invalid frame, or at non-zero
// bytes after the end of data, and reports where and why.
func scanSegment(r *frameReader, h segmentHeader, interval int) (scanResult, error) {
	var res scanResult
	st := scanState{
		nextIndex: h.firstIndex, lastTerm: h.prevTerm, nextOffset: h.firstOffset,
		pos: segmentHeaderSize, lastFramePos: -1,
	}
	lastPointPos := int64(-1)
	for {
		status, fh, frame, reason, err := r.next(st.pos)
		if err != nil {
			return res, err
		}
		if status == frameEnd {
			nz, err := r.zeroAfter(st.pos)
			if err != nil {
				return res, err
			}
			if nz >= 0 {
				res.stopReason, res.stopPos = "non-zero bytes after the end of data", nz
				res.badKind = frameZeroHeader
			}
			break
		}
		if status.invalid() {
			res.stopReason, res.stopPos = reason, st.pos
			res.badKind, res.badHeader = status, fh
			break
		}
		pt := indexPoint{index: fh.index, pos: st.pos, offset: st.nextOffset}
		if reason := st.advance(&fh, frame); reason != "" {
			res.stopReason, res.stopPos = reason, st.pos
			res.badKind, res.badHeader = frameSequence, fh
			break
		}
		if lastPointPos < 0 || pt.pos-lastPointPos >= int64(interval) {
			pt.maxTime = st.maxTime
			res.points = append(res.points, pt)
			lastPointPos = pt.pos
		}
	}
	res.state = st
	return res, nil
}

// applyScan installs a scan's result into a segment.
func (s *segment) applyScan(res *scanResult) {
	st := &res.state
	s.lastIndex = st.nextIndex - 1
	s.lastTerm = st.lastTerm
	s.nextOffset = st.nextOffset
	s.end = st.pos
	s.lastFramePos = st.lastFramePos
	s.lastFrameCRC = st.lastFrameCRC
	s.maxTime = st.maxTime
	s.points = res.points
}

// verifyIndex checks that an index file's summary still describes the
// segment: the last frame it names is there, unchanged, and data ends where
// it says. It returns false for a stale index.
func (s *segment) verifyIndex(sum *indexSummary, points []indexPoint, size int64, maxEntry int) (bool, error) {
	if sum.firstIndex != s.header.firstIndex || sum.lastIndex < sum.firstIndex ||
		sum.dataEnd > size || sum.lastFramePos < segmentHeaderSize ||
		sum.lastFramePos+frameHeaderSize > sum.dataEnd || len(points) == 0 ||
		points[0].index != sum.firstIndex || points[0].pos != segmentHeaderSize ||
		points[0].offset != s.header.firstOffset || points[len(points)-1].index > sum.lastIndex ||
		points[len(points)-1].pos > sum.lastFramePos {
		return false, nil
	}
	b := make([]byte, frameHeaderSize*2)
	n, err := s.file.ReadAt(b, sum.lastFramePos)
	if err != nil && !errors.Is(err, io.EOF) {
		return false, err
	}
	if n < frameHeaderSize {
		return false, nil
	}
	h := readFrameHeader(b)
	if h.index != sum.lastIndex || h.term != sum.lastTerm || h.crc != sum.lastFrameCRC ||
		sum.lastFramePos+frameHeaderSize+int64(h.length) != sum.dataEnd || int(h.length) > maxEntry {
		return false, nil
	}
	after := make([]byte, min(int64(frameHeaderSize), size-sum.dataEnd))
	if len(after) > 0 {
		if _, err := s.file.ReadAt(after, sum.dataEnd); err != nil && !errors.Is(err, io.EOF) {
			return false, err
		}
		if !isZero(after) {
			return false, nil
		}
	}
	return true, nil
}
