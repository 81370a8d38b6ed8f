package segmentlog

import (
	"bytes"
	"math/rand/v2"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/raftmq/raftmq/protocol"
)

// throughOptions make Append calls of a few KiB write through (see
// Log.Append): a tail cache smaller than a call and small chunks.
func throughOptions() Options {
	o := smallOptions()
	o.SegmentMaxBytes = 64 << 10
	o.TailCacheBytes = 4 << 10
	o.WriteBufferBytes = 2 << 10
	return o
}

// TestWriteThroughMatchesModel appends calls of random sizes, many larger
// than the tail cache, with syncs, truncations and reads from the cache in
// between, and checks after each call that a call that wrote through left
// only its last TailCacheBytes of entries in the cache, that the log keeps
// a bounded number of chunks, that entries read before are unchanged, and
// at the end that the log and a reopened one hold exactly what was
// appended.
func TestWriteThroughMatchesModel(t *testing.T) {
	opts := throughOptions()
	fs := vfs.NewMem()
	l := mustOpen(t, fs, opts)
	defer func() { l.Close() }()
	r := rand.New(rand.NewPCG(21, 21))
	m := newModel()
	type kept struct {
		entries []protocol.Entry
		copies  [][]byte
	}
	var reads []kept
	term, throughCalls := uint64(1), 0
	for step := range 400 {
		switch {
		case step%37 == 36 && len(m.entries) > 0:
			cut := m.lastIndex() - uint64(r.IntN(min(len(m.entries), 20)))
			if err := l.TruncateAfter(cut); err != nil {
				t.Fatal(err)
			}
			m.truncateAfter(cut)
			term++
			continue
		case step%5 == 4:
			if _, err := l.Sync(); err != nil {
				t.Fatal(err)
			}
		}
		var call []protocol.Entry
		frameBytes := 0
		for range 1 + r.IntN(16) {
			e := randomEntry(r, m.lastIndex()+1+uint64(len(call)), term, 1500)
			call = append(call, e)
			frameBytes += frameHeaderSize + len(e.Data)
		}
		if err := l.Append(call); err != nil {
			t.Fatal(err)
		}
		m.append(call...)
		if frameBytes-opts.TailCacheBytes >= opts.WriteBufferBytes {
			throughCalls++
			// The entries before the call's last TailCacheBytes are not
			// cached.
			firstKept, rest := len(call), 0
			for firstKept > 0 && rest+frameHeaderSize+len(call[firstKept-1].Data) <= opts.TailCacheBytes {
				firstKept--
				rest += frameHeaderSize + len(call[firstKept].Data)
			}
			l.mu.RLock()
			start := l.tailStartLocked()
			l.mu.RUnlock()
			if min := call[0].Index + uint64(firstKept); start < min {
				t.Fatalf("step %d: the cache starts at %d, before the call's last TailCacheBytes at %d", step, start, min)
			}
		}
		if n := len(l.chunks) + len(l.freeChunks); n > opts.TailCacheBytes/opts.WriteBufferBytes+2+maxFreeChunks {
			t.Fatalf("step %d: the log holds %d chunks", step, n)
		}
		// Read the newest entries (from the cache, lending its chunks).
		lo := m.lastIndex() - min(m.lastIndex()-m.firstIndex, 2)
		got, err := l.Entries(lo, m.lastIndex()+1, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		k := kept{entries: got}
		for _, g := range got {
			k.copies = append(k.copies, bytes.Clone(g.Data))
		}
		reads = append(reads, k)
	}
	if throughCalls < 100 {
		t.Fatalf("only %d calls wrote through", throughCalls)
	}
	for i, k := range reads {
		for j, e := range k.entries {
			if !bytes.Equal(e.Data, k.copies[j]) {
				t.Fatalf("read %d: entry %d changed after it was returned", i, e.Index)
			}
		}
	}
	checkAgainst(t, l, m)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l = mustOpen(t, fs, opts)
	checkAgainst(t, l, m)
}

// TestWriteThroughConcurrent runs the concurrent readers and Sync against
// a writer whose calls often write through. Run it with -race.
func TestWriteThroughConcurrent(t *testing.T) {
	concurrentWorkload(t, throughOptions(), 400, func(r *rand.Rand) int { return 1 + r.IntN(25) })
}

// TestWriteThroughErrorInjection fails each file operation in turn of a
// workload whose calls often write through.
func TestWriteThroughErrorInjection(t *testing.T) {
	opts := throughOptions()
	opts.TailCacheBytes = 512
	opts.WriteBufferBytes = 1 << 10
	errorInjection(t, opts)
}

// TestWriteThroughReusesOneChunk checks that a call many chunks larger
// than the tail cache frames its written-through entries in one chunk, not
// one per WriteBufferBytes.
func TestWriteThroughReusesOneChunk(t *testing.T) {
	opts := throughOptions()
	opts.SegmentMaxBytes = 1 << 20
	l := mustOpen(t, vfs.NewMem(), opts)
	defer l.Close()
	r := rand.New(rand.NewPCG(8, 8))
	var call []protocol.Entry
	for i := range 200 {
		call = append(call, protocol.Entry{Index: uint64(i + 1), Term: 1, Type: protocol.EntryRecordBatch, Data: testBatch(2, 300+r.IntN(200), uint64(i))})
	}
	if err := l.Append(call); err != nil {
		t.Fatal(err)
	}
	// 200 entries of about 470 bytes are 46 chunks of 2 KiB; the cache
	// keeps the last 4 KiB of them.
	if l.chunkBase+uint64(len(l.chunks)) > 6 {
		t.Fatalf("the call used %d chunks", l.chunkBase+uint64(len(l.chunks)))
	}
	m := newModel()
	m.append(call...)
	checkAgainst(t, l, m)
}
