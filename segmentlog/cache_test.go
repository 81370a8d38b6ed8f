package segmentlog

import (
	"bytes"
	"math/rand/v2"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/raftmq/raftmq/protocol"
)

// TestReadEntriesSurviveChunkReuse reads entries from the tail cache, then
// appends until the chunks they were framed in have been reused, and checks
// that what was returned did not change and that the log keeps a bounded
// number of chunks.
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
