package segmentlog

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/raftmq/raftmq/protocol"
)

// encodeFrames frames entries as a segment starting at index 1 stores them.
func encodeFrames(entries []protocol.Entry) []byte {
	size := 0
	for _, e := range entries {
		size += frameHeaderSize + len(e.Data)
	}
	out := make([]byte, 0, size)
	for _, e := range entries {
		frame := make([]byte, frameHeaderSize+len(e.Data))
		putFrameHeader(frame, len(e.Data), e.Index, e.Term, e.Type)
		copy(frame[frameHeaderSize:], e.Data)
		sealFrame(frame)
		out = append(out, frame...)
	}
	return out
}

// fuzzSeedEntries returns a few stamped entries from index 1, offset 0.
func fuzzSeedEntries(n int) []protocol.Entry {
	r := rand.New(rand.NewPCG(11, 11))
	m := newModel()
	for i := 0; i < n; i++ {
		m.append(randomEntry(r, uint64(i+1), 1, 80))
	}
	return m.entries
}

func fuzzSeeds() [][]byte {
	frames := encodeFrames(fuzzSeedEntries(4))
	torn := append(bytes.Clone(frames), frames[:40]...)
	flipped := bytes.Clone(frames)
	flipped[len(flipped)/2] ^= 4
	return [][]byte{frames, torn, flipped, frames[:frameHeaderSize], {}, make([]byte, 40)}
}

func FuzzDecodeFrame(f *testing.F) {
	for _, seed := range fuzzSeeds() {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		e, size, err := DecodeFrame(b, 1<<20)
		if err != nil {
			if !isCorrupt(err) {
				t.Fatalf("decode error is not ErrCorrupt: %v", err)
			}
			return
		}
		if size > len(b) || size != frameHeaderSize+len(e.Data) {
			t.Fatalf("size %d for %d bytes of data in %d bytes", size, len(e.Data), len(b))
		}
		if again := encodeFrames([]protocol.Entry{e}); !bytes.Equal(again, b[:size]) {
			t.Fatal("re-encoding a decoded frame gives different bytes")
		}
	})
}

// FuzzRecoveryScan treats arbitrary bytes as the active segment's data
// after a valid header. Recovery must either report corruption or open it,
// keep a dense readable prefix, make the cut stable across reopen, and
// accept appends after it.
func FuzzRecoveryScan(f *testing.F) {
	for _, seed := range fuzzSeeds() {
		f.Add(seed)
	}
	opts := smallOptions()
	f.Fuzz(func(t *testing.T, data []byte) {
		fs := vfs.NewMem()
		if err := fs.MkdirAll("log", 0o755); err != nil {
			t.Fatal(err)
		}
		var header [segmentHeaderSize]byte
		encodeSegmentHeader(header[:], &segmentHeader{firstIndex: 1})
		file, _ := fs.Create("log/"+segmentFileName(1), vfs.WriteCategoryUnspecified)
		file.Write(header[:])
		file.Write(bytes.Clone(data)) // MemFS may scramble written buffers
		file.Close()
		l, err := Open(fs, "log", opts)
		if isCorrupt(err) {
			return // damage that is not a torn write
		}
		if err != nil {
			t.Fatalf("recovery of the active segment failed: %v", err)
		}
		last := l.LastIndex()
		entries, err := l.Entries(1, last+1, 1<<40)
		if err != nil || uint64(len(entries)) != last {
			t.Fatalf("read %d of %d recovered entries: %v", len(entries), last, err)
		}
		recovered := encodeFrames(entries)
		if !bytes.Equal(recovered, data[:len(recovered)]) {
			t.Fatal("recovered entries differ from the bytes on disk")
		}
		next := protocol.Entry{Index: last + 1, Term: max(1, entriesLastTerm(entries)), Type: protocol.EntryNoop}
		if err := l.Append([]protocol.Entry{next}); err != nil {
			t.Fatalf("append after recovery: %v", err)
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		l, err = Open(fs, "log", opts)
		if err != nil {
			t.Fatalf("reopen: %v", err)
		}
		defer l.Close()
		if l.LastIndex() != last+1 {
			t.Fatalf("reopen holds %d entries, want %d", l.LastIndex(), last+1)
		}
	})
}

func entriesLastTerm(entries []protocol.Entry) uint64 {
	if len(entries) == 0 {
		return 0
	}
	return entries[len(entries)-1].Term
}

// TestWriteFuzzCorpus regenerates testdata/fuzz when SEGMENTLOG_WRITE_CORPUS
// is set; otherwise it checks the corpus is there.
func TestWriteFuzzCorpus(t *testing.T) {
	for _, target := range []string{"FuzzDecodeFrame", "FuzzRecoveryScan"} {
		dir := filepath.Join("testdata", "fuzz", target)
		if os.Getenv("SEGMENTLOG_WRITE_CORPUS") == "" {
			if names, err := os.ReadDir(dir); err != nil || len(names) == 0 {
				t.Fatalf("seed corpus %s missing: %v", dir, err)
			}
			continue
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for i, seed := range fuzzSeeds() {
			body := fmt.Sprintf("go test fuzz v1\n[]byte(%s)\n", strconv.Quote(string(seed)))
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("seed%d", i)), []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}
