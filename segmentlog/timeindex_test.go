package segmentlog

import (
	"math/rand/v2"
	"os"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/raftmq/raftmq/protocol"
)

// timedBatch returns a record batch of recordCount records whose max
// timestamp is maxTime.
func timedBatch(r *rand.Rand, recordCount uint32, maxTime int64) []byte {
	b := make([]byte, protocol.BatchHeaderSize+r.IntN(600))
	protocol.PutBatchHeader(b, &protocol.BatchHeader{
		Magic: protocol.BatchMagic, RecordCount: recordCount,
		FirstTimestamp: maxTime - 10, MaxTimestamp: maxTime, ProducerID: -1,
	})
	for i := protocol.BatchHeaderSize; i < len(b); i++ {
		b[i] = byte(r.Uint32())
	}
	protocol.SealBatch(b)
	return b
}

// wantOffsetForTimestamp is the definition: the base offset of the first
// batch whose max timestamp is at least ts, else the next offset.
func wantOffsetForTimestamp(m *model, ts int64) uint64 {
	for i, e := range m.entries {
		if e.Type != protocol.EntryRecordBatch {
			continue
		}
		if h, _ := protocol.ReadBatchHeader(e.Data); h.MaxTimestamp >= ts {
			return m.offsets[i]
		}
	}
	return m.nextOffset()
}

func TestOffsetForTimestamp(t *testing.T) {
	opts := smallOptions()
	opts.TailCacheBytes = 2 << 10 // most entries are read from disk
	fs := vfs.NewMem()
	l := mustOpen(t, fs, opts)
	r := rand.New(rand.NewPCG(6, 6))
	m := newModel()
	clock := int64(1_700_000_000_000)
	for range 400 {
		e := protocol.Entry{Index: m.lastIndex() + 1, Term: 1, Type: protocol.EntryRecordBatch}
		switch r.IntN(10) {
		case 0:
			e.Type, e.Data = protocol.EntryControl, []byte("control")
		case 1: // a producer clock running behind
			e.Data = timedBatch(r, 1+uint32(r.IntN(4)), clock-int64(r.IntN(5000)))
		default:
			clock += int64(r.IntN(100))
			e.Data = timedBatch(r, 1+uint32(r.IntN(4)), clock)
		}
		if err := l.Append([]protocol.Entry{e}); err != nil {
			t.Fatal(err)
		}
		m.append(e)
	}
	if l.SegmentCount() < 4 {
		t.Fatalf("want several segments, have %d", l.SegmentCount())
	}
	check := func(what string) {
		t.Helper()
		for _, ts := range []int64{0, 1_700_000_000_000, clock - 5000, clock - 1, clock, clock + 1} {
			got, err := l.OffsetForTimestamp(ts)
			if want := wantOffsetForTimestamp(m, ts); err != nil || got != want {
				t.Fatalf("%s: OffsetForTimestamp(%d) = %d, %v; want %d", what, ts, got, err, want)
			}
		}
		for range 300 {
			ts := 1_700_000_000_000 + r.Int64N(clock-1_700_000_000_000+10)
			got, err := l.OffsetForTimestamp(ts)
			if want := wantOffsetForTimestamp(m, ts); err != nil || got != want {
				t.Fatalf("%s: OffsetForTimestamp(%d) = %d, %v; want %d", what, ts, got, err, want)
			}
		}
	}
	check("open log")
	cut := m.lastIndex() - 30
	if err := l.TruncateAfter(cut); err != nil {
		t.Fatal(err)
	}
	m.truncateAfter(cut)
	check("after truncation")
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l = mustOpen(t, fs, opts)
	check("reopened, indexes from files")
	l.Close()
	names, _ := fs.List("log")
	for _, name := range names {
		if _, ok := parseSegmentName(name, indexSuffix); ok {
			if err := fs.Remove("log/" + name); err != nil && !os.IsNotExist(err) {
				t.Fatal(err)
			}
		}
	}
	l = mustOpen(t, fs, opts)
	defer l.Close()
	check("reopened, indexes rebuilt")
}
