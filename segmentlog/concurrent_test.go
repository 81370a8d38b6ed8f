package segmentlog

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/raftmq/raftmq/protocol"
)

// derivedEntry's content is a function of index and term, so a reader can
// check any entry it gets without knowing the writer's history.
func derivedEntry(index, term uint64) protocol.Entry {
	seed := index*7919 + term
	size := int(seed % 700)
	if index%3 == 0 {
		data := make([]byte, size)
		r := rand.New(rand.NewPCG(seed, 0))
		for i := range data {
			data[i] = byte(r.Uint32())
		}
		return protocol.Entry{Index: index, Term: term, Type: protocol.EntryControl, Data: data}
	}
	return protocol.Entry{Index: index, Term: term, Type: protocol.EntryRecordBatch, Data: testBatch(uint32(1+index%4), size, seed)}
}

func checkDerived(e protocol.Entry) error {
	want := derivedEntry(e.Index, e.Term)
	if e.Type != want.Type {
		return errors.New("wrong entry type")
	}
	if e.Type == protocol.EntryControl {
		if !bytes.Equal(e.Data, want.Data) {
			return errors.New("control entry bytes differ")
		}
		return nil
	}
	if _, err := protocol.VerifyBatch(e.Data); err != nil {
		return err
	}
	if !bytes.Equal(e.Data[protocol.BatchHeaderSize:], want.Data[protocol.BatchHeaderSize:]) {
		return errors.New("batch records differ")
	}
	return nil
}

// TestConcurrentReadersWithAppendsAndTruncations runs readers of every
// kind against a writer that appends, rolls, truncates and syncs, and a
// second goroutine calling Sync. Run it with -race.
func TestConcurrentReadersWithAppendsAndTruncations(t *testing.T) {
	opts := smallOptions()
	opts.TailCacheBytes = 8 << 10
	concurrentWorkload(t, opts, 1500, func(*rand.Rand) int { return 2 })
}

// concurrentWorkload runs readConcurrently on four goroutines and Sync on
// a fifth while the writer takes steps: appends calls of perCall entries,
// truncates, deletes segments and rolls.
func concurrentWorkload(t *testing.T, opts Options, steps int, perCall func(*rand.Rand) int) {
	l := mustOpen(t, vfs.NewMem(), opts)
	defer l.Close()
	runConcurrentWorkload(t, l, steps, perCall)
}

// runConcurrentWorkload is concurrentWorkload on the log l.
func runConcurrentWorkload(t *testing.T, l *Log, steps int, perCall func(*rand.Rand) int) {
	var done atomic.Bool
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	report := func(err error) {
		select {
		case errs <- err:
		default:
		}
	}
	for reader := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			readConcurrently(l, reader, &done, report)
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for !done.Load() {
			if _, err := l.Sync(); err != nil {
				report(err)
				return
			}
		}
	}()
	r := rand.New(rand.NewPCG(3, 3))
	term := uint64(1)
	for step := 0; step < steps; step++ {
		last := l.LastIndex()
		if step%50 == 49 && last > 10 {
			cut := last - uint64(r.IntN(10))
			if err := l.TruncateAfter(cut); err != nil {
				t.Fatal(err)
			}
			term++
			continue
		}
		if step%300 == 299 {
			if _, err := l.DeleteBefore(l.LastIndex() - 100); err != nil {
				t.Fatal(err)
			}
		}
		var call []protocol.Entry
		for i := range perCall(r) {
			call = append(call, derivedEntry(last+1+uint64(i), term))
		}
		if err := l.Append(call); err != nil {
			t.Fatal(err)
		}
	}
	done.Store(true)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if l.SegmentCount() < 3 {
		t.Fatalf("the workload should roll segments; have %d", l.SegmentCount())
	}
}

// readConcurrently reads l as a consumer and a follower would until done
// is set, checking what it reads against derivedEntry, and reports the
// first error.
func readConcurrently(l *Log, reader int, done *atomic.Bool, report func(error)) {
	r := rand.New(rand.NewPCG(uint64(reader), 4))
	for !done.Load() {
		first, last := l.FirstIndex(), l.LastIndex()
		if last < first {
			continue
		}
		lo := first + uint64(r.IntN(int(last-first+1)))
		entries, err := l.Entries(lo, last+1, uint64(r.IntN(8<<10)))
		if err != nil && !errors.Is(err, ErrOutOfRange) {
			report(err)
			return
		}
		for i, e := range entries {
			if e.Index != lo+uint64(i) {
				report(errors.New("entries not dense"))
				return
			}
			if err := checkDerived(e); err != nil {
				report(err)
				return
			}
		}
		if term, err := l.Term(lo); err == nil && len(entries) > 0 && term != entries[0].Term && l.LastIndex() >= lo {
			// A truncation may have replaced lo between the two reads;
			// only a term that no writer could produce is an error.
			if term == 0 {
				report(errors.New("zero term"))
				return
			}
		}
		out, _, err := l.ReadBatches(nil, l.FirstOffset(), l.LastIndex(), 4<<10)
		if err != nil && !errors.Is(err, ErrOutOfRange) {
			report(err)
			return
		}
		for len(out) > 0 {
			h, err := protocol.ReadBatchHeader(out)
			if err != nil || int(h.Length) > len(out) {
				report(errors.New("ReadBatches returned a torn batch"))
				return
			}
			if _, err := protocol.VerifyBatch(out[:h.Length]); err != nil {
				report(err)
				return
			}
			out = out[h.Length:]
		}
	}
}

// TestDeleteBeforeConcurrentWithAppends runs retention (DeleteBefore) on
// its own goroutine while the writer appends, rolls and syncs, as the
// broker does. Run it with -race: the writer reads the active segment
// without the lock while DeleteBefore replaces the segment list.
func TestDeleteBeforeConcurrentWithAppends(t *testing.T) {
	l := mustOpen(t, vfs.NewMem(), smallOptions())
	defer l.Close()
	var done atomic.Bool
	var deleted atomic.Int64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for !done.Load() {
			n, err := l.DeleteBefore(l.DurableIndex() / 2)
			if err != nil {
				t.Errorf("DeleteBefore: %v", err)
				return
			}
			deleted.Add(int64(n))
		}
	}()
	for index := uint64(1); index <= 3000; index++ {
		if err := l.Append([]protocol.Entry{derivedEntry(index, 1)}); err != nil {
			t.Fatal(err)
		}
		if index%50 == 0 {
			if _, err := l.Sync(); err != nil {
				t.Fatal(err)
			}
		}
	}
	done.Store(true)
	wg.Wait()
	if deleted.Load() == 0 {
		t.Fatal("the workload should have deleted segments")
	}
	first := l.FirstIndex()
	if first <= 1 {
		t.Fatalf("first index %d: nothing was deleted", first)
	}
	entries, err := l.Entries(first, l.LastIndex()+1, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	if got := uint64(len(entries)); got != l.LastIndex()-first+1 {
		t.Fatalf("read %d entries from %d to %d", got, first, l.LastIndex())
	}
	for _, e := range entries {
		if err := checkDerived(e); err != nil {
			t.Fatalf("entry %d: %v", e.Index, err)
		}
	}
}
