package snapshot

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
)

func TestRoundTrip(t *testing.T) {
	fs := vfs.NewMem()
	s := mustOpenStore(t, fs)
	if _, ok := s.Latest(); ok {
		t.Fatal("new store has a latest snapshot")
	}
	bodies := map[uint64][]byte{10: testBody(1, 300_000), 20: {}, 30: testBody(3, 5)}
	for _, index := range []uint64{10, 20, 30} {
		info := writeSnapshot(t, s, testMeta(index), bodies[index])
		if info.Meta.Index != index || info.Size == 0 {
			t.Fatalf("commit returned %+v", info)
		}
	}
	for _, store := range []*Store{s, mustOpenStore(t, fs)} {
		var indexes []uint64
		for _, info := range store.List() {
			indexes = append(indexes, info.Meta.Index)
		}
		if !slices.Equal(indexes, []uint64{10, 20, 30}) {
			t.Fatalf("List: %v", indexes)
		}
		if latest, ok := store.Latest(); !ok || latest.Meta.Index != 30 {
			t.Fatalf("Latest: %+v %v", latest, ok)
		}
		for index, body := range bodies {
			checkSnapshot(t, store, testMeta(index), body)
			if err := store.Verify(index); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := store.Open(15); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Open(15): %v", err)
		}
	}
}

func TestCreateDefaultsCreatedTime(t *testing.T) {
	s := mustOpenStore(t, vfs.NewMem())
	before := time.Now()
	info := writeSnapshot(t, s, Meta{Index: 1, Term: 1}, []byte("x"))
	if info.Meta.Created.Before(before.Add(-time.Second)) || info.Meta.Created.After(time.Now()) {
		t.Fatalf("Created %v not defaulted to now", info.Meta.Created)
	}
}

func TestCreateRejectsInvalidMeta(t *testing.T) {
	s := mustOpenStore(t, vfs.NewMem())
	for _, m := range []Meta{
		{Index: 0, Term: 1},
		{Index: 1, Extra: make([]byte, MaxExtraBytes+1)},
		{Index: 1, Configuration: Configuration{Learners: make([]uint64, MaxConfigurationIDs+1)}},
	} {
		if _, err := s.Create(m); !errors.Is(err, ErrInvalidMeta) {
			t.Fatalf("Create(%d extra, %d learners): %v", len(m.Extra), len(m.Configuration.Learners), err)
		}
	}
}

func TestAbortAndWriterAfterClose(t *testing.T) {
	fs := vfs.NewMem()
	s := mustOpenStore(t, fs)
	w, err := s.Create(testMeta(5))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(testBody(1, 1000)); err != nil {
		t.Fatal(err)
	}
	if len(tempFiles(t, fs)) != 1 {
		t.Fatal("no temporary file while writing")
	}
	if err := w.Abort(); err != nil {
		t.Fatal(err)
	}
	if tmp := tempFiles(t, fs); len(tmp) != 0 {
		t.Fatalf("Abort left %v", tmp)
	}
	if _, err := w.Write([]byte("x")); !errors.Is(err, ErrClosed) {
		t.Fatalf("Write after Abort: %v", err)
	}
	if _, err := w.Commit(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Commit after Abort: %v", err)
	}
	if len(s.List()) != 0 {
		t.Fatal("aborted snapshot listed")
	}
}

func TestOpenRemovesTemporaryFiles(t *testing.T) {
	fs := vfs.NewMem()
	s := mustOpenStore(t, fs)
	writeSnapshot(t, s, testMeta(3), []byte("state"))
	w, err := s.Create(testMeta(4)) // never committed
	if err != nil {
		t.Fatal(err)
	}
	w.Write(testBody(2, 5000))
	if _, err := s.NewReceiver(ID{9, 1}, 1000); err != nil {
		t.Fatal(err)
	}
	if len(tempFiles(t, fs)) != 2 {
		t.Fatal("expected two temporary files")
	}
	s2 := mustOpenStore(t, fs)
	if tmp := tempFiles(t, fs); len(tmp) != 0 {
		t.Fatalf("OpenStore left %v", tmp)
	}
	if got := s2.List(); len(got) != 1 || got[0].Meta.Index != 3 {
		t.Fatalf("List after reopen: %+v", got)
	}
}

func TestPrune(t *testing.T) {
	fs := vfs.NewMem()
	s := mustOpenStore(t, fs)
	for index := uint64(10); index <= 50; index += 10 {
		writeSnapshot(t, s, testMeta(index), testBody(index, 2000))
	}
	removed, err := s.Prune(2, 0)
	if err != nil || !slices.Equal(removed, []uint64{30, 20, 10}) {
		t.Fatalf("Prune(2, 0) = %v, %v", removed, err)
	}
	if got := indexesOf(s.List()); !slices.Equal(got, []uint64{40, 50}) {
		t.Fatalf("after prune: %v", got)
	}
	if got := indexesOf(mustOpenStore(t, fs).List()); !slices.Equal(got, []uint64{40, 50}) {
		t.Fatalf("after prune and reopen: %v", got)
	}
	// Nothing covers 51: nothing is removed, and the owner is told.
	if removed, err := s.Prune(0, 51); !errors.Is(err, ErrNotFound) || len(removed) != 0 {
		t.Fatalf("Prune(0, 51) = %v, %v", removed, err)
	}
	// The newest is damaged: the newest valid one covering the need is kept
	// even with keep 0, and the damaged one is reported, not listed.
	flipByte(t, fs, s.List()[1].Path, 100)
	removed, err = s.Prune(0, 40)
	if err != nil || len(removed) != 0 {
		t.Fatalf("Prune(0, 40) with a damaged newest = %v, %v", removed, err)
	}
	if got := indexesOf(s.List()); !slices.Equal(got, []uint64{40}) {
		t.Fatalf("after prune with a damaged newest: %v", got)
	}
	if d := s.Damaged(); len(d) != 1 || !errors.Is(d[0], ErrCorrupt) {
		t.Fatalf("Damaged: %v", d)
	}
	if removed, err := s.Prune(0, 45); !errors.Is(err, ErrNotFound) || len(removed) != 0 {
		t.Fatalf("Prune(0, 45) with only a damaged cover = %v, %v", removed, err)
	}
}

func TestPruneKeepsAnchorBelowKeep(t *testing.T) {
	s := mustOpenStore(t, vfs.NewMem())
	for index := uint64(1); index <= 4; index++ {
		writeSnapshot(t, s, testMeta(index), []byte("x"))
	}
	// keep 1 keeps 4; the covering need 1 is met by 4 too, so 1..3 go.
	removed, err := s.Prune(1, 1)
	if err != nil || !slices.Equal(removed, []uint64{3, 2, 1}) {
		t.Fatalf("Prune(1, 1) = %v, %v", removed, err)
	}
}

func TestSameIndexNewTermReplaces(t *testing.T) {
	fs := vfs.NewMem()
	s := mustOpenStore(t, fs)
	m := testMeta(7)
	writeSnapshot(t, s, m, []byte("old"))
	m.Term++
	writeSnapshot(t, s, m, []byte("new"))
	for _, store := range []*Store{s, mustOpenStore(t, fs)} {
		if got := store.List(); len(got) != 1 || got[0].Meta.Term != m.Term {
			t.Fatalf("List: %+v", got)
		}
		checkSnapshot(t, store, m, []byte("new"))
	}
	names, _ := fs.List(testDir)
	if len(names) != 1 {
		t.Fatalf("files: %v", names)
	}
}

func indexesOf(infos []Info) []uint64 {
	var out []uint64
	for _, info := range infos {
		out = append(out, info.Meta.Index)
	}
	return out
}

// flipByte inverts one bit of byte pos of the file at path.
func flipByte(t testing.TB, fs vfs.FS, path string, pos int) {
	t.Helper()
	b := readFile(t, fs, path)
	b[pos] ^= 0x10
	writeFile(t, fs, path, b)
}

// TestConcurrentUse: writers, readers and Prune on one store at once (run
// under the race detector).
func TestConcurrentUse(t *testing.T) {
	s := mustOpenStore(t, vfs.NewMem())
	writeSnapshot(t, s, testMeta(1), testBody(1, 1000))
	errs := make(chan error, 16)
	for writer := range uint64(3) {
		go func() {
			for i := range uint64(5) {
				index := 2 + writer*10 + i
				if _, err := tryWriteSnapshot(s, testMeta(index), testBody(index, 5000)); err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	go func() {
		for range 20 {
			if latest, ok := s.Latest(); ok {
				body, _, err := readSnapshot(s, latest.Meta.Index)
				if err != nil && !errors.Is(err, ErrNotFound) {
					errs <- err
					return
				}
				want := 5000
				if latest.Meta.Index == 1 {
					want = 1000
				}
				if err == nil && len(body) != want {
					errs <- errors.New("body of the wrong length")
					return
				}
			}
			if _, err := s.Prune(3, 0); err != nil {
				errs <- err
				return
			}
		}
		errs <- nil
	}()
	for range 4 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Prune(3, 0); err != nil {
		t.Fatal(err)
	}
	if got := indexesOf(s.List()); !slices.Equal(got, []uint64{24, 25, 26}) {
		t.Fatalf("after concurrent writes and prune: %v", got)
	}
	if len(s.Damaged()) != 0 {
		t.Fatal(s.Damaged())
	}
}
