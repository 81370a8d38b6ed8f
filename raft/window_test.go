package raft

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/raftmq/raftmq/protocol"
	"github.com/raftmq/raftmq/segmentlog"
)

// testRecordBatch is a sealed record batch of records records and size
// bytes, its base offset 0 (as a proposer leaves it).
func testRecordBatch(records uint32, size int, fill byte) []byte {
	b := bytes.Repeat([]byte{fill}, max(size, protocol.BatchHeaderSize))
	protocol.PutBatchHeader(b, &protocol.BatchHeader{Magic: protocol.BatchMagic, RecordCount: records, AppendTime: 1700000000000})
	protocol.SealBatch(b)
	return b
}

// checkWindowMatchesLog compares everything the window serves with what
// the log holds: terms of [FirstIndex-1, LastIndex] and entries of random
// ranges, byte for byte (stamped base offsets included).
func checkWindowMatchesLog(t *testing.T, step int, w *entryWindow, log LogStorage, rng *rand.Rand, served *[]servedRead) {
	t.Helper()
	// What the window served before stays valid and unmodified.
	for _, r := range *served {
		for i := range r.got {
			if r.got[i].Index != r.want[i].Index || r.got[i].Term != r.want[i].Term || !bytes.Equal(r.got[i].Data, r.want[i].Data) {
				t.Fatalf("step %d: an entry served at step %d changed: index %d term %d, was index %d term %d",
					step, r.step, r.got[i].Index, r.got[i].Term, r.want[i].Index, r.want[i].Term)
			}
		}
	}
	first, last := log.FirstIndex(), log.LastIndex()
	if w.FirstIndex() != first || w.LastIndex() != last {
		t.Fatalf("step %d: window [%d, %d], log [%d, %d]", step, w.FirstIndex(), w.LastIndex(), first, last)
	}
	for index := first - 1; index <= last; index++ {
		got, err1 := w.Term(index)
		want, err2 := log.Term(index)
		if got != want || (err1 == nil) != (err2 == nil) {
			t.Fatalf("step %d: Term(%d) = %d, %v from the window, %d, %v from the log (window holds [%d, %d))",
				step, index, got, err1, want, err2, w.start, w.end)
		}
	}
	if first > last {
		return
	}
	for range 8 {
		lo := first + rng.Uint64N(last-first+1)
		hi := lo + 1 + rng.Uint64N(last-lo+1)
		maxBytes := rng.Uint64N(4 << 10)
		got, err := w.Entries(lo, hi, maxBytes)
		if err != nil {
			t.Fatalf("step %d: window Entries(%d, %d): %v", step, lo, hi, err)
		}
		want, err := log.Entries(lo, hi, maxBytes)
		if err != nil {
			t.Fatalf("step %d: log Entries(%d, %d): %v", step, lo, hi, err)
		}
		// The window may stop early (at the end of a run, or where it
		// starts): what it returns is a non-empty prefix of the log's.
		if len(got) == 0 || len(got) > len(want) {
			t.Fatalf("step %d: Entries(%d, %d, %d): %d entries from the window, %d from the log", step, lo, hi, maxBytes, len(got), len(want))
		}
		for i := range got {
			g, e := got[i], want[i]
			if g.Index != e.Index || g.Term != e.Term || g.Type != e.Type || !bytes.Equal(g.Data, e.Data) {
				t.Fatalf("step %d: entry %d: window serves (t%d, type %d, %d bytes), the log holds (t%d, type %d, %d bytes)",
					step, e.Index, g.Term, g.Type, len(g.Data), e.Term, e.Type, len(e.Data))
			}
		}
		if len(*served) < 64 {
			*served = append(*served, servedRead{step: step, got: got, want: want})
		}
	}
}

// servedRead is what Entries returned at a step and what the log held.
type servedRead struct {
	step      int
	got, want []protocol.Entry
}

// TestEntryWindowServesWhatTheLogHolds drives a window over segmentlog
// through appends (record batches, which the log stamps with offsets, and
// other entries), conflict truncations with new terms, overflow, release,
// and the two writes that bypass the window (prefix deletion and a reset
// after a snapshot install), and checks after every step that the window
// never serves an entry the log does not hold at that index with that term.
func TestEntryWindowServesWhatTheLogHolds(t *testing.T) {
	for seed := uint64(1); seed <= 6; seed++ {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 7))
			opts := segmentlog.DefaultOptions()
			opts.SegmentMaxBytes = 4 << 10 // small segments, so DeleteBefore deletes some
			seg, err := segmentlog.Open(vfs.NewMem(), "log", opts)
			if err != nil {
				t.Fatal(err)
			}
			defer seg.Close()
			w := newEntryWindow(seg, 1<<10<<(seed%3))
			term := uint64(1)
			var served []servedRead
			for step := range 400 {
				switch op := rng.IntN(20); {
				case op < 12: // append, sometimes replacing a suffix at a new term
					next := w.LastIndex() + 1
					if op < 3 && w.LastIndex() >= w.FirstIndex() {
						term++
						next = w.FirstIndex() + rng.Uint64N(w.LastIndex()-w.FirstIndex()+1)
						if err := w.TruncateAfter(next - 1); err != nil {
							t.Fatal(err)
						}
					}
					ents := make([]protocol.Entry, 1+rng.IntN(6))
					for i := range ents {
						ents[i] = protocol.Entry{Index: next + uint64(i), Term: term, Type: protocol.EntryControl,
							Data: bytes.Repeat([]byte{byte(step)}, rng.IntN(300))}
						if rng.IntN(2) == 0 {
							ents[i].Type = protocol.EntryRecordBatch
							ents[i].Data = testRecordBatch(1+uint32(rng.IntN(5)), protocol.BatchHeaderSize+rng.IntN(400), byte(step))
						}
					}
					// Half the appends are this replica's own proposals,
					// whose batches the window stamps in place; the
					// others alias a message and must stay as they are.
					proposed := rng.IntN(2) == 0
					if proposed {
						w.own(ents)
					}
					if err := w.Append(ents); err != nil {
						t.Fatal(err)
					}
					if len(w.owned) != 0 {
						t.Fatalf("step %d: the window still lists %d owned batches after appending them", step, len(w.owned))
					}
					logged, err := seg.Entries(ents[0].Index, ents[len(ents)-1].Index+1, 1<<30)
					if err != nil || len(logged) != len(ents) {
						t.Fatalf("step %d: log Entries: %d, %v", step, len(logged), err)
					}
					for i := range ents {
						if ents[i].Type != protocol.EntryRecordBatch {
							continue
						}
						h, _ := protocol.ReadBatchHeader(ents[i].Data)
						if !proposed && h.BaseOffset != 0 {
							t.Fatalf("step %d: the window stamped a batch it does not own", step)
						}
						if proposed && !bytes.Equal(ents[i].Data, logged[i].Data) {
							t.Fatalf("step %d: an owned batch at %d differs from what the log holds (base offset %d)", step, ents[i].Index, h.BaseOffset)
						}
					}
				case op < 14: // the driver releases what is applied everywhere
					if last := w.LastIndex(); last > 0 {
						w.release(rng.Uint64N(last+1), rng.Uint64N(last+1))
					}
				case op < 16: // compaction deletes a prefix behind the window's back
					if last := w.LastIndex(); last > 0 {
						if _, err := seg.DeleteBefore(rng.Uint64N(last + 1)); err != nil {
							t.Fatal(err)
						}
					}
				case op < 17: // a snapshot install resets the log behind the window's back
					last := w.LastIndex()
					nextIndex := max(w.FirstIndex(), last+1-min(last, rng.Uint64N(8))) + rng.Uint64N(3)
					term++
					if err := seg.ResetOffsets(nextIndex, term, seg.NextOffset()+rng.Uint64N(10)); err != nil {
						t.Fatal(err)
					}
				default: // the log becomes durable; nothing changes for the window
					if _, err := w.Sync(); err != nil {
						t.Fatal(err)
					}
				}
				checkWindowMatchesLog(t, step, w, seg, rng, &served)
			}
			if w.hits == 0 {
				t.Fatalf("the window served no read (%d from the log)", w.misses)
			}
		})
	}
}

// TestEntryWindowReleaseFreesIdleGroups: once every entry is released the
// window holds nothing, so an idle group keeps no entry data alive.
func TestEntryWindowReleaseFreesIdleGroups(t *testing.T) {
	log := newMemLog()
	w := newEntryWindow(log, 1<<20)
	ents := []protocol.Entry{{Index: 1, Term: 1, Data: make([]byte, 100)}, {Index: 2, Term: 1, Data: make([]byte, 100)}}
	if err := w.Append(ents); err != nil {
		t.Fatal(err)
	}
	if w.bytes != 200 || w.end-w.start != 2 {
		t.Fatalf("window holds [%d, %d), %d bytes; want [1, 3), 200", w.start, w.end, w.bytes)
	}
	w.release(2, 1) // applied 2, acknowledged 1
	if w.bytes != 100 || w.start != 2 {
		t.Fatalf("after release(2, 1): start %d, %d bytes; want 2, 100", w.start, w.bytes)
	}
	w.release(2, 2)
	if w.bytes != 0 || len(w.runs) != 0 {
		t.Fatalf("after release(2, 2): %d runs, %d bytes; want none", len(w.runs), w.bytes)
	}
	if got, err := w.Entries(1, 3, 1<<20); err != nil || len(got) != 2 {
		t.Fatalf("Entries from the log: %d entries, %v", len(got), err)
	}
}

// forgetfulWindow is a broken entry window: it keeps the first entry it
// saw at each index and never replaces it, so after a conflict truncation
// it serves the overwritten entry.
type forgetfulWindow struct {
	LogStorage
	kept map[uint64]protocol.Entry
}

func (w *forgetfulWindow) Append(ents []protocol.Entry) error {
	if err := w.LogStorage.Append(ents); err != nil {
		return err
	}
	for _, e := range ents {
		if _, ok := w.kept[e.Index]; !ok {
			w.kept[e.Index] = e
		}
	}
	return nil
}

func (w *forgetfulWindow) Term(index uint64) (uint64, error) {
	if e, ok := w.kept[index]; ok && index >= w.FirstIndex() && index <= w.LastIndex() {
		return e.Term, nil
	}
	return w.LogStorage.Term(index)
}

func (w *forgetfulWindow) Entries(lo, hi, maxBytes uint64) ([]protocol.Entry, error) {
	ents, err := w.LogStorage.Entries(lo, hi, maxBytes)
	if err != nil {
		return nil, err
	}
	out := make([]protocol.Entry, len(ents))
	for i, e := range ents {
		if k, ok := w.kept[e.Index]; ok {
			e = k
		}
		out[i] = e
	}
	return out, nil
}

// TestSimulationCatchesStaleWindow shows the simulation's checks bite on
// an entry window that serves an entry the log no longer holds (one that
// a conflict truncation replaced): the simulation reports a violation,
// while the real window passes the same seeds.
func TestSimulationCatchesStaleWindow(t *testing.T) {
	cfg := crashHeavyConfig(3)
	cfg.memLogOnly = true
	cfg.newWindow = func(log LogStorage, _ uint64) LogStorage {
		return &forgetfulWindow{LogStorage: log, kept: map[uint64]protocol.Entry{}}
	}
	seed, v := findViolation(cfg, 60, "")
	if v == nil {
		t.Fatal("a window serving overwritten entries: no violation within 60 seeds")
	}
	t.Logf("seed %d: %v", seed, v)
	cfg.newWindow = nil
	if seed, v := findViolation(cfg, 5, ""); v != nil {
		t.Fatalf("control run with the real window: seed %d: %v", seed, v)
	}
}

// TestEntryWindowFullKeepsOldest: a full window keeps its oldest entries
// (read next by the state machine and followers), takes no more until
// release empties it, and reads past it come from the log.
func TestEntryWindowFullKeepsOldest(t *testing.T) {
	log := newMemLog()
	w := newEntryWindow(log, 300)
	appendN := func(first uint64, n int) {
		t.Helper()
		ents := make([]protocol.Entry, n)
		for i := range ents {
			ents[i] = protocol.Entry{Index: first + uint64(i), Term: 1, Data: make([]byte, 100)}
		}
		if err := w.Append(ents); err != nil {
			t.Fatal(err)
		}
	}
	appendN(1, 5)
	if w.start != 1 || w.end != 4 || !w.full {
		t.Fatalf("window holds [%d, %d) full=%v; want [1, 4) full", w.start, w.end, w.full)
	}
	appendN(6, 2)
	if w.end != 4 {
		t.Fatalf("a full window took entries: it holds [%d, %d)", w.start, w.end)
	}
	got, err := w.Entries(2, 8, 1<<20)
	if err != nil || len(got) != 6 || got[0].Index != 2 || got[5].Index != 7 {
		t.Fatalf("Entries(2, 8) across the window's end: %d entries, %v; want 6", len(got), err)
	}
	if got, _ := w.Entries(2, 8, 250); len(got) != 2 {
		t.Fatalf("Entries(2, 8, 250 bytes): %d entries, want 2", len(got))
	}
	w.release(2, 1) // a follower lags: a full window still releases what is applied
	if w.start != 3 {
		t.Fatalf("after release(2, 1) of a full window: starts at %d, want 3", w.start)
	}
	w.release(3, 1)
	if len(w.runs) != 0 {
		t.Fatalf("after everything in it was applied the window holds [%d, %d)", w.start, w.end)
	}
	appendN(8, 1)
	if w.start != 8 || w.end != 9 || w.full {
		t.Fatalf("an emptied window did not start over: [%d, %d) full=%v", w.start, w.end, w.full)
	}
	if err := w.TruncateAfter(7); err != nil || len(w.runs) != 0 {
		t.Fatalf("TruncateAfter(7): %v, window holds [%d, %d)", err, w.start, w.end)
	}
}

// TestEntryWindowStampsOwnedBatchesInPlace: the record batches a replica
// proposed (own) get their base offsets stamped into their own bytes, and
// the window keeps those very bytes (no copy); a batch at an owned index
// whose bytes are another buffer (a follower's entry from a message) is
// copied and left unchanged; a batch that already carries its offset (as a
// follower receives the leader's stamped batch) is kept without a copy.
func TestEntryWindowStampsOwnedBatchesInPlace(t *testing.T) {
	seg, err := segmentlog.Open(vfs.NewMem(), "log", segmentlog.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	defer seg.Close()
	w := newEntryWindow(seg, 1<<20)
	proposed := []protocol.Entry{
		{Index: 1, Term: 1, Type: protocol.EntryRecordBatch, Data: testRecordBatch(3, 100, 1)},
		{Index: 2, Term: 1, Type: protocol.EntryControl, Data: []byte("control")},
		{Index: 3, Term: 1, Type: protocol.EntryRecordBatch, Data: testRecordBatch(5, 100, 2)},
	}
	w.own(proposed)
	if err := w.Append(proposed); err != nil {
		t.Fatal(err)
	}
	for i, want := range map[int]uint64{0: 0, 2: 3} {
		if h, _ := protocol.ReadBatchHeader(proposed[i].Data); h.BaseOffset != want {
			t.Fatalf("owned batch at index %d: base offset %d, want %d", proposed[i].Index, h.BaseOffset, want)
		}
	}
	got, err := w.Entries(1, 4, 1<<20)
	if err != nil || len(got) != 3 {
		t.Fatalf("Entries(1, 4): %d entries, %v", len(got), err)
	}
	if &got[2].Data[0] != &proposed[2].Data[0] {
		t.Fatal("the window copied a batch it owns")
	}

	// A batch this replica proposed at index 4, replaced before it was
	// appended by a leader's batch from a message (another buffer).
	mine := protocol.Entry{Index: 4, Term: 1, Type: protocol.EntryRecordBatch, Data: testRecordBatch(2, 100, 3)}
	w.own([]protocol.Entry{mine})
	received := []protocol.Entry{
		{Index: 4, Term: 2, Type: protocol.EntryRecordBatch, Data: testRecordBatch(4, 100, 4)},
		{Index: 5, Term: 2, Type: protocol.EntryRecordBatch, Data: testRecordBatch(1, 100, 5)},
	}
	protocol.StampBatch(received[1].Data, 12, 1700000000000) // stamped by its leader already
	before := bytes.Clone(received[0].Data)
	if err := w.Append(received); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(received[0].Data, before) {
		t.Fatal("the window stamped a received batch in place")
	}
	if h, _ := protocol.ReadBatchHeader(mine.Data); h.BaseOffset != 0 {
		t.Fatalf("a batch never appended was stamped (base offset %d)", h.BaseOffset)
	}
	got, err = w.Entries(4, 6, 1<<20)
	if err != nil || len(got) != 2 {
		t.Fatalf("Entries(4, 6): %d entries, %v", len(got), err)
	}
	if h, _ := protocol.ReadBatchHeader(got[0].Data); h.BaseOffset != 8 || &got[0].Data[0] == &received[0].Data[0] {
		t.Fatalf("received batch at 4: served base offset %d (want 8, from a copy)", h.BaseOffset)
	}
	if &got[1].Data[0] != &received[1].Data[0] {
		t.Fatal("the window copied a received batch that carried its offset already")
	}
	if len(w.owned) != 0 {
		t.Fatalf("%d owned batches listed after the append passed them", len(w.owned))
	}
}
