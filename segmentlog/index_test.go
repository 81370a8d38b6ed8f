package segmentlog

import (
	"bytes"
	"io"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/raftmq/raftmq/protocol"
)

// referenceIndexFile encodes an index file in one buffer, the layout
// writeIndexFileTo writes piece by piece (see doc.go).
func referenceIndexFile(sum *indexSummary, points []indexPoint) []byte {
	b := make([]byte, indexHeaderSize+len(points)*indexPointSize+4)
	copy(b, indexMagic)
	le.PutUint16(b[8:], indexVersion)
	le.PutUint32(b[12:], uint32(len(points)))
	le.PutUint64(b[16:], sum.firstIndex)
	le.PutUint64(b[24:], sum.lastIndex)
	le.PutUint64(b[32:], sum.lastTerm)
	le.PutUint64(b[40:], uint64(sum.dataEnd))
	le.PutUint64(b[48:], sum.nextOffset)
	le.PutUint64(b[56:], uint64(sum.lastFramePos))
	le.PutUint32(b[64:], sum.lastFrameCRC)
	le.PutUint64(b[72:], uint64(sum.maxTime))
	le.PutUint32(b[92:], protocol.CRC32C(b[:92]))
	for i, pt := range points {
		p := b[indexHeaderSize+i*indexPointSize:]
		le.PutUint64(p, pt.index)
		le.PutUint64(p[8:], uint64(pt.pos))
		le.PutUint64(p[16:], pt.offset)
		le.PutUint64(p[24:], uint64(pt.maxTime))
	}
	le.PutUint32(b[len(b)-4:], protocol.CRC32C(b[indexHeaderSize:len(b)-4]))
	return b
}

// countingWriter records the size of every Write.
type countingWriter struct {
	bytes.Buffer
	writes []int
}

func (w *countingWriter) Write(p []byte) (int, error) {
	w.writes = append(w.writes, len(p))
	return w.Buffer.Write(p)
}

// TestIndexFileWrittenInPieces checks that an index file written piece by
// piece is byte for byte the one-buffer encoding and decodes back, for
// point counts around the piece boundaries (the first piece holds the
// header and 2,045 points, so 2,045 points fill it exactly and the CRC
// goes in a write of its own).
func TestIndexFileWrittenInPieces(t *testing.T) {
	perFirst := (indexPieceBytes - indexHeaderSize) / indexPointSize
	per := indexPieceBytes / indexPointSize
	r := rand.New(rand.NewPCG(3, 3))
	for _, n := range []int{0, 1, 2, perFirst - 1, perFirst, perFirst + 1, perFirst + per - 1, perFirst + per, perFirst + per + 1, 3*per + 17} {
		points := make([]indexPoint, n)
		for i := range points {
			points[i] = indexPoint{index: uint64(10 + 3*i), pos: int64(segmentHeaderSize + 100*i), offset: uint64(7 * i), maxTime: int64(r.Uint64() >> 1)}
		}
		sum := indexSummary{firstIndex: 10, lastIndex: uint64(10 + 3*n), lastTerm: 4, dataEnd: int64(segmentHeaderSize + 100*n + 50),
			nextOffset: uint64(7*n + 3), lastFramePos: int64(segmentHeaderSize + 100*n), lastFrameCRC: r.Uint32(), maxTime: 99}
		var w countingWriter
		if err := writeIndexFileTo(&w, make([]byte, indexPieceBytes), &sum, points); err != nil {
			t.Fatal(err)
		}
		want := referenceIndexFile(&sum, points)
		if !bytes.Equal(w.Bytes(), want) {
			t.Fatalf("%d points: written file differs from the one-buffer encoding", n)
		}
		if max := slices.Max(w.writes); max > indexPieceBytes {
			t.Fatalf("%d points: a write of %d bytes, more than a piece", n, max)
		}
		gotSum, gotPoints, reason := decodeIndexFile(w.Bytes())
		if reason != "" || gotSum != sum || !slices.Equal(gotPoints, points) {
			t.Fatalf("%d points: decoded %q, summary match %v, points match %v", n, reason, gotSum == sum, slices.Equal(gotPoints, points))
		}
	}
}

type failingWriter struct{ left int }

func (w *failingWriter) Write(p []byte) (int, error) {
	if w.left == 0 {
		return 0, io.ErrShortWrite
	}
	w.left--
	return len(p), nil
}

// TestIndexFileWriteErrorReturned checks that a failed write of any piece
// is returned.
func TestIndexFileWriteErrorReturned(t *testing.T) {
	points := make([]indexPoint, 5000)
	for i := range points {
		points[i] = indexPoint{index: uint64(i + 1), pos: int64(segmentHeaderSize + i)}
	}
	for left := range 3 {
		if err := writeIndexFileTo(&failingWriter{left: left}, make([]byte, indexPieceBytes), &indexSummary{}, points); err == nil {
			t.Fatalf("write %d failed, writeIndexFileTo returned nil", left+1)
		}
	}
}

// dropBefore drops the model's entries before first, as DeleteBefore does.
func (m *model) dropBefore(first uint64) {
	k := int(first - m.firstIndex)
	if k == 0 {
		return
	}
	m.prevTerm = m.entries[k-1].Term
	m.firstOff = m.offsets[k]
	m.entries, m.offsets = m.entries[k:], m.offsets[k:]
	m.firstIndex = first
}

// TestDeletedSegmentsLendPointsToNewSegments checks that a segment created
// after DeleteBefore takes over a deleted segment's point list (the memory
// is reused, not allocated again), and that the log, its index files and
// a reopened log still read back exactly what was appended.
func TestDeletedSegmentsLendPointsToNewSegments(t *testing.T) {
	opts := smallOptions()
	opts.SegmentMaxBytes = 256 << 10
	opts.IndexIntervalBytes = 64 // about one point per entry: over 1,024 points a segment
	opts.TailCacheBytes = 16 << 10
	fs := vfs.NewMem()
	l := mustOpen(t, fs, opts)
	defer func() { l.Close() }()
	m := newModel()
	r := rand.New(rand.NewPCG(5, 5))
	appendSegments := func(n int) {
		t.Helper()
		for start := l.SegmentCount(); l.SegmentCount() < start+n; {
			var batch []protocol.Entry
			for range 20 {
				batch = append(batch, randomEntry(r, m.lastIndex()+1+uint64(len(batch)), 1, 200))
			}
			if err := l.Append(batch); err != nil {
				t.Fatal(err)
			}
			m.append(batch...)
		}
	}
	appendSegments(3)
	deleted, err := l.DeleteBefore(l.active().header.firstIndex)
	if err != nil || deleted < 2 {
		t.Fatalf("DeleteBefore = %d, %v", deleted, err)
	}
	m.dropBefore(l.FirstIndex())
	l.mu.RLock()
	free := make(map[*indexPoint]bool)
	for _, p := range l.freePoints {
		free[&p[:1][0]] = true
	}
	l.mu.RUnlock()
	if len(free) == 0 {
		t.Fatal("no point list kept from the deleted segments")
	}
	appendSegments(1)
	l.mu.RLock()
	active := l.active()
	reused := len(active.points) > 0 && free[&active.points[0]]
	l.mu.RUnlock()
	if !reused {
		t.Fatal("the new segment did not take a deleted segment's point list")
	}
	appendSegments(2)
	checkAgainst(t, l, m)
	if _, err := l.Sync(); err != nil {
		t.Fatal(err)
	}
	// Every sealed segment's index file holds the segment's points.
	l.mu.RLock()
	sealed := slices.Clone(l.segments[:len(l.segments)-1])
	l.mu.RUnlock()
	for _, s := range sealed {
		b, err := readAll(fs, s.indexPath)
		if err != nil {
			t.Fatal(err)
		}
		sum, points, reason := decodeIndexFile(b)
		if reason != "" || sum != s.summary() || !slices.Equal(points, s.points) {
			t.Fatalf("index file %s: %q, summary match %v, points match %v", s.indexPath, reason, sum == s.summary(), slices.Equal(points, s.points))
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l = mustOpen(t, fs, opts)
	checkAgainst(t, l, m)
}

func readAll(fs vfs.FS, path string) ([]byte, error) {
	f, err := fs.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(f)
}

// TestActivePointsGrowGeometrically appends a whole segment of small entries
// in calls of a few entries and checks that the active segment's point
// list is reallocated only a logarithmic number of times, never beyond
// the most points a segment can hold, and that the points (checked
// against a scan of the same segment by reopening without index files)
// are the same.
func TestActivePointsGrowGeometrically(t *testing.T) {
	opts := DefaultOptions()
	opts.SegmentMaxBytes = 1 << 20
	opts.IndexIntervalBytes = 256
	opts.PreallocateBytes = 0
	fs := vfs.NewMem()
	l := mustOpen(t, fs, opts)
	limit := int(opts.SegmentMaxBytes/int64(opts.IndexIntervalBytes)) + 2
	r := rand.New(rand.NewPCG(5, 5))
	grows, lastCap := 0, -1
	for l.active().header.firstIndex == 1 {
		entries := make([]protocol.Entry, 1+r.IntN(4))
		for i := range entries {
			entries[i] = randomEntry(r, l.LastIndex()+1+uint64(i), 1, 300)
		}
		if err := l.Append(entries); err != nil {
			t.Fatal(err)
		}
		if l.active().header.firstIndex != 1 {
			break
		}
		if c := cap(l.active().points); c != lastCap {
			grows++
			lastCap = c
		}
		if lastCap > limit {
			t.Fatalf("point list capacity %d exceeds the most a segment needs, %d", lastCap, limit)
		}
	}
	sealed := l.segments[0]
	if len(sealed.points) < 1000 {
		t.Fatalf("only %d points in a full segment", len(sealed.points))
	}
	// append's own growth (about 1.25x a step once a slice is large)
	// reallocated these ~2,800 points' list 14 times; growing eightfold
	// from 64 takes 3 steps.
	if grows > 4 {
		t.Fatalf("the point list was reallocated %d times for %d points", grows, len(sealed.points))
	}
	want := slices.Clone(sealed.points)
	if _, err := l.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := fs.Remove(sealed.indexPath); err != nil {
		t.Fatal(err)
	}
	l = mustOpen(t, fs, opts)
	defer l.Close()
	if got := l.segments[0].points; !slices.Equal(got, want) {
		t.Fatalf("points after append differ from a scan: %d against %d points", len(want), len(got))
	}
}
