package segmentlog

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/raftmq/raftmq/protocol"
)

func TestNewLogIsEmpty(t *testing.T) {
	l := mustOpen(t, vfs.NewMem(), smallOptions())
	defer l.Close()
	if l.FirstIndex() != 1 || l.LastIndex() != 0 || l.NextOffset() != 0 || l.FirstOffset() != 0 {
		t.Fatalf("new log: first %d last %d next offset %d", l.FirstIndex(), l.LastIndex(), l.NextOffset())
	}
	if term, err := l.Term(0); err != nil || term != 0 {
		t.Fatalf("Term(0) = %d, %v", term, err)
	}
	if d, err := l.Sync(); err != nil || d != 0 {
		t.Fatalf("Sync on empty log = %d, %v", d, err)
	}
}

func TestAppendStampsOffsetsOnItsOwnCopy(t *testing.T) {
	l := mustOpen(t, vfs.NewMem(), smallOptions())
	defer l.Close()
	b1, b2 := testBatch(3, 10, 1), testBatch(2, 10, 2)
	orig1 := bytes.Clone(b1)
	err := l.Append([]protocol.Entry{
		{Index: 1, Term: 1, Type: protocol.EntryRecordBatch, Data: b1},
		{Index: 2, Term: 1, Type: protocol.EntryControl, Data: []byte("commit")},
		{Index: 3, Term: 1, Type: protocol.EntryRecordBatch, Data: b2},
	})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b1, orig1) {
		t.Fatal("Append modified the caller's bytes")
	}
	if l.NextOffset() != 5 {
		t.Fatalf("NextOffset = %d, want 5", l.NextOffset())
	}
	for index, want := range map[uint64]uint64{1: 0, 3: 3} {
		if got, err := l.OffsetOfIndex(index); err != nil || got != want {
			t.Fatalf("OffsetOfIndex(%d) = %d, %v; want %d", index, got, err, want)
		}
	}
	if _, err := l.OffsetOfIndex(2); !errors.Is(err, ErrNotRecordBatch) {
		t.Fatalf("OffsetOfIndex(control) = %v", err)
	}
	for offset, want := range map[uint64]uint64{0: 1, 2: 1, 3: 3, 4: 3} {
		if got, err := l.IndexOfOffset(offset); err != nil || got != want {
			t.Fatalf("IndexOfOffset(%d) = %d, %v; want %d", offset, got, err, want)
		}
	}
	if _, err := l.IndexOfOffset(5); !errors.Is(err, ErrOutOfRange) {
		t.Fatalf("IndexOfOffset past the end = %v", err)
	}
	out, next, err := l.ReadBatches(nil, 1, 3, 1<<20)
	if err != nil || next != 5 {
		t.Fatalf("ReadBatches = next %d, %v", next, err)
	}
	h, err := protocol.VerifyBatch(out[:len(b1)])
	if err != nil || h.BaseOffset != 0 {
		t.Fatalf("first batch returned: %+v, %v", h, err)
	}
	if h, err := protocol.VerifyBatch(out[len(b1):]); err != nil || h.BaseOffset != 3 {
		t.Fatalf("second batch returned: %+v, %v", h, err)
	}
	if out, next, _ := l.ReadBatches(nil, 0, 2, 1<<20); len(out) != len(b1) || next != 3 {
		t.Fatalf("ReadBatches below maxIndex 2 returned %d bytes, next %d", len(out), next)
	}
}

func TestAppendRejectsGapsOverlapsAndBadBatches(t *testing.T) {
	l := mustOpen(t, vfs.NewMem(), smallOptions())
	defer l.Close()
	if err := l.Append([]protocol.Entry{{Index: 2, Term: 1, Type: protocol.EntryNoop}}); err == nil {
		t.Fatal("gap accepted")
	}
	if err := l.Append([]protocol.Entry{{Index: 1, Term: 1, Type: protocol.EntryNoop}, {Index: 3, Term: 1, Type: protocol.EntryNoop}}); err == nil {
		t.Fatal("gap inside a call accepted")
	}
	if l.LastIndex() != 0 {
		t.Fatal("a rejected call appended entries")
	}
	if err := l.Append([]protocol.Entry{{Index: 1, Term: 1, Type: protocol.EntryRecordBatch, Data: []byte("short")}}); err == nil {
		t.Fatal("invalid batch header accepted")
	}
	if err := l.Append([]protocol.Entry{{Index: 1, Term: 1, Type: protocol.EntryNoop}}); err != nil {
		t.Fatal(err)
	}
	if err := l.Append([]protocol.Entry{{Index: 1, Term: 1, Type: protocol.EntryNoop}}); err == nil {
		t.Fatal("overlap accepted")
	}
}

// TestRejectedAppendLeavesNoBatchState checks that a call rejected after
// some of its batches were validated leaves nothing behind: the next call's
// batches get their own record counts and offsets.
func TestRejectedAppendLeavesNoBatchState(t *testing.T) {
	l := mustOpen(t, vfs.NewMem(), smallOptions())
	defer l.Close()
	m := newModel()
	bad := []protocol.Entry{
		{Index: 1, Term: 1, Type: protocol.EntryRecordBatch, Data: testBatch(7, 40, 1)},
		{Index: 2, Term: 1, Type: protocol.EntryRecordBatch, Data: []byte("short")},
	}
	if err := l.Append(bad); err == nil {
		t.Fatal("invalid batch header accepted")
	}
	good := []protocol.Entry{
		{Index: 1, Term: 1, Type: protocol.EntryRecordBatch, Data: testBatch(2, 40, 2)},
		{Index: 2, Term: 1, Type: protocol.EntryRecordBatch, Data: testBatch(3, 40, 3)},
	}
	if err := l.Append(good); err != nil {
		t.Fatal(err)
	}
	m.append(good...)
	checkAgainst(t, l, m)
	if got := l.NextOffset(); got != 5 {
		t.Fatalf("NextOffset %d after batches of 2 and 3 records, want 5", got)
	}
}

// TestRandomWorkloadMatchesModel runs appends, syncs, rolls, truncations,
// reopens and prefix deletions against a model.
func TestRandomWorkloadMatchesModel(t *testing.T) {
	for seed := uint64(0); seed < 20; seed++ {
		r := rand.New(rand.NewPCG(seed, 1))
		fs := vfs.NewMem()
		opts := smallOptions()
		l := mustOpen(t, fs, opts)
		m := newModel()
		term := uint64(1)
		for step := 0; step < 300; step++ {
			switch op := r.IntN(20); {
			case op < 12:
				var batch []protocol.Entry
				for range 1 + r.IntN(5) {
					batch = append(batch, randomEntry(r, m.lastIndex()+1+uint64(len(batch)), term, 600))
				}
				if err := l.Append(batch); err != nil {
					t.Fatalf("seed %d: append: %v", seed, err)
				}
				m.append(batch...)
			case op < 15:
				d, err := l.Sync()
				if err != nil || d != m.lastIndex() {
					t.Fatalf("seed %d: sync = %d, %v; want %d", seed, d, err, m.lastIndex())
				}
			case op < 17:
				if len(m.entries) > 0 {
					cut := m.firstIndex - 1 + uint64(r.IntN(len(m.entries)+1))
					if err := l.TruncateAfter(cut); err != nil {
						t.Fatalf("seed %d: truncate: %v", seed, err)
					}
					m.truncateAfter(cut)
					term++
				}
			case op < 18:
				if err := l.Close(); err != nil {
					t.Fatalf("seed %d: close: %v", seed, err)
				}
				l = mustOpen(t, fs, opts)
			case op < 19:
				if len(m.entries) > 0 {
					before := m.firstIndex + uint64(r.IntN(len(m.entries)))
					if _, err := l.DeleteBefore(before); err != nil {
						t.Fatalf("seed %d: delete: %v", seed, err)
					}
					first := l.FirstIndex()
					if first > before {
						t.Fatalf("seed %d: DeleteBefore(%d) left first index %d", seed, before, first)
					}
					n := int(first - m.firstIndex)
					if n > 0 {
						m.prevTerm = m.entries[n-1].Term
						m.firstOff = m.offsets[n]
						m.entries, m.offsets = m.entries[n:], m.offsets[n:]
						m.firstIndex = first
					}
				}
			default:
				if err := compare(l, m); err != nil {
					t.Fatalf("seed %d step %d: %v", seed, step, err)
				}
			}
		}
		if err := compare(l, m); err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
		l.Close()
		l = mustOpen(t, fs, opts)
		if err := compare(l, m); err != nil {
			t.Fatalf("seed %d after reopen: %v", seed, err)
		}
		l.Close()
	}
}

func TestRollByAgeAndRetention(t *testing.T) {
	opts := smallOptions()
	opts.SegmentMaxBytes = 1 << 20
	opts.SegmentMaxAge = time.Hour
	now := time.UnixMilli(1_700_000_000_000)
	opts.Now = func() time.Time { return now }
	l := mustOpen(t, vfs.NewMem(), opts)
	defer l.Close()
	r := rand.New(rand.NewPCG(8, 8))
	for i := uint64(1); i <= 30; i++ {
		if err := l.Append([]protocol.Entry{randomEntry(r, i, 1, 200)}); err != nil {
			t.Fatal(err)
		}
		if i%10 == 0 {
			now = now.Add(61 * time.Minute)
		}
	}
	if got := l.SegmentCount(); got != 3 {
		t.Fatalf("%d segments after two age rolls, want 3", got)
	}
	// The first segment was sealed 122 minutes ago, the second 61.
	if got := l.RetentionIndex(RetentionPolicy{MaxAge: 90 * time.Minute}, now); got != 11 {
		t.Fatalf("retention by age keeps from %d, want 11", got)
	}
	if got := l.RetentionIndex(RetentionPolicy{MaxBytes: 1}, now); got != 21 {
		t.Fatalf("retention by size keeps from %d, want 21 (never the active segment)", got)
	}
	n, err := l.ApplyRetention(RetentionPolicy{MaxBytes: 1}, now, 15)
	if err != nil || n != 1 || l.FirstIndex() != 11 {
		t.Fatalf("ApplyRetention below limit 15 deleted %d (%v), first index %d", n, err, l.FirstIndex())
	}
	if term, err := l.Term(10); err != nil || term != 1 {
		t.Fatalf("Term(first-1) after deletion = %d, %v", term, err)
	}
}

func TestResetContinuesAtIndexAndOffset(t *testing.T) {
	fs := vfs.NewMem()
	l := mustOpen(t, fs, smallOptions())
	r := rand.New(rand.NewPCG(4, 4))
	for i := uint64(1); i <= 50; i++ {
		if err := l.Append([]protocol.Entry{randomEntry(r, i, 1, 800)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.ResetOffsets(1000, 7, 5000); err != nil {
		t.Fatal(err)
	}
	check := func(l *Log) {
		t.Helper()
		if l.FirstIndex() != 1000 || l.LastIndex() != 999 || l.NextOffset() != 5000 || l.DurableIndex() != 999 {
			t.Fatalf("after reset: first %d last %d next offset %d durable %d", l.FirstIndex(), l.LastIndex(), l.NextOffset(), l.DurableIndex())
		}
		if term, err := l.Term(999); err != nil || term != 7 {
			t.Fatalf("Term(999) = %d, %v", term, err)
		}
	}
	check(l)
	l.Close()
	l = mustOpen(t, fs, smallOptions())
	defer l.Close()
	check(l)
	if names, _ := fs.List("log"); len(names) != 2 {
		t.Fatalf("files after reset: %v", names)
	}
	if err := l.Append([]protocol.Entry{{Index: 1000, Term: 8, Type: protocol.EntryRecordBatch, Data: testBatch(2, 10, 1)}}); err != nil {
		t.Fatal(err)
	}
	if off, err := l.OffsetOfIndex(1000); err != nil || off != 5000 {
		t.Fatalf("OffsetOfIndex after reset = %d, %v", off, err)
	}
}

// TestRollsBetweenAppendCalls: an Append that does not fit in what is left
// of the active segment but fits in an empty one goes whole into a new
// segment; an Append larger than a segment is split entry by entry; no
// segment grows past SegmentMaxBytes unless it holds a single entry.
func TestRollsBetweenAppendCalls(t *testing.T) {
	opts := smallOptions() // 16 KiB segments
	l := mustOpen(t, vfs.NewMem(), opts)
	defer l.Close()
	const perCall, size = 4, 1000 // about 4 KiB of frames per call: 3.9 calls fit a segment
	m := newModel()
	appendCall := func(n int) {
		t.Helper()
		entries := make([]protocol.Entry, n)
		for i := range entries {
			entries[i] = protocol.Entry{Index: m.lastIndex() + 1 + uint64(i), Term: 1, Type: protocol.EntryRecordBatch,
				Data: testBatch(1, size-protocol.BatchHeaderSize, uint64(i))}
		}
		if err := l.Append(entries); err != nil {
			t.Fatal(err)
		}
		m.append(entries...)
	}
	for range 10 {
		appendCall(perCall)
	}
	if l.SegmentCount() < 3 {
		t.Fatalf("%d segments, want at least 3", l.SegmentCount())
	}
	for _, s := range l.segments {
		if (s.header.firstIndex-1)%perCall != 0 {
			t.Fatalf("segment starts at index %d, inside an Append call of %d entries", s.header.firstIndex, perCall)
		}
	}
	before := l.SegmentCount()
	appendCall(40) // about 40 KiB: larger than a segment
	if l.SegmentCount() < before+2 {
		t.Fatalf("an Append larger than a segment made %d new segments, want at least 2", l.SegmentCount()-before)
	}
	if _, err := l.Sync(); err != nil {
		t.Fatal(err)
	}
	for _, s := range l.segments {
		if s.end > opts.SegmentMaxBytes && s.lastIndex > s.header.firstIndex {
			t.Fatalf("segment from %d holds %d bytes, more than %d", s.header.firstIndex, s.end, opts.SegmentMaxBytes)
		}
	}
	checkAgainst(t, l, m)
}
