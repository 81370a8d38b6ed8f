package segmentlog

import (
	"bytes"
	"math/rand/v2"
	"testing"
	"unsafe"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/raftmq/raftmq/protocol"
)

// TestReadEntriesSurviveChunkReuse reads entries from the tail cache, then
// appends until the chunks they were framed in have left the cache (a
// chunk Entries lent is dropped there, not reused), and checks that what
// was returned did not change and that the log keeps a bounded number of
// chunks.
func TestReadEntriesSurviveChunkReuse(t *testing.T) {
	opts := smallOptions()
	opts.SegmentMaxBytes = 1 << 20
	opts.WriteBufferBytes = 2 << 10
	opts.TailCacheBytes = 6 << 10
	l := mustOpen(t, vfs.NewMem(), opts)
	defer l.Close()
	r := rand.New(rand.NewPCG(12, 12))
	m := newModel()
	type kept struct {
		entries []protocol.Entry
		copies  [][]byte
	}
	var reads []kept
	for step := range 400 {
		e := randomEntry(r, m.lastIndex()+1, 1, 300)
		if err := l.Append([]protocol.Entry{e}); err != nil {
			t.Fatal(err)
		}
		m.append(e)
		if step%3 == 0 {
			if _, err := l.Sync(); err != nil {
				t.Fatal(err)
			}
		}
		lo := max(m.firstIndex, m.lastIndex()) - min(m.lastIndex()-m.firstIndex, 3)
		got, err := l.Entries(lo, m.lastIndex()+1, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		k := kept{entries: got}
		for _, g := range got {
			k.copies = append(k.copies, bytes.Clone(g.Data))
		}
		reads = append(reads, k)
		if n := len(l.chunks) + len(l.freeChunks); n > opts.TailCacheBytes/opts.WriteBufferBytes+2+maxFreeChunks {
			t.Fatalf("step %d: the log holds %d chunks", step, n)
		}
	}
	if l.chunkBase == 0 {
		t.Fatal("no chunk was ever recycled")
	}
	for i, k := range reads {
		for j, e := range k.entries {
			if !bytes.Equal(e.Data, k.copies[j]) || !entryEqual(e, m.entries[e.Index-m.firstIndex]) {
				t.Fatalf("read %d: entry %d changed after its chunk was reused", i, e.Index)
			}
		}
	}
}

// TestEntriesAliasLentChunksThatAreNeverReused reads recent entries with
// Entries (which returns Data aliasing the append chunks) while appending,
// truncating and appending different entries at the same indexes, and
// checks that every returned entry still holds what it held when it was
// returned, that no lent chunk goes back to the free list, and that tail
// reads through Entries copy nothing (their Data point into a chunk).
func TestEntriesAliasLentChunksThatAreNeverReused(t *testing.T) {
	opts := smallOptions()
	opts.SegmentMaxBytes = 1 << 20
	opts.WriteBufferBytes = 2 << 10
	opts.TailCacheBytes = 6 << 10
	l := mustOpen(t, vfs.NewMem(), opts)
	defer l.Close()
	r := rand.New(rand.NewPCG(13, 13))
	m := newModel()
	type kept struct {
		entries []protocol.Entry
		copies  [][]byte
	}
	var reads []kept
	aliased := 0
	for step := range 600 {
		if step%50 == 49 && len(m.entries) > 10 {
			index := m.lastIndex() - uint64(r.IntN(8))
			if err := l.TruncateAfter(index); err != nil {
				t.Fatal(err)
			}
			m.truncateAfter(index)
		}
		e := randomEntry(r, m.lastIndex()+1, uint64(1+step/50), 300)
		if err := l.Append([]protocol.Entry{e}); err != nil {
			t.Fatal(err)
		}
		m.append(e)
		if step%3 == 0 {
			if _, err := l.Sync(); err != nil {
				t.Fatal(err)
			}
		}
		lo := m.lastIndex() - min(m.lastIndex()-m.firstIndex, uint64(r.IntN(6)))
		got, err := l.Entries(lo, m.lastIndex()+1, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		k := kept{entries: got}
		for _, g := range got {
			k.copies = append(k.copies, bytes.Clone(g.Data))
			if len(g.Data) > 0 && l.aliasesChunk(g.Data) {
				aliased++
			}
		}
		reads = append(reads, k)
		for _, c := range l.freeChunks {
			if c.lent.Load() {
				t.Fatalf("step %d: a lent chunk is on the free list", step)
			}
		}
	}
	if aliased == 0 {
		t.Fatal("no entry returned by Entries aliased an append chunk")
	}
	for i, k := range reads {
		for j, e := range k.entries {
			if !bytes.Equal(e.Data, k.copies[j]) {
				t.Fatalf("read %d: entry %d changed after it was returned", i, e.Index)
			}
		}
	}
	checkAgainst(t, l, m)
}

// TestUnreadLogReusesChunks: a log whose entries are not read through
// Entries (ReadBatches copies) keeps reusing a bounded set of chunks.
func TestUnreadLogReusesChunks(t *testing.T) {
	opts := smallOptions()
	opts.SegmentMaxBytes = 1 << 20
	l := mustOpen(t, vfs.NewMem(), opts)
	defer l.Close()
	r := rand.New(rand.NewPCG(14, 14))
	m := newModel()
	seen := map[*appendChunk]bool{}
	var buf []byte
	for step := range 600 {
		e := randomEntry(r, m.lastIndex()+1, 1, 300)
		if err := l.Append([]protocol.Entry{e}); err != nil {
			t.Fatal(err)
		}
		m.append(e)
		if _, err := l.Sync(); err != nil {
			t.Fatal(err)
		}
		if next := l.NextOffset(); next > 0 {
			var err error
			if buf, _, err = l.ReadBatches(buf[:0], next-1, m.lastIndex(), 1<<20); err != nil {
				t.Fatalf("step %d: %v", step, err)
			}
		}
		seen[l.chunk] = true
	}
	if limit := opts.TailCacheBytes/opts.WriteBufferBytes + 2 + maxFreeChunks; len(seen) > limit {
		t.Fatalf("the log used %d distinct chunks, want at most %d", len(seen), limit)
	}
	checkAgainst(t, l, m)
}

// aliasesChunk reports whether b lies inside one of the log's chunks.
func (l *Log) aliasesChunk(b []byte) bool {
	l.mu.RLock()
	defer l.mu.RUnlock()
	p := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	for _, c := range l.chunks {
		start := uintptr(unsafe.Pointer(unsafe.SliceData(c.buf)))
		if p >= start && p < start+uintptr(len(c.buf)) {
			return true
		}
	}
	return false
}
