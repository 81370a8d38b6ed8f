package segmentlog

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/raftmq/raftmq/protocol"
)

// vectorOptions make Append calls of a few hundred KiB write through, in
// several pwritev groups, and roll segments often.
func vectorOptions() Options {
	o := DefaultOptions()
	o.SegmentMaxBytes = 1536 << 10
	o.IndexIntervalBytes = 4 << 10
	o.TailCacheBytes = 32 << 10
	o.WriteBufferBytes = 8 << 10
	o.MaxEntryBytes = 256 << 10
	o.Now = smallOptions().Now
	return o
}

// vectorEntry returns an entry at index: mostly record batches and control
// entries with payloads both below and above vecMinPieceBytes, some empty.
func vectorEntry(r *rand.Rand, index, term uint64) protocol.Entry {
	size := r.IntN(3 * vecMinPieceBytes)
	if r.IntN(4) == 0 {
		size = r.IntN(200 << 10)
	}
	e := protocol.Entry{Index: index, Term: term}
	switch r.IntN(8) {
	case 0:
		e.Type = protocol.EntryNoop
	case 1, 2:
		e.Type = protocol.EntryControl
		e.Data = make([]byte, size)
		for i := range e.Data {
			e.Data[i] = byte(r.Uint32())
		}
	default:
		e.Type = protocol.EntryRecordBatch
		e.Data = testBatch(uint32(1+r.IntN(5)), size, r.Uint64())
	}
	return e
}

// vectorLogs opens two logs on real files in separate directories: one
// writes through by vector, the other (noVector) by copying.
func vectorLogs(t *testing.T, opts Options) (vec, cp *Log, vecDir, cpDir string) {
	t.Helper()
	if !vectorWrites {
		t.Skip("no pwritev on this platform")
	}
	dir := t.TempDir()
	vecDir, cpDir = filepath.Join(dir, "vector"), filepath.Join(dir, "copy")
	var err error
	if vec, err = Open(vfs.Default, vecDir, opts); err != nil {
		t.Fatal(err)
	}
	if cp, err = Open(vfs.Default, cpDir, opts); err != nil {
		t.Fatal(err)
	}
	cp.noVector = true
	// Groups of a few entries, so calls write several.
	vec.vec.group, vec.vec.minPiece = 64<<10, vecMinPieceBytes
	t.Cleanup(func() { vec.Close(); cp.Close() })
	return vec, cp, vecDir, cpDir
}

// cloneEntries returns a copy of entries with their own Data.
func cloneEntries(entries []protocol.Entry) []protocol.Entry {
	out := slices.Clone(entries)
	for i := range out {
		out[i].Data = bytes.Clone(out[i].Data)
	}
	return out
}

// scribble overwrites the entries' Data, as a caller reusing its buffers
// after Append returned may.
func scribble(entries []protocol.Entry) {
	for _, e := range entries {
		for i := range e.Data {
			e.Data[i] ^= 0xA5
		}
	}
}

// sameFiles fails unless directories a and b hold the same files with the
// same bytes.
func sameFiles(t *testing.T, a, b string) {
	t.Helper()
	list := func(dir string) []string {
		des, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, de := range des {
			names = append(names, de.Name())
		}
		return names
	}
	na, nb := list(a), list(b)
	if !slices.Equal(na, nb) {
		t.Fatalf("files differ: %v against %v", na, nb)
	}
	for _, name := range na {
		ba, err := os.ReadFile(filepath.Join(a, name))
		if err != nil {
			t.Fatal(err)
		}
		bb, err := os.ReadFile(filepath.Join(b, name))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(ba, bb) {
			at := 0
			for at < min(len(ba), len(bb)) && ba[at] == bb[at] {
				at++
			}
			t.Fatalf("%s differs (%d against %d bytes) from byte %d", name, len(ba), len(bb), at)
		}
	}
}

// TestWriteThroughVectorMatchesCopy appends the same calls, many of them
// written through, to a log that writes through by vector and to one that
// copies, with syncs, truncations and rolls, overwriting each call's
// buffers once Append returned, and checks that both directories hold the
// same bytes, that both logs hold what was appended (read back before and
// after reopening), and that the vector path wrote in groups.
func TestWriteThroughVectorMatchesCopy(t *testing.T) {
	opts := vectorOptions()
	vec, cp, vecDir, cpDir := vectorLogs(t, opts)
	writes, pieces := 0, 0
	vec.vec.writev = func(fd uintptr, p [][]byte, pos int64, iov *iovecs) (int, error) {
		writes++
		pieces += len(p)
		return pwritev(fd, p, pos, iov)
	}
	r := rand.New(rand.NewPCG(64, 64))
	m := newModel()
	term, throughCalls := uint64(1), 0
	for step := range 120 {
		switch {
		case step%23 == 22 && len(m.entries) > 0:
			cut := m.lastIndex() - uint64(r.IntN(min(len(m.entries), 30)))
			for _, l := range []*Log{vec, cp} {
				if err := l.TruncateAfter(cut); err != nil {
					t.Fatal(err)
				}
			}
			m.truncateAfter(cut)
			term++
			continue
		case step%4 == 3:
			for _, l := range []*Log{vec, cp} {
				if _, err := l.Sync(); err != nil {
					t.Fatal(err)
				}
			}
		}
		var call []protocol.Entry
		frameBytes := 0
		for range 1 + r.IntN(60) {
			e := vectorEntry(r, m.lastIndex()+1+uint64(len(call)), term)
			call = append(call, e)
			frameBytes += frameHeaderSize + len(e.Data)
		}
		if frameBytes-opts.TailCacheBytes >= opts.WriteBufferBytes {
			throughCalls++
		}
		for _, l := range []*Log{vec, cp} {
			mine := cloneEntries(call)
			if err := l.Append(mine); err != nil {
				t.Fatal(err)
			}
			scribble(mine)
		}
		m.append(call...)
	}
	if throughCalls < 60 || writes < 2*throughCalls || pieces < 2*writes {
		t.Fatalf("%d calls wrote through, in %d vectored writes of %d pieces", throughCalls, writes, pieces)
	}
	if n := vec.SegmentCount(); n < 3 {
		t.Fatalf("the workload should roll segments; have %d", n)
	}
	checkAgainst(t, vec, m)
	checkAgainst(t, cp, m)
	for _, l := range []*Log{vec, cp} {
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
	}
	sameFiles(t, vecDir, cpDir)
	for _, dir := range []string{vecDir, cpDir} {
		l, err := Open(vfs.Default, dir, opts)
		if err != nil {
			t.Fatal(err)
		}
		checkAgainst(t, l, m)
		l.Close()
	}
}

// TestWriteThroughVectorShortWrites makes every pwritev write only part of
// what it was given, splitting pieces anywhere, and checks that the file
// holds the same bytes as the copying path's.
func TestWriteThroughVectorShortWrites(t *testing.T) {
	opts := vectorOptions()
	vec, cp, vecDir, cpDir := vectorLogs(t, opts)
	r := rand.New(rand.NewPCG(5, 5))
	short := 0
	vec.vec.writev = func(fd uintptr, p [][]byte, pos int64, iov *iovecs) (int, error) {
		total := 0
		for _, b := range p {
			total += len(b)
		}
		limit := 1 + r.IntN(total)
		var cut [][]byte
		for _, b := range p {
			if limit == 0 {
				break
			}
			n := min(len(b), limit)
			cut = append(cut, b[:n])
			limit -= n
		}
		if len(cut) < len(p) || len(cut[len(cut)-1]) < len(p[len(cut)-1]) {
			short++
		}
		return pwritev(fd, cut, pos, iov)
	}
	m := newModel()
	for range 12 {
		var call []protocol.Entry
		for range 40 {
			call = append(call, vectorEntry(r, m.lastIndex()+1+uint64(len(call)), 1))
		}
		for _, l := range []*Log{vec, cp} {
			mine := cloneEntries(call)
			if err := l.Append(mine); err != nil {
				t.Fatal(err)
			}
			scribble(mine)
			if _, err := l.Sync(); err != nil {
				t.Fatal(err)
			}
		}
		m.append(call...)
	}
	if short < 20 {
		t.Fatalf("only %d short writes", short)
	}
	checkAgainst(t, vec, m)
	vec.Close()
	cp.Close()
	sameFiles(t, vecDir, cpDir)
}

// TestWriteThroughVectorErrorIsSticky fails a vectored write and checks
// that Append reports it, that the log reports it from then on and never
// reports the call's entries durable, and that a reopened log holds every
// entry synced before.
func TestWriteThroughVectorErrorIsSticky(t *testing.T) {
	for _, failAt := range []int{1, 3} {
		opts := vectorOptions()
		vec, _, vecDir, _ := vectorLogs(t, opts)
		errWrite := errors.New("injected pwritev failure")
		writes := 0
		vec.vec.writev = func(fd uintptr, p [][]byte, pos int64, iov *iovecs) (int, error) {
			writes++
			if writes == failAt {
				return 0, errWrite
			}
			return pwritev(fd, p, pos, iov)
		}
		r := rand.New(rand.NewPCG(9, uint64(failAt)))
		m := newModel()
		call := func() []protocol.Entry {
			var c []protocol.Entry
			for len(c) < 30 {
				e := vectorEntry(r, m.lastIndex()+1+uint64(len(c)), 1)
				if len(e.Data) > vecMinPieceBytes {
					c = append(c, e)
				}
			}
			return c
		}
		// A small call, synced, then calls that write through until one fails.
		first := []protocol.Entry{randomEntry(r, 1, 1, 100)}
		if err := vec.Append(first); err != nil {
			t.Fatal(err)
		}
		m.append(first...)
		if d, err := vec.Sync(); err != nil || d != 1 {
			t.Fatalf("sync = %d, %v", d, err)
		}
		durable := uint64(1)
		var err error
		var failed []protocol.Entry
		for err == nil {
			c := call()
			if err = vec.Append(c); err != nil {
				failed = c
				break
			}
			m.append(c...)
			if durable, err = vec.Sync(); err != nil {
				t.Fatal(err)
			}
		}
		if !errors.Is(err, errWrite) {
			t.Fatalf("failAt %d: Append returned %v", failAt, err)
		}
		if err := vec.Append(call()); !errors.Is(err, errWrite) {
			t.Fatalf("failAt %d: Append after the failure returned %v", failAt, err)
		}
		if d, err := vec.Sync(); !errors.Is(err, errWrite) {
			t.Fatalf("failAt %d: Sync after the failure returned %d, %v", failAt, d, err)
		}
		if vec.DurableIndex() != durable {
			t.Fatalf("failAt %d: durable index %d, want %d", failAt, vec.DurableIndex(), durable)
		}
		vec.Close()
		l, err := Open(vfs.Default, vecDir, opts)
		if err != nil {
			t.Fatal(err)
		}
		if l.LastIndex() < durable {
			t.Fatalf("failAt %d: reopened log ends at %d, %d was durable", failAt, l.LastIndex(), durable)
		}
		// The failed call's groups before the failed one were written.
		m.append(failed...)
		m.truncateAfter(l.LastIndex())
		checkAgainst(t, l, m)
		l.Close()
	}
}

// TestWriteThroughVectorConcurrent runs the concurrent readers and Sync
// against a writer on real files whose calls often write through by
// vector (every payload of 200 bytes or more a piece of its own). Run it
// with -race.
func TestWriteThroughVectorConcurrent(t *testing.T) {
	if !vectorWrites {
		t.Skip("no pwritev on this platform")
	}
	l, err := Open(vfs.Default, filepath.Join(t.TempDir(), "log"), throughOptions())
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	l.vec.group, l.vec.minPiece = 4<<10, 200
	writes := atomic.Int64{}
	l.vec.writev = func(fd uintptr, p [][]byte, pos int64, iov *iovecs) (int, error) {
		writes.Add(1)
		return pwritev(fd, p, pos, iov)
	}
	runConcurrentWorkload(t, l, 400, func(r *rand.Rand) int { return 1 + r.IntN(25) })
	if writes.Load() < 100 {
		t.Fatalf("only %d vectored writes", writes.Load())
	}
}
