package segmentlog

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/raftmq/raftmq/protocol"
)

// fileSize returns the size of the file at path in fs.
func fileSize(t testing.TB, fs vfs.FS, path string) int64 {
	t.Helper()
	info, err := fs.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return info.Size()
}

// readFileBytes returns the bytes of the file at path in fs.
func readFileBytes(t testing.TB, fs vfs.FS, path string) []byte {
	t.Helper()
	f, err := fs.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// writeFile replaces the file at path in fs with b.
func writeFile(t testing.TB, fs vfs.FS, path string, b []byte) {
	t.Helper()
	f, err := fs.Create(path, vfs.WriteCategoryUnspecified)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(bytes.Clone(b)); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestAllocTarget(t *testing.T) {
	l := &Log{opts: DefaultOptions()}
	l.opts.PreallocateBytes = 1 << 20
	l.opts.SegmentMaxBytes = 8 << 20
	for _, c := range []struct{ end, allocEnd, want int64 }{
		{end: 100, allocEnd: 64, want: 1<<20 + 4096},    // grows past the write, rounded to 4 KiB
		{end: 100, allocEnd: 4096, want: 0},             // fits: no growth
		{end: 5000, allocEnd: 4096, want: 1<<20 + 8192}, // passes the end
		{end: 8<<20 - 10, allocEnd: 0, want: 8 << 20},   // capped at the segment size
		{end: 9 << 20, allocEnd: 8 << 20, want: 0},      // an entry larger than a segment
	} {
		if got := l.allocTarget(c.end, c.allocEnd, nil); got != c.want {
			t.Errorf("allocTarget(%d, %d) = %d, want %d", c.end, c.allocEnd, got, c.want)
		}
	}
	mem := vfs.NewMem()
	f, err := mem.Create("f", vfs.WriteCategoryUnspecified)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if got, want := l.allocTarget(100, 64, f), int64(maxZeroFill+4096); got != want {
		t.Errorf("file without a descriptor: allocTarget = %d, want %d", got, want)
	}
	l.opts.PreallocateBytes = 0
	if got := l.allocTarget(100, 64, nil); got != 0 {
		t.Errorf("disabled: allocTarget = %d, want 0", got)
	}
	l.opts.PreallocateBytes, l.noFallocate = 1<<20, true
	if got := l.allocTarget(100, 64, nil); got != 0 {
		t.Errorf("without fallocate: allocTarget = %d, want 0", got)
	}
}

// TestCrashRecoveryPreallocated crashes seeded workloads (appends with
// rolls, syncs, truncations) on the in-memory file system, where
// preallocation writes zeros, with preallocation steps smaller than a
// segment (the file grows in several steps, unsynced), as large as one,
// and off. After each crash the recovered log, whose active segment ends
// in preallocated zeros, must hold exactly a prefix of the model at least
// as long as the durable index, and the workload goes on with it: it
// appends into that preallocated space, rolls and crashes again.
func TestCrashRecoveryPreallocated(t *testing.T) {
	seeds := uint64(24)
	if testing.Short() {
		seeds = 8
	}
	zeroTails := 0
	for _, step := range []int64{1 << 10, 3000, 64 << 10, 0} {
		for seed := range seeds {
			zeroTails += crashPreallocatedWorkload(t, step, seed)
		}
	}
	if zeroTails == 0 {
		t.Fatal("no recovered active segment had a zero tail")
	}
}

// crashPreallocatedWorkload runs one seeded workload and returns how many
// recovered logs had an active segment longer than its data.
func crashPreallocatedWorkload(t *testing.T, step int64, seed uint64) int {
	r := rand.New(rand.NewPCG(seed, 77))
	opts := smallOptions()
	opts.PreallocateBytes = step
	mem := vfs.NewCrashableMem()
	l := mustOpen(t, mem, opts)
	defer func() { l.Close() }()
	m := newModel()
	term, durable := uint64(1), uint64(0)
	zeroTails := 0
	for stepNo := 0; stepNo < 150; stepNo++ {
		where := fmt.Sprintf("step %d seed %d op %d", step, seed, stepNo)
		switch op := r.IntN(12); {
		case op < 7:
			var batch []protocol.Entry
			for range 1 + r.IntN(5) {
				batch = append(batch, randomEntry(r, m.lastIndex()+1+uint64(len(batch)), term, 1500))
			}
			if err := l.Append(batch); err != nil {
				t.Fatalf("%s: append: %v", where, err)
			}
			m.append(batch...)
		case op < 9:
			d, err := l.Sync()
			if err != nil {
				t.Fatalf("%s: sync: %v", where, err)
			}
			durable = d
		case op < 10:
			if len(m.entries) > 0 {
				cut := m.lastIndex() - uint64(r.IntN(min(len(m.entries), 6)))
				if err := l.TruncateAfter(cut); err != nil {
					t.Fatalf("%s: truncate: %v", where, err)
				}
				m.truncateAfter(cut)
				durable = min(durable, cut)
				term++
			}
		default:
			crashed := mem.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: r.IntN(101), RNG: rand.New(rand.NewPCG(seed, uint64(stepNo)))})
			l.Close()
			mem = crashed
			var err error
			if l, err = Open(mem, "log", opts); err != nil {
				t.Fatalf("%s: recovery failed: %v", where, err)
			}
			last := l.LastIndex()
			if last < durable || last > m.lastIndex() {
				t.Fatalf("%s: recovered last index %d, durable %d, model %d", where, last, durable, m.lastIndex())
			}
			m.truncateAfter(last)
			if err := compare(l, m); err != nil {
				t.Fatalf("%s: recovered log differs: %v", where, err)
			}
			if active := l.active(); fileSize(t, mem, active.path) > active.end {
				zeroTails++
			}
			durable = l.DurableIndex()
			if durable != last {
				t.Fatalf("%s: reopened log has durable index %d, last %d", where, durable, last)
			}
		}
	}
	if err := l.Close(); err != nil {
		t.Fatalf("step %d seed %d: close: %v", step, seed, err)
	}
	l = mustOpen(t, mem, opts)
	checkAgainst(t, l, m)
	return zeroTails
}

// TestErrorInjectionPreallocSteps runs the error injection workload with
// a preallocation step smaller than a segment (each step a write of zeros
// that can fail) and with preallocation off.
func TestErrorInjectionPreallocSteps(t *testing.T) {
	for _, step := range []int64{1 << 10, 0} {
		t.Run(fmt.Sprint(step), func(t *testing.T) {
			opts := smallOptions()
			opts.PreallocateBytes = step
			errorInjection(t, opts)
		})
	}
}

// zeroTailLog writes a log with one active segment, preallocated well past
// its data, syncs and closes it, and returns the file system, the segment's
// bytes, where its data ends, and the model.
func zeroTailLog(t *testing.T) (vfs.FS, []byte, int64, *model) {
	t.Helper()
	opts := smallOptions()
	opts.SegmentMaxBytes = 1 << 20
	opts.PreallocateBytes = 64 << 10
	fs := vfs.NewMem()
	l := mustOpen(t, fs, opts)
	r := rand.New(rand.NewPCG(3, 3))
	m := newModel()
	for range 10 {
		e := randomEntry(r, m.lastIndex()+1, 1, 300)
		if err := l.Append([]protocol.Entry{e}); err != nil {
			t.Fatal(err)
		}
		m.append(e)
	}
	if _, err := l.Sync(); err != nil {
		t.Fatal(err)
	}
	end := l.active().end
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	b := readFileBytes(t, fs, "log/"+segmentFileName(1))
	if int64(len(b)) < end+32<<10 || !isZero(b[end:]) {
		t.Fatalf("segment of %d bytes with data to %d: want a zero tail of at least 32 KiB", len(b), end)
	}
	return fs, b, end, m
}

// TestZeroTailIsNotCorruption: the zeros after the last frame are the end
// of the data, at open and after a clean close, and stay as preallocated
// space.
func TestZeroTailIsNotCorruption(t *testing.T) {
	fs, b, end, m := zeroTailLog(t)
	opts := smallOptions()
	opts.SegmentMaxBytes = 1 << 20
	opts.PreallocateBytes = 64 << 10
	l := mustOpen(t, fs, opts)
	checkAgainst(t, l, m)
	if l.active().end != end || l.allocEnd != int64(len(b)) {
		t.Fatalf("reopened: data end %d, allocated %d; want %d, %d", l.active().end, l.allocEnd, end, len(b))
	}
	// Appending goes on in the preallocated space: the file does not grow.
	r := rand.New(rand.NewPCG(4, 4))
	e := randomEntry(r, m.lastIndex()+1, 1, 300)
	if err := l.Append([]protocol.Entry{e}); err != nil {
		t.Fatal(err)
	}
	m.append(e)
	if _, err := l.Sync(); err != nil {
		t.Fatal(err)
	}
	if got := fileSize(t, fs, "log/"+segmentFileName(1)); got != int64(len(b)) {
		t.Fatalf("file grew from %d to %d bytes for an append into preallocated space", len(b), got)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l = mustOpen(t, fs, opts)
	defer l.Close()
	checkAgainst(t, l, m)
}

// TestZeroTailFlippedByte: a non-zero byte in the zeros after the last
// frame of the active segment is judged by the torn-write rule. In the
// 512-byte sector where the data ends it cannot be a lost write (the
// sector would read as zeros from the end of data on), so it is
// ErrCorrupt at the end of data; in a later sector it is an unsynced
// write's remains and is cut (zeroed), keeping every entry. In a sealed
// segment it is ErrCorrupt when the segment is scanned (its index file
// missing), never a silent cut.
func TestZeroTailFlippedByte(t *testing.T) {
	_, b, end, m := zeroTailLog(t)
	opts := smallOptions()
	opts.SegmentMaxBytes = 1 << 20
	path := "log/" + segmentFileName(1)
	sectorEnd := (end + sectorSize) &^ (sectorSize - 1)
	for _, c := range []struct {
		pos     int64
		corrupt bool
	}{
		{end, true}, {end + 3, true}, {end + 40, sectorEnd > end+40}, {sectorEnd - 1, true},
		{sectorEnd, false}, {sectorEnd + 100, false}, {int64(len(b)) - 1, false},
	} {
		damaged := bytes.Clone(b)
		damaged[c.pos] ^= 0x10
		fs := memWith(t, map[string][]byte{segmentFileName(1): damaged})
		l, err := Open(fs, "log", opts)
		if c.corrupt {
			if err == nil {
				l.Close()
				t.Fatalf("flip at byte %d (data ends at %d): opened", c.pos, end)
			}
			wantCorruptAt(t, err, end)
			continue
		}
		if err != nil {
			t.Fatalf("flip at byte %d (data ends at %d): %v", c.pos, end, err)
		}
		checkAgainst(t, l, m)
		l.Close()
		if got := readFileBytes(t, fs, path); !isZero(got[end:]) {
			t.Fatalf("flip at byte %d: the cut left non-zero bytes after the data", c.pos)
		}
	}

	// A sealed segment whose zero tail (a file system that cannot cut it)
	// holds a non-zero byte, with its index file gone.
	opts = smallOptions()
	files, _, ends := buildLogEnds(t, 5, opts)
	seg := segmentFileName(1)
	if int64(len(files[seg])) <= ends[seg]+64 {
		t.Fatalf("sealed segment of %d bytes, data to %d: no zero tail", len(files[seg]), ends[seg])
	}
	damaged := map[string][]byte{}
	for k, v := range files {
		damaged[k] = v
	}
	delete(damaged, indexFileName(1))
	b = bytes.Clone(files[seg])
	b[ends[seg]+64] = 1
	damaged[seg] = b
	_, err := Open(memWith(t, damaged), "log", opts)
	var ce *CorruptError
	if !asCorrupt(err, &ce) || ce.Pos != ends[seg]+64 {
		t.Fatalf("sealed segment with a non-zero byte in its tail: open = %v, want ErrCorrupt at byte %d", err, ends[seg]+64)
	}
	// Intact, the same sealed segment with its zero tail opens, with and
	// without its index file.
	delete(damaged, seg)
	damaged[seg] = files[seg]
	l, err := Open(memWith(t, damaged), "log", opts)
	if err != nil {
		t.Fatalf("sealed segment with a zero tail: %v", err)
	}
	l.Close()
}

// TestPreallocateRealFiles runs on a real directory, where preallocation
// is a size-extending fallocate: the active segment's file is longer than
// its data by at most a step, a sealed segment's file ends exactly at its
// last frame, truncation and reset keep the data exact, and the log
// reopens exactly, after a clean close and after losing its index files.
func TestPreallocateRealFiles(t *testing.T) {
	dir := t.TempDir()
	fs := vfs.Default
	opts := smallOptions()
	opts.SegmentMaxBytes = 256 << 10
	opts.PreallocateBytes = 64 << 10
	l, err := Open(fs, dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { l.Close() }()
	if l.noFallocate {
		t.Skip("the file system of the temporary directory has no fallocate")
	}
	checkSizes := func(when string) {
		t.Helper()
		l.mu.RLock()
		segments := append([]*segment(nil), l.segments...)
		l.mu.RUnlock()
		for _, s := range segments[:len(segments)-1] {
			if size := fileSize(t, fs, s.path); size != s.end {
				t.Fatalf("%s: sealed %s is %d bytes, its data %d", when, fs.PathBase(s.path), size, s.end)
			}
		}
		active := segments[len(segments)-1]
		size := fileSize(t, fs, active.path)
		if size <= active.end || size > max(active.end+opts.PreallocateBytes+allocStep, opts.SegmentMaxBytes) {
			t.Fatalf("%s: active %s is %d bytes, its data %d: want a preallocated tail of at most %d",
				when, fs.PathBase(active.path), size, active.end, opts.PreallocateBytes+allocStep)
		}
		if size != l.allocEnd {
			t.Fatalf("%s: active file is %d bytes, the log believes %d", when, size, l.allocEnd)
		}
	}
	r := rand.New(rand.NewPCG(8, 8))
	m := newModel()
	appendN := func(n int) {
		for range n {
			e := randomEntry(r, m.lastIndex()+1, 1, 2000)
			if err := l.Append([]protocol.Entry{e}); err != nil {
				t.Fatal(err)
			}
			m.append(e)
			if r.IntN(4) == 0 {
				if _, err := l.Sync(); err != nil {
					t.Fatal(err)
				}
			}
		}
		if _, err := l.Sync(); err != nil {
			t.Fatal(err)
		}
	}
	checkSizes("new log")
	appendN(600)
	if l.SegmentCount() < 3 {
		t.Fatalf("want several segments, have %d", l.SegmentCount())
	}
	checkSizes("after appends")
	checkAgainst(t, l, m)
	var total int64
	for _, s := range l.segments {
		total += s.end
	}
	if got := l.SizeBytes(); got != total {
		t.Fatalf("SizeBytes %d, data %d", got, total)
	}

	// Truncate into the previous (sealed, cut) segment, then append again.
	cut := l.segments[len(l.segments)-2].lastIndex - 3
	if err := l.TruncateAfter(cut); err != nil {
		t.Fatal(err)
	}
	m.truncateAfter(cut)
	checkAgainst(t, l, m)
	appendN(5)
	checkSizes("after truncating into a sealed segment")
	// Truncate inside the active segment's preallocated file.
	cut = m.lastIndex() - 2
	if err := l.TruncateAfter(cut); err != nil {
		t.Fatal(err)
	}
	m.truncateAfter(cut)
	checkSizes("after truncating the active segment")
	appendN(100)
	checkSizes("after more appends")

	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if l, err = Open(fs, dir, opts); err != nil {
		t.Fatal(err)
	}
	checkAgainst(t, l, m)
	checkSizes("reopened")
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	names, err := fs.List(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range names {
		if _, ok := parseSegmentName(name, indexSuffix); ok {
			if err := fs.Remove(fs.PathJoin(dir, name)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if l, err = Open(fs, dir, opts); err != nil {
		t.Fatal(err)
	}
	checkAgainst(t, l, m)
	appendN(50)
	checkSizes("reopened without index files")

	if err := l.ResetOffsets(m.lastIndex()+100, 9, 12345); err != nil {
		t.Fatal(err)
	}
	m = &model{firstIndex: m.lastIndex() + 100, prevTerm: 9, firstOff: 12345}
	checkSizes("after reset")
	appendN(20)
	checkAgainst(t, l, m)
}

// TestPreallocateFollowsSyncSize: Syncs that write many blocks each stop
// the preallocation (the file grows with its data), Syncs of small
// appends start it again.
func TestPreallocateFollowsSyncSize(t *testing.T) {
	dir := t.TempDir()
	opts := smallOptions()
	opts.SegmentMaxBytes = 64 << 20
	opts.PreallocateBytes = 64 << 10
	l, err := Open(vfs.Default, dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if l.noFallocate {
		t.Skip("the file system of the temporary directory has no fallocate")
	}
	r := rand.New(rand.NewPCG(6, 6))
	syncEntries := func(n, size int) {
		t.Helper()
		var batch []protocol.Entry
		for range n {
			batch = append(batch, protocol.Entry{Index: l.LastIndex() + 1 + uint64(len(batch)), Term: 1,
				Type: protocol.EntryRecordBatch, Data: testBatch(1, size, r.Uint64())})
		}
		if err := l.Append(batch); err != nil {
			t.Fatal(err)
		}
		if _, err := l.Sync(); err != nil {
			t.Fatal(err)
		}
	}
	path := l.active().path
	for range 3 {
		syncEntries(50, 4000) // 200 KB per Sync
	}
	if size, end := fileSize(t, vfs.Default, path), l.active().end; size != end {
		t.Fatalf("after large Syncs the file is %d bytes, its data %d: want no preallocation", size, end)
	}
	for range 20 {
		syncEntries(1, 100)
	}
	syncEntries(1, 100)
	if size, end := fileSize(t, vfs.Default, path), l.active().end; size <= end {
		t.Fatalf("after small Syncs the file is %d bytes, its data %d: want a preallocated tail", size, end)
	}
}
