package segmentlog

import (
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
	"github.com/raftmq/raftmq/protocol"
)

// With smallOptions (2 KiB append chunks), two frames of this many bytes of
// payload fill a chunk: appending a third hands the first two to the
// background flusher.
const twoPerChunk = 900

func batchEntry(index, term uint64, payload int) protocol.Entry {
	return protocol.Entry{Index: index, Term: term, Type: protocol.EntryRecordBatch,
		Data: testBatch(2, payload-protocol.BatchHeaderSize, index)}
}

// flusherBusy reports whether a handed-off write is in flight.
func flusherBusy(l *Log) bool {
	l.flusher.mu.Lock()
	defer l.flusher.mu.Unlock()
	return l.flusher.busy
}

// failWrites is an injector that fails every positional write (the
// frames; segment headers and index files use Write) while armed.
type failWrites struct {
	armed  atomic.Bool
	failed atomic.Int64
}

func (f *failWrites) MaybeError(op errorfs.Op) error {
	if f.armed.Load() && op.Kind == errorfs.OpFileWriteAt {
		f.failed.Add(1)
		return errInjected
	}
	return nil
}

// TestBackgroundWriteErrorSurfacesOnAppend: a failed background write is
// reported by the next Append that hands off a chunk (it waits for the
// write), then by every later call, and nothing it held becomes durable.
func TestBackgroundWriteErrorSurfacesOnAppend(t *testing.T) {
	mem := vfs.NewCrashableMem()
	inj := &failWrites{}
	opts := smallOptions()
	l := mustOpen(t, errorfs.Wrap(mem, inj), opts)
	defer l.Close()
	m := newModel()
	e1 := batchEntry(1, 1, twoPerChunk)
	if err := l.Append([]protocol.Entry{e1}); err != nil {
		t.Fatal(err)
	}
	m.append(e1)
	if d, err := l.Sync(); err != nil || d != 1 {
		t.Fatalf("sync = %d, %v", d, err)
	}
	inj.armed.Store(true)
	// Entry 1 was written by Sync; 2 fits beside it, 3 hands the chunk's
	// unwritten frame (2) to the flusher, whose write fails. The call does
	// not wait for that write, so it succeeds.
	batch := []protocol.Entry{batchEntry(2, 1, twoPerChunk), batchEntry(3, 1, twoPerChunk)}
	if err := l.Append(batch); err != nil {
		t.Fatalf("append that hands off a chunk: %v", err)
	}
	m.append(batch...)
	if !flusherBusy(l) && inj.failed.Load() == 0 {
		t.Fatal("appending entry 3 handed nothing to the flusher")
	}
	// 4 fits beside 3; 5 hands off again, which waits for the failed write.
	err := l.Append([]protocol.Entry{batchEntry(4, 1, twoPerChunk), batchEntry(5, 1, twoPerChunk)})
	if !errors.Is(err, errInjected) {
		t.Fatalf("append after a failed background write returned %v", err)
	}
	if got := inj.failed.Load(); got != 1 {
		t.Fatalf("%d writes failed, want the one background write", got)
	}
	inj.armed.Store(false)
	checkStickyAfterFailedWrite(t, l, 1)
	checkRecovered(t, mem.CrashClone(vfs.CrashCloneCfg{}), opts, 1, m)
}

// TestBackgroundWriteErrorSurfacesOnSync: Sync waits for the write in
// flight and reports its failure instead of syncing.
func TestBackgroundWriteErrorSurfacesOnSync(t *testing.T) {
	mem := vfs.NewCrashableMem()
	inj := &failWrites{}
	opts := smallOptions()
	l := mustOpen(t, errorfs.Wrap(mem, inj), opts)
	defer l.Close()
	m := newModel()
	batch := []protocol.Entry{batchEntry(1, 1, twoPerChunk), batchEntry(2, 1, twoPerChunk)}
	if err := l.Append(batch); err != nil {
		t.Fatal(err)
	}
	m.append(batch...)
	if d, err := l.Sync(); err != nil || d != 2 {
		t.Fatalf("sync = %d, %v", d, err)
	}
	inj.armed.Store(true)
	// The chunk is full: 3 starts a new one, 4 fits, 5 hands off 3 and 4.
	batch = []protocol.Entry{batchEntry(3, 1, twoPerChunk), batchEntry(4, 1, twoPerChunk), batchEntry(5, 1, twoPerChunk)}
	if err := l.Append(batch); err != nil {
		t.Fatalf("append that hands off a chunk: %v", err)
	}
	m.append(batch...)
	if !flusherBusy(l) && inj.failed.Load() == 0 {
		t.Fatal("appending entry 5 handed nothing to the flusher")
	}
	if _, err := l.Sync(); !errors.Is(err, errInjected) {
		t.Fatalf("sync after a failed background write returned %v", err)
	}
	if got := inj.failed.Load(); got != 1 {
		t.Fatalf("%d writes failed, want the one background write", got)
	}
	inj.armed.Store(false)
	checkStickyAfterFailedWrite(t, l, 2)
	checkRecovered(t, mem.CrashClone(vfs.CrashCloneCfg{}), opts, 2, m)
}

// checkStickyAfterFailedWrite checks that every write call keeps failing
// and that the durable index stays at durable.
func checkStickyAfterFailedWrite(t *testing.T, l *Log, durable uint64) {
	t.Helper()
	next := l.LastIndex() + 1
	if err := l.Append([]protocol.Entry{batchEntry(next, 1, 10+protocol.BatchHeaderSize)}); !errors.Is(err, errInjected) {
		t.Fatalf("append returned %v", err)
	}
	if d, err := l.Sync(); !errors.Is(err, errInjected) {
		t.Fatalf("sync returned %d, %v", d, err)
	}
	if err := l.TruncateAfter(durable); !errors.Is(err, errInjected) {
		t.Fatalf("truncate returned %v", err)
	}
	if d := l.DurableIndex(); d != durable {
		t.Fatalf("durable index %d, want %d", d, durable)
	}
}

// gatedWrites is an injector that holds the first positional write after
// it is armed until released.
type gatedWrites struct {
	armed   atomic.Bool
	entered chan struct{}
	release chan struct{}
}

func newGatedWrites() *gatedWrites {
	return &gatedWrites{entered: make(chan struct{}), release: make(chan struct{})}
}

func (g *gatedWrites) MaybeError(op errorfs.Op) error {
	if op.Kind == errorfs.OpFileWriteAt && g.armed.CompareAndSwap(true, false) {
		close(g.entered)
		<-g.release
	}
	return nil
}

// waitFor waits for ch, failing the test after a generous bound.
func waitFor(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(time.Minute):
		t.Fatalf("timed out waiting for %s", what)
	}
}

// TestMaintenanceWithWriteInFlight runs each call that writes, syncs, cuts
// or closes the active file while a background write is held in flight,
// releases the write, and checks the log and what a crash right after
// leaves.
func TestMaintenanceWithWriteInFlight(t *testing.T) {
	type result struct {
		m       *model // the log's content after the call
		durable uint64 // at least this must survive a crash
		l       *Log   // the log to compare (reopened after Close)
	}
	// The calls run on another goroutine than the test: they return errors.
	ops := map[string]func(fs vfs.FS, l *Log, m *model) (result, error){
		"Sync": func(fs vfs.FS, l *Log, m *model) (result, error) {
			d, err := l.Sync()
			if err != nil || d != m.lastIndex() {
				return result{}, fmt.Errorf("sync = %d, %v; want %d", d, err, m.lastIndex())
			}
			return result{m, d, l}, nil
		},
		"TruncateAfter": func(fs vfs.FS, l *Log, m *model) (result, error) {
			cut := m.lastIndex() - 2 // drops entries the held write carries
			if err := l.TruncateAfter(cut); err != nil {
				return result{}, err
			}
			m.truncateAfter(cut)
			return result{m, cut, l}, nil
		},
		"ResetOffsets": func(fs vfs.FS, l *Log, m *model) (result, error) {
			next := m.lastIndex() + 10
			if err := l.ResetOffsets(next, 3, 1000); err != nil {
				return result{}, err
			}
			return result{&model{firstIndex: next, prevTerm: 3, firstOff: 1000}, next - 1, l}, nil
		},
		"roll": func(fs vfs.FS, l *Log, m *model) (result, error) {
			// Eight frames of 1,800 bytes fit in an empty 16 KiB segment,
			// not in what is left of the active one: the call rolls first.
			var batch []protocol.Entry
			for i := range 8 {
				batch = append(batch, batchEntry(m.lastIndex()+1+uint64(i), 1, 1800))
			}
			segments := l.SegmentCount()
			if err := l.Append(batch); err != nil {
				return result{}, err
			}
			if l.SegmentCount() != segments+1 {
				return result{}, fmt.Errorf("append did not roll: %d segments, then %d", segments, l.SegmentCount())
			}
			m.append(batch...)
			d, err := l.Sync()
			if err != nil || d != m.lastIndex() {
				return result{}, fmt.Errorf("sync = %d, %v; want %d", d, err, m.lastIndex())
			}
			return result{m, d, l}, nil
		},
		"Close": func(fs vfs.FS, l *Log, m *model) (result, error) {
			if err := l.Close(); err != nil {
				return result{}, err
			}
			reopened, err := Open(fs, "log", smallOptions())
			if err != nil {
				return result{}, err
			}
			return result{m, m.lastIndex(), reopened}, nil
		},
	}
	for name, op := range ops {
		t.Run(name, func(t *testing.T) {
			mem := vfs.NewCrashableMem()
			gate := newGatedWrites()
			fs := errorfs.Wrap(mem, gate)
			opts := smallOptions()
			l := mustOpen(t, fs, opts)
			defer l.Close()
			m := newModel()
			for i := uint64(1); i <= 5; i++ {
				e := batchEntry(i, 1, twoPerChunk)
				if err := l.Append([]protocol.Entry{e}); err != nil {
					t.Fatal(err)
				}
				m.append(e)
			}
			if _, err := l.Sync(); err != nil {
				t.Fatal(err)
			}
			// Append one entry at a time until one call hands a chunk to
			// the flusher, whose write the gate then holds. (Sync left the
			// flusher idle; waiting again makes sure busy means this one.)
			l.waitFlusher()
			gate.armed.Store(true)
			for !flusherBusy(l) {
				if m.lastIndex() > 20 {
					t.Fatal("no append handed a chunk to the flusher")
				}
				e := batchEntry(m.lastIndex()+1, 1, twoPerChunk)
				if err := l.Append([]protocol.Entry{e}); err != nil {
					t.Fatal(err)
				}
				m.append(e)
			}
			waitFor(t, gate.entered, "the background write")
			type outcome struct {
				res result
				err error
			}
			done := make(chan outcome, 1)
			go func() {
				res, err := op(fs, l, m)
				done <- outcome{res, err}
			}()
			close(gate.release)
			var out outcome
			select {
			case out = <-done:
			case <-time.After(time.Minute):
				t.Fatal("timed out waiting for the call")
			}
			if out.err != nil {
				t.Fatal(out.err)
			}
			res := out.res
			if res.l != l {
				defer res.l.Close()
			}
			checkAgainst(t, res.l, res.m)
			if d := res.l.DurableIndex(); d < res.durable {
				t.Fatalf("durable index %d, want at least %d", d, res.durable)
			}
			checkRecovered(t, mem.CrashClone(vfs.CrashCloneCfg{}), opts, res.durable, res.m)
		})
	}
}

func (f *failWrites) String() string  { return "failWrites" }
func (g *gatedWrites) String() string { return "gatedWrites" }
