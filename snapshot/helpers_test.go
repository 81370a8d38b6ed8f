package snapshot

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
)

const testDir = "snaps"

// testBody returns size bytes of a consumer-state-like body: text lines of
// group offsets mixed with random bytes, so it compresses but not to nothing.
func testBody(seed uint64, size int) []byte {
	r := rand.New(rand.NewPCG(seed, 7))
	var b bytes.Buffer
	for b.Len() < size {
		if r.IntN(4) == 0 {
			for range 64 {
				b.WriteByte(byte(r.Uint32()))
			}
			continue
		}
		fmt.Fprintf(&b, "group-%04d partition=%03d offset=%d gen=%d\n", r.IntN(500), r.IntN(64), r.Uint64()>>20, r.IntN(9))
	}
	return b.Bytes()[:size]
}

func testMeta(index uint64) Meta {
	return Meta{
		Index:         index,
		Term:          index/10 + 1,
		Configuration: Configuration{Voters: []uint64{1, 2, 3}, Learners: []uint64{4}},
		NextOffset:    index * 7,
		Created:       time.Unix(1700000000, int64(index)),
		Extra:         []byte(fmt.Sprintf("group %d", index)),
	}
}

func mustOpenStore(t testing.TB, fs vfs.FS) *Store {
	t.Helper()
	s, err := OpenStore(fs, testDir)
	if err != nil {
		t.Fatalf("OpenStore: %v", err)
	}
	return s
}

// writeSnapshot writes body in uneven pieces and commits.
func writeSnapshot(t testing.TB, s *Store, meta Meta, body []byte) Info {
	t.Helper()
	info, err := tryWriteSnapshot(s, meta, body)
	if err != nil {
		t.Fatalf("write snapshot %d: %v", meta.Index, err)
	}
	return info
}

func tryWriteSnapshot(s *Store, meta Meta, body []byte) (Info, error) {
	w, err := s.Create(meta)
	if err != nil {
		return Info{}, err
	}
	for piece := 1; len(body) > 0; piece = piece*3 + 1 {
		n := min(piece, len(body))
		if _, err := w.Write(body[:n]); err != nil {
			w.Abort()
			return Info{}, err
		}
		body = body[n:]
	}
	return w.Commit()
}

// readSnapshot reads snapshot index's body to EOF.
func readSnapshot(s *Store, index uint64) ([]byte, Meta, error) {
	r, err := s.Open(index)
	if err != nil {
		return nil, Meta{}, err
	}
	defer r.Close()
	body, err := io.ReadAll(r)
	return body, r.Meta(), err
}

// checkSnapshot asserts that snapshot meta.Index reads back as meta and body.
func checkSnapshot(t testing.TB, s *Store, meta Meta, body []byte) {
	t.Helper()
	got, gotMeta, err := readSnapshot(s, meta.Index)
	if err != nil {
		t.Fatalf("read snapshot %d: %v", meta.Index, err)
	}
	if !bytes.Equal(got, body) {
		t.Fatalf("snapshot %d: body of %d bytes differs from the %d written", meta.Index, len(got), len(body))
	}
	if err := equalMeta(gotMeta, meta); err != nil {
		t.Fatalf("snapshot %d: %v", meta.Index, err)
	}
}

func equalMeta(got, want Meta) error {
	if fmt.Sprint(got.ID(), got.Configuration, got.NextOffset, got.Extra) != fmt.Sprint(want.ID(), want.Configuration, want.NextOffset, want.Extra) ||
		!got.Created.Equal(want.Created) {
		return fmt.Errorf("metadata %+v, want %+v", got, want)
	}
	return nil
}

func readFile(t testing.TB, fs vfs.FS, path string) []byte {
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

func writeFile(t testing.TB, fs vfs.FS, path string, b []byte) {
	t.Helper()
	f, err := fs.Create(path, vfs.WriteCategoryUnspecified)
	if err != nil {
		t.Fatal(err)
	}
	// A copy: MemFS scrambles written buffers under the race detector.
	if _, err := f.Write(append([]byte(nil), b...)); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// tempFiles lists the temporary files in the store directory.
func tempFiles(t testing.TB, fs vfs.FS) []string {
	t.Helper()
	names, err := fs.List(testDir)
	if err != nil {
		t.Fatal(err)
	}
	var tmp []string
	for _, n := range names {
		if strings.HasSuffix(n, tempSuffix) {
			tmp = append(tmp, n)
		}
	}
	return tmp
}

// streamAll moves snapshot index from src to a receiver on dst with no loss.
func streamAll(src, dst *Store, index uint64, maxMessage int) (Info, error) {
	sender, err := src.NewSender(index, maxMessage)
	if err != nil {
		return Info{}, err
	}
	defer sender.Close()
	recv, err := dst.NewReceiver(sender.ID(), sender.Size())
	if err != nil {
		return Info{}, err
	}
	var msg []byte
	for next := uint64(0); !recv.Done(); {
		msg, err = sender.AppendChunk(msg[:0], next)
		if err != nil {
			recv.Abandon()
			return Info{}, err
		}
		c, err := DecodeChunk(msg)
		if err != nil {
			recv.Abandon()
			return Info{}, err
		}
		ack, err := recv.Receive(c)
		if err != nil {
			return Info{}, err
		}
		if ack.Next <= next && !ack.Done {
			return Info{}, errors.New("receiver made no progress")
		}
		next = ack.Next
	}
	return recv.Info(), nil
}
