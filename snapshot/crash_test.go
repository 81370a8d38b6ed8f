package snapshot

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
)

// crashPoints runs operation on a store over a wrapper of a fresh crashable
// file system that holds the old snapshot, and returns a crash image of the
// file system taken before every file-system operation of operation and
// one after it returned. Each image keeps a seeded random share of the
// unsynced writes.
func crashPoints(t *testing.T, seed uint64, oldMeta Meta, oldBody []byte, operation func(s *Store) error) (images []*vfs.MemFS) {
	t.Helper()
	mem := vfs.NewCrashableMem()
	writeSnapshot(t, mustOpenStore(t, mem), oldMeta, oldBody)
	r := rand.New(rand.NewPCG(seed, 11))
	crash := func() *vfs.MemFS {
		return mem.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: r.IntN(101), RNG: rand.New(rand.NewPCG(r.Uint64(), 1))})
	}
	var armed atomic.Bool
	fs := errorfs.Wrap(mem, errorfs.InjectorFunc(func(errorfs.Op) error {
		if armed.Load() {
			images = append(images, crash())
		}
		return nil
	}))
	s := mustOpenStore(t, fs)
	armed.Store(true)
	if err := operation(s); err != nil {
		t.Fatalf("seed %d: %v", seed, err)
	}
	armed.Store(false)
	return append(images, crash())
}

// checkCrashImage opens a crash image and checks that the old snapshot is
// usable and the new one is either absent or complete (and present when
// mustHaveNew), and that no temporary file survives.
func checkCrashImage(t *testing.T, fs vfs.FS, oldMeta Meta, oldBody []byte, newMeta Meta, newBody []byte, mustHaveNew bool) (hasNew bool) {
	t.Helper()
	s, err := OpenStore(fs, testDir)
	if err != nil {
		t.Fatalf("open after crash: %v", err)
	}
	if d := s.Damaged(); len(d) > 0 {
		t.Fatalf("damaged after crash: %v", d)
	}
	if tmp := tempFiles(t, fs); len(tmp) > 0 {
		t.Fatalf("temporary files after open: %v", tmp)
	}
	checkSnapshot(t, s, oldMeta, oldBody)
	_, err = s.Get(newMeta.Index)
	switch {
	case err == nil:
		checkSnapshot(t, s, newMeta, newBody)
		return true
	case mustHaveNew:
		t.Fatalf("new snapshot lost after it was reported durable: %v", err)
	case !errors.Is(err, ErrNotFound):
		t.Fatal(err)
	}
	return false
}

func TestCrashDuringWrite(t *testing.T) {
	oldMeta, newMeta := testMeta(10), testMeta(20)
	for seed := range uint64(4) {
		oldBody, newBody := testBody(seed, 30_000), testBody(seed+100, 700_000)
		images := crashPoints(t, seed, oldMeta, oldBody, func(s *Store) error {
			_, err := tryWriteSnapshot(s, newMeta, newBody)
			return err
		})
		sawNew, sawOld := false, false
		for i, image := range images {
			hasNew := checkCrashImage(t, image, oldMeta, oldBody, newMeta, newBody, i == len(images)-1)
			sawNew, sawOld = sawNew || hasNew, sawOld || !hasNew
		}
		if !sawNew || !sawOld || len(images) < 8 {
			t.Fatalf("seed %d: %d crash points, some with the new snapshot %t, some without %t", seed, len(images), sawNew, sawOld)
		}
	}
}

func TestCrashDuringInstall(t *testing.T) {
	oldMeta, newMeta := testMeta(10), testMeta(20)
	for seed := range uint64(4) {
		oldBody, newBody := testBody(seed, 30_000), testBody(seed+100, 200_000)
		src := mustOpenStore(t, vfs.NewMem())
		writeSnapshot(t, src, newMeta, newBody)
		images := crashPoints(t, seed, oldMeta, oldBody, func(dst *Store) error {
			_, err := streamAll(src, dst, newMeta.Index, 16<<10)
			return err
		})
		sawNew := false
		for i, image := range images {
			sawNew = checkCrashImage(t, image, oldMeta, oldBody, newMeta, newBody, i == len(images)-1) || sawNew
		}
		if !sawNew || len(images) < 10 {
			t.Fatalf("seed %d: %d crash points, new snapshot seen %t", seed, len(images), sawNew)
		}
	}
}

func TestCrashDuringPrune(t *testing.T) {
	for seed := range uint64(4) {
		mem := vfs.NewCrashableMem()
		s := mustOpenStore(t, mem)
		for index := uint64(1); index <= 5; index++ {
			writeSnapshot(t, s, testMeta(index), testBody(index, 1000))
		}
		images := crashPoints(t, seed, testMeta(6), testBody(6, 1000), func(s *Store) error {
			_, err := s.Prune(0, 4)
			return err
		})
		for i, image := range images {
			s := mustOpenStore(t, image)
			checkSnapshot(t, s, testMeta(6), testBody(6, 1000))
			if i == len(images)-1 && len(s.List()) != 1 {
				t.Fatalf("seed %d: after prune returned: %v", seed, indexesOf(s.List()))
			}
		}
	}
}

// failNth is an injector failing the n-th operation (1-based) counted while
// armed.
type failNth struct {
	n, count atomic.Int64
	armed    atomic.Bool
	failedOp atomic.Value // string
}

func (f *failNth) String() string { return fmt.Sprintf("fail op %d", f.n.Load()) }

func (f *failNth) MaybeError(op errorfs.Op) error {
	if !f.armed.Load() {
		return nil
	}
	if f.count.Add(1) == f.n.Load() {
		f.failedOp.Store(fmt.Sprintf("%v %s", op.Kind, op.Path))
		return errorfs.ErrInjected
	}
	return nil
}

// testErrorInjection runs operation with the 1st, 2nd, 3rd… file-system
// operation failing in turn, until one run sees no failure. Each run must
// surface the error, keep the old snapshot, and leave the new one complete
// or absent (on a reopen of the same files, without errors).
func testErrorInjection(t *testing.T, newMeta Meta, newBody []byte, operation func(s *Store) error) {
	oldMeta, oldBody := testMeta(10), testBody(1, 20_000)
	for n := int64(1); ; n++ {
		mem := vfs.NewMem()
		writeSnapshot(t, mustOpenStore(t, mem), oldMeta, oldBody)
		inj := &failNth{}
		inj.n.Store(n)
		s := mustOpenStore(t, errorfs.Wrap(mem, inj))
		inj.armed.Store(true)
		err := operation(s)
		inj.armed.Store(false)
		if inj.count.Load() < n {
			if err != nil {
				t.Fatalf("no error injected, yet: %v", err)
			}
			if n < 8 {
				t.Fatalf("only %d operations", n-1)
			}
			t.Logf("%d operations, each failed in turn", n-1)
			return
		}
		failed := inj.failedOp.Load()
		if !errors.Is(err, errorfs.ErrInjected) {
			t.Fatalf("op %d (%v) failed, operation returned %v", n, failed, err)
		}
		if errors.Is(err, ErrCorrupt) {
			t.Fatalf("op %d (%v): an I/O error reported as corruption: %v", n, failed, err)
		}
		if _, err := s.Get(newMeta.Index); err == nil {
			t.Fatalf("op %d (%v) failed, yet the new snapshot is listed", n, failed)
		}
		checkSnapshot(t, s, oldMeta, oldBody)
		checkCrashImage(t, mem, oldMeta, oldBody, newMeta, newBody, false)
	}
}

func TestErrorInjectionDuringWrite(t *testing.T) {
	newMeta, newBody := testMeta(20), testBody(2, 600_000)
	testErrorInjection(t, newMeta, newBody, func(s *Store) error {
		_, err := tryWriteSnapshot(s, newMeta, newBody)
		return err
	})
}

func TestErrorInjectionDuringInstall(t *testing.T) {
	newMeta, newBody := testMeta(20), testBody(2, 100_000)
	src := mustOpenStore(t, vfs.NewMem())
	writeSnapshot(t, src, newMeta, newBody)
	testErrorInjection(t, newMeta, newBody, func(dst *Store) error {
		_, err := streamAll(src, dst, newMeta.Index, 4<<10)
		return err
	})
}

// TestErrorInjectionDuringRead: read errors surface as I/O errors, are not
// taken for corruption, and do not stop the snapshot from being listed.
func TestErrorInjectionDuringRead(t *testing.T) {
	meta, body := testMeta(10), testBody(1, 60_000)
	for n := int64(1); ; n++ {
		mem := vfs.NewMem()
		writeSnapshot(t, mustOpenStore(t, mem), meta, body)
		inj := &failNth{}
		inj.n.Store(n)
		s := mustOpenStore(t, errorfs.Wrap(mem, inj))
		inj.armed.Store(true)
		_, _, err := readSnapshot(s, meta.Index)
		if err == nil {
			err = s.Verify(meta.Index)
		}
		inj.armed.Store(false)
		if inj.count.Load() < n {
			if err != nil {
				t.Fatal(err)
			}
			return
		}
		if !errors.Is(err, errorfs.ErrInjected) || errors.Is(err, ErrCorrupt) {
			t.Fatalf("op %d (%v) failed, read returned %v", n, inj.failedOp.Load(), err)
		}
		checkSnapshot(t, s, meta, body)
	}
}
