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

// activeLog writes batches of record batch entries to a log with a single
// (active) segment, syncing after each batch, closes it, and returns the
// active segment's bytes, the frame positions by index, and the model.
func activeLog(t *testing.T, batches, perBatch int) ([]byte, map[uint64]int64, *model) {
	t.Helper()
	opts := smallOptions()
	opts.SegmentMaxBytes = 1 << 20
	fs := vfs.NewMem()
	l := mustOpen(t, fs, opts)
	r := rand.New(rand.NewPCG(21, 21))
	m := newModel()
	for range batches {
		var batch []protocol.Entry
		for range perBatch {
			index := m.lastIndex() + 1 + uint64(len(batch))
			batch = append(batch, protocol.Entry{Index: index, Term: 1, Type: protocol.EntryRecordBatch,
				Data: testBatch(2, 200+r.IntN(400), r.Uint64())})
		}
		if err := l.Append(batch); err != nil {
			t.Fatal(err)
		}
		m.append(batch...)
		if d, err := l.Sync(); err != nil || d != m.lastIndex() {
			t.Fatalf("sync = %d, %v", d, err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	f, err := fs.Open("log/" + segmentFileName(1))
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	positions := map[uint64]int64{}
	for pos := int64(segmentHeaderSize); pos < int64(len(b)); {
		e, size, err := DecodeFrame(b[pos:], opts.MaxEntryBytes)
		if err != nil {
			break
		}
		positions[e.Index] = pos
		pos += int64(size)
	}
	if len(positions) != batches*perBatch {
		t.Fatalf("decoded %d frames, wrote %d", len(positions), batches*perBatch)
	}
	return b, positions, m
}

func openSegmentBytes(t *testing.T, b []byte) (*Log, error) {
	t.Helper()
	opts := smallOptions()
	opts.SegmentMaxBytes = 1 << 20
	return Open(memWith(t, map[string][]byte{segmentFileName(1): b}), "log", opts)
}

func wantCorruptAt(t *testing.T, err error, pos int64) {
	t.Helper()
	var ce *CorruptError
	if !asCorrupt(err, &ce) {
		t.Fatalf("open = %v, want a *CorruptError", err)
	}
	if !strings.HasSuffix(ce.File, segmentFileName(1)) || ce.Pos != pos {
		t.Fatalf("error names %s at byte %d, want %s at byte %d", ce.File, ce.Pos, segmentFileName(1), pos)
	}
}

// TestActiveSegmentBitFlipIsCorruption: a bit flip in a synced entry of the
// active segment, anywhere (early, with synced entries after it, or in the
// last entry), is corruption: recovery must not cut the log there.
func TestActiveSegmentBitFlipIsCorruption(t *testing.T) {
	b, positions, m := activeLog(t, 4, 10)
	for _, index := range []uint64{1, 3, 15, 39, 40} {
		for _, at := range []int64{0, 5, 9, 20, 26, frameHeaderSize + 17} { // CRC, length, index, term, reserved, payload
			damaged := bytes.Clone(b)
			damaged[positions[index]+at] ^= 0x08
			l, err := openSegmentBytes(t, damaged)
			if err == nil {
				last := l.LastIndex()
				l.Close()
				t.Fatalf("flip at entry %d byte %d: log opened with last index %d of %d", index, at, last, m.lastIndex())
			}
			wantCorruptAt(t, err, positions[index])
		}
	}
}

// TestActiveSegmentLengthDamageIsCorruption: a damaged length that makes a
// frame run over the next frames, or past the end of the file, is not a
// torn tail when valid frames follow.
func TestActiveSegmentLengthDamageIsCorruption(t *testing.T) {
	b, positions, _ := activeLog(t, 2, 10)
	for _, length := range []uint32{1000, uint32(len(b))} {
		damaged := bytes.Clone(b)
		le.PutUint32(damaged[positions[5]+4:], length)
		_, err := openSegmentBytes(t, damaged)
		wantCorruptAt(t, err, positions[5])
	}
}

// TestTornTailIsCut: damage that a crash can cause to unsynced data is cut
// and the cut is stable: the file ending inside a frame, a frame whose
// sectors were never written (zeros), even when later frames survived.
func TestTornTailIsCut(t *testing.T) {
	b, positions, m := activeLog(t, 2, 10)
	cases := map[string]struct {
		damage func([]byte) []byte
		last   uint64
	}{
		"file ends inside a frame":  {func(b []byte) []byte { return b[:positions[17]+40] }, 16},
		"file ends inside a header": {func(b []byte) []byte { return b[:positions[17]+9] }, 16},
		"sector in a frame unwritten, later frames intact": {func(b []byte) []byte {
			sector := (positions[13] + 100) &^ (sectorSize - 1)
			clear(b[max(sector, positions[12]+1) : sector+sectorSize])
			return b
		}, 0},
		"header sector unwritten": {func(b []byte) []byte {
			sector := positions[15] &^ (sectorSize - 1)
			clear(b[max(sector, positions[14]) : sector+sectorSize])
			return b
		}, 0},
	}
	for name, c := range cases {
		damaged := c.damage(bytes.Clone(b))
		// The expected cut: the first frame that no longer decodes.
		want := uint64(0)
		for index := uint64(1); index <= m.lastIndex(); index++ {
			pos := positions[index]
			if pos >= int64(len(damaged)) {
				break
			}
			if _, _, err := DecodeFrame(damaged[pos:], 8<<10); err != nil {
				break
			}
			want = index
		}
		if c.last != 0 && want != c.last {
			t.Fatalf("%s: test setup: first damaged entry %d, expected %d", name, want+1, c.last+1)
		}
		if want == m.lastIndex() || want == 0 {
			t.Fatalf("%s: test setup damaged nothing or everything (last good %d)", name, want)
		}
		fs := memWith(t, map[string][]byte{segmentFileName(1): damaged})
		opts := smallOptions()
		opts.SegmentMaxBytes = 1 << 20
		for range 2 { // the cut is synced and stable across reopen
			l, err := Open(fs, "log", opts)
			if err != nil {
				t.Fatalf("%s: open: %v", name, err)
			}
			if l.LastIndex() != want {
				t.Fatalf("%s: recovered last index %d, want %d", name, l.LastIndex(), want)
			}
			p := m.clone()
			p.truncateAfter(want)
			if err := compare(l, p); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			l.Close()
		}
	}
}
