package segmentlog

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
	"github.com/raftmq/raftmq/protocol"
)

// checkRecovered opens fs and checks that the recovered log is a prefix of
// one of the allowed models (with the same first index), holds at least
// every index up to durable, and reads back byte-identical.
func checkRecovered(t *testing.T, fs vfs.FS, opts Options, durable uint64, allowed ...*model) {
	t.Helper()
	l, err := Open(fs, "log", opts)
	if err != nil {
		t.Fatalf("recovery failed: %v", err)
	}
	defer l.Close()
	last := l.LastIndex()
	if last < durable {
		t.Fatalf("recovered last index %d is below the durable index %d", last, durable)
	}
	var errs []error
	for _, m := range allowed {
		if last > m.lastIndex() || l.FirstIndex() != m.firstIndex {
			errs = append(errs, fmt.Errorf("recovered [%d, %d], model [%d, %d]", l.FirstIndex(), last, m.firstIndex, m.lastIndex()))
			continue
		}
		p := m.clone()
		p.truncateAfter(last)
		err := compare(l, p)
		if err == nil {
			return
		}
		errs = append(errs, err)
	}
	t.Fatalf("recovered log matches no allowed state: %v", errors.Join(errs...))
}

// TestCrashRecoveryRandomWorkloads crashes (CrashClone, with a random share
// of the unsynced writes surviving) at random points of seeded workloads of
// appends, syncs, rolls and truncations.
func TestCrashRecoveryRandomWorkloads(t *testing.T) {
	seeds := uint64(60)
	if testing.Short() {
		seeds = 15
	}
	for seed := range seeds {
		r := rand.New(rand.NewPCG(seed, 2))
		mem := vfs.NewCrashableMem()
		opts := smallOptions()
		l := mustOpen(t, mem, opts)
		m := newModel()
		term, durable := uint64(1), uint64(0)
		for step := 0; step < 200; step++ {
			switch op := r.IntN(10); {
			case op < 6:
				var batch []protocol.Entry
				for range 1 + r.IntN(6) {
					batch = append(batch, randomEntry(r, m.lastIndex()+1+uint64(len(batch)), term, 1500))
				}
				if err := l.Append(batch); err != nil {
					t.Fatalf("seed %d: append: %v", seed, err)
				}
				m.append(batch...)
			case op < 8:
				d, err := l.Sync()
				if err != nil {
					t.Fatalf("seed %d: sync: %v", seed, err)
				}
				durable = d
			case op < 9:
				if len(m.entries) > 0 {
					cut := uint64(r.IntN(len(m.entries) + 1))
					if err := l.TruncateAfter(cut); err != nil {
						t.Fatalf("seed %d: truncate: %v", seed, err)
					}
					m.truncateAfter(cut)
					durable = min(durable, cut)
					term++
				}
			default:
				cfg := vfs.CrashCloneCfg{UnsyncedDataPercent: r.IntN(101), RNG: rand.New(rand.NewPCG(seed, uint64(step)))}
				crashed := mem.CrashClone(cfg)
				checkRecovered(t, crashed, opts, durable, m)
			}
		}
		checkRecovered(t, mem.CrashClone(vfs.CrashCloneCfg{}), opts, durable, m)
		l.Close()
	}
}

// errorWorkload drives a log through appends (with rolls), syncs, reads,
// truncations, a deletion and a reopen, stopping at the first error. It
// returns that error, the models before and after the failed call, and the
// durable index known before it.
func errorWorkload(fs vfs.FS, opts Options) (err error, before, after *model, durable uint64, failedWrite bool) {
	r := rand.New(rand.NewPCG(42, 42))
	m := newModel()
	l, err := Open(fs, "log", opts)
	if err != nil {
		return err, m, m, 0, true
	}
	defer func() {
		if l != nil {
			l.Close()
		}
	}()
	term := uint64(1)
	for step := 0; step < 80; step++ {
		before = m.clone()
		switch {
		case step%10 == 9:
			cut := m.lastIndex() - uint64(r.IntN(4))
			m.truncateAfter(cut)
			if err := l.TruncateAfter(cut); err != nil {
				return err, before, m, min(durable, cut), true
			}
			durable = min(durable, cut)
			term++
		case step%4 == 3:
			d, err := l.Sync()
			if err != nil {
				return err, before, m, durable, true
			}
			durable = d
		case step == 20 || step == 50:
			if err := l.Close(); err != nil {
				return err, before, m, durable, true
			}
			l = nil
			if l, err = Open(fs, "log", opts); err != nil {
				return err, before, m, durable, true
			}
			durable = l.DurableIndex()
		case step%7 == 6:
			lo := m.firstIndex + uint64(r.IntN(len(m.entries)))
			got, err := l.Entries(lo, m.lastIndex()+1, 1<<30)
			if err != nil {
				return err, before, m, durable, false
			}
			for i, e := range got {
				if !entryEqual(e, m.entries[int(lo-m.firstIndex)+i]) {
					panic("wrong bytes read")
				}
			}
		default:
			var batch []protocol.Entry
			for range 3 {
				batch = append(batch, randomEntry(r, m.lastIndex()+1+uint64(len(batch)), term, 1200))
			}
			m.append(batch...)
			if err := l.Append(batch); err != nil {
				return err, before, m, durable, true
			}
		}
	}
	if err := l.Close(); err != nil {
		l = nil
		return err, m, m, durable, true
	}
	l = nil
	return nil, m, m, durable, false
}

// TestErrorInjectionEachOperation fails the 1st, 2nd, 3rd ... file
// operation in turn. Every injected error must reach the caller; after a
// failed write or sync the log must stay failed and report nothing more
// durable; the files must reopen to a consistent log, both as written and
// after a crash that loses unsynced data.
func TestErrorInjectionEachOperation(t *testing.T) {
	errorInjection(t, smallOptions())
}

// errorInjection runs errorWorkload with opts, failing each file
// operation in turn, and checks the error and the recovered log.
func errorInjection(t *testing.T, opts Options) {
	for n := int64(1); ; n++ {
		mem := vfs.NewCrashableMem()
		// Count atomically: nothing may assume every file operation
		// runs on the test's goroutine.
		var count atomic.Int64
		var injectedOp atomic.Pointer[errorfs.Op]
		inj := errorfs.InjectorFunc(func(op errorfs.Op) error {
			if op.Kind == errorfs.OpFileClose {
				return nil // close errors of read handles are not reported
			}
			if count.Add(1) == n {
				injectedOp.Store(&op)
				return errInjected
			}
			return nil
		})
		fs := errorfs.Wrap(mem, inj)
		err, before, after, durable, _ := errorWorkload(fs, opts)
		injected := injectedOp.Load()
		if injected == nil {
			if err != nil {
				t.Fatalf("no injection, workload failed: %v", err)
			}
			if n < 50 {
				t.Fatalf("workload ran only %d operations", n)
			}
			t.Logf("injected an error at each of %d operations", n-1)
			return
		}
		if !errors.Is(err, errInjected) {
			t.Fatalf("op %d (%v %s): injected error did not reach the caller: %v", n, injected.Kind, injected.Path, err)
		}
		checkRecovered(t, mem.CrashClone(vfs.CrashCloneCfg{}), opts, durable, before, after)
		checkRecovered(t, mem, opts, durable, before, after)
	}
}

// TestFailedSyncIsSticky checks that after a failed fdatasync the log never
// reports the entries durable, and that Append fails too.
func TestFailedSyncIsSticky(t *testing.T) {
	mem := vfs.NewCrashableMem()
	var failSyncs atomic.Bool
	inj := errorfs.InjectorFunc(func(op errorfs.Op) error {
		if failSyncs.Load() && op.Kind == errorfs.OpFileSyncData {
			return errInjected
		}
		return nil
	})
	l := mustOpen(t, errorfs.Wrap(mem, inj), smallOptions())
	defer l.Close()
	r := rand.New(rand.NewPCG(1, 1))
	if err := l.Append([]protocol.Entry{randomEntry(r, 1, 1, 100)}); err != nil {
		t.Fatal(err)
	}
	if d, err := l.Sync(); err != nil || d != 1 {
		t.Fatalf("sync = %d, %v", d, err)
	}
	if err := l.Append([]protocol.Entry{randomEntry(r, 2, 1, 100)}); err != nil {
		t.Fatal(err)
	}
	failSyncs.Store(true)
	if _, err := l.Sync(); !errors.Is(err, errInjected) {
		t.Fatalf("failed sync returned %v", err)
	}
	failSyncs.Store(false)
	if _, err := l.Sync(); !errors.Is(err, errInjected) {
		t.Fatalf("sync after a failed sync returned %v", err)
	}
	if err := l.Append([]protocol.Entry{randomEntry(r, 3, 1, 100)}); !errors.Is(err, errInjected) {
		t.Fatalf("append after a failed sync returned %v", err)
	}
	if d := l.DurableIndex(); d != 1 {
		t.Fatalf("durable index %d after a failed sync", d)
	}
}

var errInjected = errors.New("injected error")
