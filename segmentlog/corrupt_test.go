package segmentlog

import (
	"bytes"
	"io"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/raftmq/raftmq/protocol"
)

// buildLog writes a log with several sealed segments and an active one,
// closes it and returns its files' bytes and the model.
func buildLog(t testing.TB, seed uint64, opts Options) (map[string][]byte, *model) {
	files, m, _ := buildLogEnds(t, seed, opts)
	return files, m
}

// buildLogEnds is buildLog that also returns where each segment file's
// data ends (preallocated zeros may follow on the in-memory file system).
func buildLogEnds(t testing.TB, seed uint64, opts Options) (map[string][]byte, *model, map[string]int64) {
	t.Helper()
	fs := vfs.NewMem()
	l := mustOpen(t, fs, opts)
	r := rand.New(rand.NewPCG(seed, 3))
	m := newModel()
	for i := 0; i < 60; i++ {
		batch := []protocol.Entry{randomEntry(r, m.lastIndex()+1, 1+uint64(i/20), 1200)}
		if err := l.Append(batch); err != nil {
			t.Fatal(err)
		}
		m.append(batch...)
	}
	dataEnds := map[string]int64{}
	for _, seg := range l.segments {
		dataEnds[fs.PathBase(seg.path)] = seg.end
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{}
	names, _ := fs.List("log")
	for _, name := range names {
		f, err := fs.Open("log/" + name)
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		files[name] = b
	}
	return files, m, dataEnds
}

func memWith(t testing.TB, files map[string][]byte) vfs.FS {
	fs := vfs.NewMem()
	if err := fs.MkdirAll("log", 0o755); err != nil {
		t.Fatal(err)
	}
	for name, b := range files {
		f, err := fs.Create("log/"+name, vfs.WriteCategoryUnspecified)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.Write(bytes.Clone(b)); err != nil { // MemFS may scramble written buffers
			t.Fatal(err)
		}
		f.Close()
	}
	return fs
}

// checkNoWrongBytes opens a damaged log. Open may fail only with
// ErrCorrupt. If it opens, the log must be a prefix of the model (a cut
// tail), every read either fails with ErrCorrupt or returns the model's
// bytes, and a damaged sealed segment must be reported when read.
func checkNoWrongBytes(t *testing.T, fs vfs.FS, opts Options, m *model, what string, mustDetect bool) {
	t.Helper()
	l, err := Open(fs, "log", opts)
	if err != nil {
		if !isCorrupt(err) {
			t.Fatalf("%s: open failed with a non-corruption error: %v", what, err)
		}
		if !strings.Contains(err.Error(), "log/") {
			t.Fatalf("%s: corruption error does not name the file: %v", what, err)
		}
		return
	}
	defer l.Close()
	if l.FirstIndex() != m.firstIndex || l.LastIndex() > m.lastIndex() {
		t.Fatalf("%s: recovered [%d, %d] outside the model [%d, %d]", what, l.FirstIndex(), l.LastIndex(), m.firstIndex, m.lastIndex())
	}
	detected := l.LastIndex() < m.lastIndex()
	for index := l.FirstIndex(); index <= l.LastIndex(); index++ {
		got, err := l.Entries(index, index+1, 0)
		if err != nil {
			if !isCorrupt(err) {
				t.Fatalf("%s: read %d: non-corruption error %v", what, index, err)
			}
			detected = true
			continue
		}
		if !entryEqual(got[0], m.entries[index-m.firstIndex]) {
			t.Fatalf("%s: entry %d read back wrong bytes", what, index)
		}
	}
	if mustDetect && !detected {
		t.Fatalf("%s: damage went unnoticed", what)
	}
}

// TestBitFlipsAndTruncations flips one bit, or truncates one file, at
// random positions of segment and index files.
func TestBitFlipsAndTruncations(t *testing.T) {
	opts := smallOptions()
	files, m, dataEnds := buildLogEnds(t, 1, opts)
	preallocated := false
	for name, end := range dataEnds {
		preallocated = preallocated || int64(len(files[name])) > end
	}
	if !preallocated {
		t.Fatal("no segment file has a preallocated tail")
	}
	var names []string
	for name := range files {
		if name != lockFileName {
			names = append(names, name)
		}
	}
	if len(names) < 5 {
		t.Fatalf("expected several segments, got files %v", names)
	}
	r := rand.New(rand.NewPCG(9, 9))
	trials := 600
	if testing.Short() {
		trials = 150
	}
	for trial := 0; trial < trials; trial++ {
		name := names[r.IntN(len(names))]
		damaged := map[string][]byte{}
		for k, v := range files {
			damaged[k] = v
		}
		b := append([]byte(nil), files[name]...)
		var what string
		var pos int
		if r.IntN(3) == 0 {
			pos = r.IntN(len(b))
			b = b[:pos]
			what = name + " truncated"
		} else {
			pos = r.IntN(len(b))
			b[pos] ^= 1 << r.IntN(8)
			what = name + " bit flip"
		}
		damaged[name] = b
		// Damage to a segment's data must be noticed (error or shorter log);
		// damage to an index file is repaired silently, and damage in the
		// zeros after a segment's data (preallocated space) touches no
		// entry: the log may open whole or fail with ErrCorrupt.
		end, isSegment := dataEnds[name]
		checkNoWrongBytes(t, memWith(t, damaged), opts, m, what, isSegment && int64(pos) < end)
	}
}

// TestStaleIndexIsRebuilt replaces a sealed segment's index with the index
// of an older version of that segment.
func TestStaleIndexIsRebuilt(t *testing.T) {
	opts := smallOptions()
	fs := vfs.NewMem()
	l := mustOpen(t, fs, opts)
	r := rand.New(rand.NewPCG(5, 5))
	m := newModel()
	appendN := func(n int, term uint64) {
		for range n {
			e := randomEntry(r, m.lastIndex()+1, term, 1200)
			if err := l.Append([]protocol.Entry{e}); err != nil {
				t.Fatal(err)
			}
			m.append(e)
		}
	}
	appendN(80, 1)
	if l.SegmentCount() < 3 {
		t.Fatalf("want several segments, have %d", l.SegmentCount())
	}
	first := l.segments[0]
	old, err := fs.Open(first.indexPath)
	if err != nil {
		t.Fatal(err)
	}
	stale, _ := io.ReadAll(old)
	old.Close()
	cut := first.lastIndex - 2
	if err := l.TruncateAfter(cut); err != nil {
		t.Fatal(err)
	}
	m.truncateAfter(cut)
	appendN(30, 2)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	f, _ := fs.Create(first.indexPath, vfs.WriteCategoryUnspecified)
	f.Write(stale)
	f.Close()
	l = mustOpen(t, fs, opts)
	defer l.Close()
	checkAgainst(t, l, m)
}

// TestSealedSegmentCorruptionNamesFileAndPosition deletes the index so the
// segment is scanned, then checks the error's file and position.
func TestSealedSegmentCorruptionNamesFileAndPosition(t *testing.T) {
	opts := smallOptions()
	files, _ := buildLog(t, 2, opts)
	seg := segmentFileName(1)
	delete(files, indexFileName(1))
	b := append([]byte(nil), files[seg]...)
	b[segmentHeaderSize+frameHeaderSize+3] ^= 0x10 // inside the first payload
	files[seg] = b
	_, err := Open(memWith(t, files), "log", opts)
	var ce *CorruptError
	if !isCorrupt(err) || !asCorrupt(err, &ce) {
		t.Fatalf("open = %v, want a *CorruptError", err)
	}
	if !strings.HasSuffix(ce.File, seg) || ce.Pos != segmentHeaderSize {
		t.Fatalf("error names %s at %d, want %s at %d", ce.File, ce.Pos, seg, segmentHeaderSize)
	}
}
