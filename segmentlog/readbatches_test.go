package segmentlog

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/raftmq/raftmq/protocol"
)

// expectBatches is ReadBatches computed from the model: the batches from
// the one holding from on, up to index maxIndex and maxBytes (at least one).
func expectBatches(m *model, from, maxIndex uint64, maxBytes int) ([]byte, uint64) {
	var out []byte
	next, started := from, false
	for i, e := range m.entries {
		if e.Type != protocol.EntryRecordBatch {
			continue
		}
		h, _ := protocol.ReadBatchHeader(e.Data)
		end := m.offsets[i] + uint64(h.RecordCount)
		if !started && end <= from {
			continue
		}
		started = true
		if e.Index > maxIndex || (len(out) > 0 && len(out)+len(e.Data) > maxBytes) {
			break
		}
		out = append(out, e.Data...)
		next = end
	}
	return out, next
}

// TestReadBatchesReusedWindows reads random ranges from disk (and across
// into the tail cache), large and small reads interleaved, from two
// goroutines sharing the pooled read windows, into reused destination
// buffers with a prefix. Every result is checked against the model when it
// is returned and again after later reads, so bytes of one read leaking
// into another (a window reused while a result still aliases it, stale
// bytes past a shorter read) fail the test.
func TestReadBatchesReusedWindows(t *testing.T) {
	for _, cacheBytes := range []int{0, 4 << 10} {
		t.Run(fmt.Sprintf("cache=%d", cacheBytes), func(t *testing.T) {
			opts := smallOptions()
			opts.TailCacheBytes = cacheBytes
			l := mustOpen(t, vfs.NewMem(), opts)
			defer l.Close()
			m := newModel()
			r := rand.New(rand.NewPCG(11, uint64(cacheBytes)))
			for i := uint64(1); i <= 400; i++ {
				e := randomEntry(r, i, 1+i/100, 1500)
				if err := l.Append([]protocol.Entry{e}); err != nil {
					t.Fatal(err)
				}
				m.append(e)
			}
			if _, err := l.Sync(); err != nil {
				t.Fatal(err)
			}
			if len(l.segments) < 4 {
				t.Fatalf("want several segments, got %d", len(l.segments))
			}
			end := m.nextOffset()
			prefix := []byte("prefix-")
			var wg sync.WaitGroup
			errs := make(chan error, 2)
			for g := range 2 {
				wg.Go(func() {
					r := rand.New(rand.NewPCG(uint64(g), 99))
					type result struct {
						out, want []byte
						next      uint64
					}
					var kept []result
					bufs := [][]byte{make([]byte, 0, 64<<10), nil}
					for i := range 600 {
						from := r.Uint64N(end)
						maxIndex := m.lastIndex() - r.Uint64N(uint64(len(m.entries))/4)
						maxBytes := 1 + r.IntN(256)
						if i%2 == 0 {
							maxBytes = 8<<10 + r.IntN(32<<10)
						}
						dst := append(bufs[i%2][:0], prefix...)
						out, next, err := l.ReadBatches(dst, from, maxIndex, maxBytes)
						if err != nil {
							errs <- fmt.Errorf("ReadBatches(%d, %d, %d): %w", from, maxIndex, maxBytes, err)
							return
						}
						want, wantNext := expectBatches(m, from, maxIndex, maxBytes)
						want = append(bytes.Clone(prefix), want...)
						if !bytes.Equal(out, want) || next != wantNext {
							errs <- fmt.Errorf("ReadBatches(%d, %d, %d) = %d bytes, next %d; want %d bytes, next %d",
								from, maxIndex, maxBytes, len(out), next, len(want), wantNext)
							return
						}
						bufs[i%2] = out
						if i%50 == 0 {
							kept = append(kept, result{out: bytes.Clone(out), want: want, next: next})
							kept = append(kept, result{out: out, want: bytes.Clone(want), next: next})
							bufs[i%2] = nil // out is kept: read into a new buffer
						}
					}
					for _, k := range kept {
						if !bytes.Equal(k.out, k.want) {
							errs <- fmt.Errorf("an earlier result changed after later reads")
							return
						}
					}
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
		})
	}
}

// TestReadBatchesAllocs checks that a steady reader of the disk allocates
// (close to) nothing per call: the read window is pooled.
func TestReadBatchesAllocs(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("allocation count (the race detector makes sync.Pool drop items)")
	}
	opts := smallOptions()
	opts.TailCacheBytes = 0
	l := mustOpen(t, vfs.NewMem(), opts)
	defer l.Close()
	for i := uint64(1); i <= 200; i++ {
		e := protocol.Entry{Index: i, Term: 1, Type: protocol.EntryRecordBatch, Data: testBatch(2, 500, i)}
		if err := l.Append([]protocol.Entry{e}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := l.Sync(); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 0, 64<<10)
	next, end := l.FirstOffset(), l.NextOffset()
	read := func() {
		out, after, err := l.ReadBatches(buf[:0], next, l.LastIndex(), 8<<10)
		if err != nil || len(out) == 0 {
			t.Fatal(len(out), err)
		}
		next = after
		if next >= end {
			next = l.FirstOffset()
		}
	}
	read()
	// The pool may drop a window at a GC; a fresh one is one allocation.
	if a := testing.AllocsPerRun(100, read); a > 0.5 {
		t.Fatalf("ReadBatches from disk allocates %.2f times per call", a)
	}
}

// TestReadBatchesAfterDeleteBefore reads from disk after the oldest
// segments are deleted: below FirstOffset is ErrOutOfRange, from it on the
// model's batches come back.
func TestReadBatchesAfterDeleteBefore(t *testing.T) {
	opts := smallOptions()
	opts.TailCacheBytes = 0
	l := mustOpen(t, vfs.NewMem(), opts)
	defer l.Close()
	m := newModel()
	for i := uint64(1); i <= 120; i++ {
		e := protocol.Entry{Index: i, Term: 1, Type: protocol.EntryRecordBatch, Data: testBatch(3, 700, i)}
		if i%7 == 0 {
			e = protocol.Entry{Index: i, Term: 1, Type: protocol.EntryNoop}
		}
		if err := l.Append([]protocol.Entry{e}); err != nil {
			t.Fatal(err)
		}
		m.append(e)
	}
	if _, err := l.Sync(); err != nil {
		t.Fatal(err)
	}
	if n, err := l.DeleteBefore(60); err != nil || n == 0 {
		t.Fatalf("DeleteBefore(60) = %d, %v", n, err)
	}
	first := l.FirstOffset()
	if first == 0 {
		t.Fatal("FirstOffset still 0 after deleting segments")
	}
	if _, _, err := l.ReadBatches(nil, first-1, l.LastIndex(), 1<<20); !errors.Is(err, ErrOutOfRange) {
		t.Fatalf("ReadBatches below FirstOffset: %v, want ErrOutOfRange", err)
	}
	for from := first; from < m.nextOffset(); from += 2 {
		out, next, err := l.ReadBatches(nil, from, l.LastIndex(), 3000)
		want, wantNext := expectBatches(m, from, l.LastIndex(), 3000)
		if err != nil || !bytes.Equal(out, want) || next != wantNext {
			t.Fatalf("ReadBatches(%d) = %d bytes, next %d, %v; want %d bytes, next %d", from, len(out), next, err, len(want), wantNext)
		}
	}
}
