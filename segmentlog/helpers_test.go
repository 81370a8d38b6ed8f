package segmentlog

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/raftmq/raftmq/protocol"
)

// testBatch returns a sealed record batch of recordCount records with a
// payload of payloadSize bytes, base offset 0.
func testBatch(recordCount uint32, payloadSize int, seed uint64) []byte {
	b := make([]byte, protocol.BatchHeaderSize+payloadSize)
	protocol.PutBatchHeader(b, &protocol.BatchHeader{
		Magic: protocol.BatchMagic, Codec: protocol.CodecNone, RecordCount: recordCount,
		FirstTimestamp: int64(seed), MaxTimestamp: int64(seed) + 5, ProducerID: -1,
	})
	r := rand.New(rand.NewPCG(seed, 7))
	for i := protocol.BatchHeaderSize; i < len(b); i++ {
		b[i] = byte(r.Uint32())
	}
	protocol.SealBatch(b)
	return b
}

// randomEntry returns an entry at index of a random type and size.
func randomEntry(r *rand.Rand, index, term uint64, maxPayload int) protocol.Entry {
	e := protocol.Entry{Index: index, Term: term}
	switch r.IntN(6) {
	case 0:
		e.Type = protocol.EntryNoop
	case 1:
		e.Type = protocol.EntryControl
		e.Data = make([]byte, r.IntN(maxPayload+1))
		for i := range e.Data {
			e.Data[i] = byte(r.Uint32())
		}
	default:
		e.Type = protocol.EntryRecordBatch
		e.Data = testBatch(uint32(1+r.IntN(5)), r.IntN(maxPayload+1), r.Uint64())
	}
	return e
}

// model is the expected content of a log: entries as stamped by the log.
type model struct {
	firstIndex uint64
	prevTerm   uint64
	firstOff   uint64
	entries    []protocol.Entry // entries[i].Index == firstIndex+i, Data stamped
	offsets    []uint64         // base offset (next offset before) per entry
}

func newModel() *model { return &model{firstIndex: 1} }

func (m *model) lastIndex() uint64 { return m.firstIndex + uint64(len(m.entries)) - 1 }

func (m *model) nextOffset() uint64 {
	if len(m.entries) == 0 {
		return m.firstOff
	}
	e := m.entries[len(m.entries)-1]
	off := m.offsets[len(m.offsets)-1]
	if e.Type == protocol.EntryRecordBatch {
		h, _ := protocol.ReadBatchHeader(e.Data)
		off += uint64(h.RecordCount)
	}
	return off
}

// append records entries as the log will store them (stamped copies).
func (m *model) append(entries ...protocol.Entry) {
	for _, e := range entries {
		off := m.nextOffset()
		c := e
		if e.Type == protocol.EntryRecordBatch {
			c.Data = bytes.Clone(e.Data)
			h, _ := protocol.ReadBatchHeader(c.Data)
			protocol.StampBatch(c.Data, off, h.AppendTime)
		}
		m.entries = append(m.entries, c)
		m.offsets = append(m.offsets, off)
	}
}

func (m *model) truncateAfter(index uint64) {
	n := int(index + 1 - m.firstIndex)
	m.entries, m.offsets = m.entries[:n], m.offsets[:n]
}

func (m *model) clone() *model {
	return &model{firstIndex: m.firstIndex, prevTerm: m.prevTerm, firstOff: m.firstOff,
		entries: append([]protocol.Entry(nil), m.entries...), offsets: append([]uint64(nil), m.offsets...)}
}

func entryEqual(a, b protocol.Entry) bool {
	return a.Index == b.Index && a.Term == b.Term && a.Type == b.Type && bytes.Equal(a.Data, b.Data)
}

// checkAgainst verifies that l holds exactly m's entries, byte-identical.
func checkAgainst(t testing.TB, l *Log, m *model) {
	t.Helper()
	if err := compare(l, m); err != nil {
		t.Fatal(err)
	}
}

func compare(l *Log, m *model) error {
	if l.FirstIndex() != m.firstIndex || l.LastIndex() != m.lastIndex() {
		return fmt.Errorf("log holds [%d, %d], model [%d, %d]", l.FirstIndex(), l.LastIndex(), m.firstIndex, m.lastIndex())
	}
	if got := l.NextOffset(); got != m.nextOffset() {
		return fmt.Errorf("NextOffset %d, model %d", got, m.nextOffset())
	}
	if term, err := l.Term(m.firstIndex - 1); err != nil || term != m.prevTerm {
		return fmt.Errorf("Term(first-1) = %d, %v; model %d", term, err, m.prevTerm)
	}
	got, err := l.Entries(m.firstIndex, m.lastIndex()+1, 1<<62)
	if err != nil {
		return fmt.Errorf("Entries: %w", err)
	}
	if len(got) != len(m.entries) {
		return fmt.Errorf("Entries returned %d entries, model has %d", len(got), len(m.entries))
	}
	for i := range got {
		if !entryEqual(got[i], m.entries[i]) {
			return fmt.Errorf("entry %d differs: got %v/%v/%d bytes, want %v/%v/%d bytes", m.entries[i].Index,
				got[i].Term, got[i].Type, len(got[i].Data), m.entries[i].Term, m.entries[i].Type, len(m.entries[i].Data))
		}
		term, err := l.Term(m.entries[i].Index)
		if err != nil || term != m.entries[i].Term {
			return fmt.Errorf("Term(%d) = %d, %v; want %d", m.entries[i].Index, term, err, m.entries[i].Term)
		}
		if m.entries[i].Type == protocol.EntryRecordBatch {
			off, err := l.OffsetOfIndex(m.entries[i].Index)
			if err != nil || off != m.offsets[i] {
				return fmt.Errorf("OffsetOfIndex(%d) = %d, %v; want %d", m.entries[i].Index, off, err, m.offsets[i])
			}
			idx, err := l.IndexOfOffset(m.offsets[i])
			if err != nil || idx != m.entries[i].Index {
				return fmt.Errorf("IndexOfOffset(%d) = %d, %v; want %d", m.offsets[i], idx, err, m.entries[i].Index)
			}
		}
	}
	return nil
}

func smallOptions() Options {
	o := DefaultOptions()
	o.SegmentMaxBytes = 16 << 10
	o.IndexIntervalBytes = 512
	o.TailCacheBytes = 4 << 10
	o.WriteBufferBytes = 2 << 10
	o.MaxEntryBytes = 8 << 10
	// Preallocated to the segment size (capped): on the in-memory file
	// system every segment is written with zeros to 16 KiB at creation,
	// so every test runs over zero tails.
	o.PreallocateBytes = 4 << 20
	o.Now = fakeClock(time.UnixMilli(1_700_000_000_000))
	return o
}

func fakeClock(t time.Time) func() time.Time {
	return func() time.Time { return t }
}

func mustOpen(t testing.TB, fs vfs.FS, opts Options) *Log {
	t.Helper()
	l, err := Open(fs, "log", opts)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	return l
}

func isCorrupt(err error) bool { return errors.Is(err, ErrCorrupt) }

func asCorrupt(err error, target **CorruptError) bool { return errors.As(err, target) }
