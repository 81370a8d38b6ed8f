package snapshot

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
)

func FuzzDecodeChunk(f *testing.F) {
	f.Add(AppendChunk(nil, Chunk{ID: ID{5, 2}, Offset: 0, Total: 10, Data: []byte("abcd")}))
	f.Add(AppendChunk(nil, Chunk{ID: ID{5, 2}, Offset: 6, Total: 10, Done: true, Data: []byte("abcd")}))
	f.Add(AppendAck(nil, Ack{ID: ID{1, 1}, Next: 3}))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := DecodeChunk(b)
		if err != nil {
			if !errors.Is(err, ErrBadChunk) && !errors.Is(err, ErrUnsupportedVersion) {
				t.Fatalf("error of no class: %v", err)
			}
			return
		}
		end := c.Offset + uint64(len(c.Data))
		if len(c.Data) == 0 || end > c.Total || c.Done != (end == c.Total) {
			t.Fatalf("accepted an inconsistent chunk %+v", c)
		}
		if again := AppendChunk(nil, c); !bytes.Equal(again, b) {
			t.Fatalf("re-encoding differs:\n%x\n%x", again, b)
		}
	})
}

func FuzzDecodeAck(f *testing.F) {
	f.Add(AppendAck(nil, Ack{ID: ID{5, 2}, Next: 77}))
	f.Add(AppendAck(nil, Ack{ID: ID{5, 2}, Next: 100, Done: true}))
	f.Add(AppendChunk(nil, Chunk{ID: ID{5, 2}, Offset: 0, Total: 1, Done: true, Data: []byte("a")}))
	f.Fuzz(func(t *testing.T, b []byte) {
		a, err := DecodeAck(b)
		if err != nil {
			if !errors.Is(err, ErrBadChunk) && !errors.Is(err, ErrUnsupportedVersion) {
				t.Fatalf("error of no class: %v", err)
			}
			return
		}
		if again := AppendAck(nil, a); !bytes.Equal(again, b) {
			t.Fatalf("re-encoding differs:\n%x\n%x", again, b)
		}
	})
}

func FuzzDecodeMeta(f *testing.F) {
	f.Add(appendMeta(nil, testMeta(3)))
	f.Add(appendMeta(nil, Meta{Index: 1}))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decodeMeta(b)
		if err != nil {
			return
		}
		again, err := decodeMeta(appendMeta(nil, m))
		if err != nil {
			t.Fatalf("re-encoded metadata does not decode: %v", err)
		}
		if err := equalMeta(again, m); err != nil {
			t.Fatal(err)
		}
	})
}

// FuzzSnapshotFile feeds arbitrary bytes as a snapshot file to the store
// and, in chunks, to a receiver. Neither may panic; they must agree on
// whether the file is valid; errors must be of the corruption class.
func FuzzSnapshotFile(f *testing.F) {
	for _, body := range [][]byte{nil, []byte("offsets"), testBody(1, 3000)} {
		mem := vfs.NewMem()
		meta := testMeta(1)
		meta.Index, meta.Term = 1, 1
		info := writeSnapshot(f, mustOpenStore(f, mem), meta, body)
		f.Add(readFile(f, mem, info.Path), uint16(100))
	}
	f.Fuzz(func(t *testing.T, data []byte, chunkLen uint16) {
		id := ID{Index: 1, Term: 1}
		fs := vfs.NewMem()
		if err := fs.MkdirAll(testDir, 0o755); err != nil {
			t.Fatal(err)
		}
		writeFile(t, fs, fs.PathJoin(testDir, fileName(id)), data)
		s := mustOpenStore(t, fs)
		for _, err := range s.Damaged() {
			checkDamageClass(t, err)
		}
		storeOK := false
		if _, err := s.Get(1); err == nil {
			err = s.Verify(1)
			if err != nil {
				checkDamageClass(t, err)
			}
			storeOK = err == nil
		}
		if storeOK {
			if r, err := s.Open(1); err != nil {
				checkDamageClass(t, err)
			} else {
				if _, err := io.Copy(io.Discard, r); err != nil {
					checkDamageClass(t, err)
				}
				r.Close()
			}
		}
		recvOK := receiveBytes(t, data, id, int(chunkLen)+1)
		if storeOK != recvOK {
			t.Fatalf("store accepts the file: %t, receiver: %t", storeOK, recvOK)
		}
	})
}

func checkDamageClass(t *testing.T, err error) {
	t.Helper()
	if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrUnsupportedVersion) {
		t.Fatalf("error of no class: %v", err)
	}
}

// receiveBytes streams data as snapshot id in chunks of chunkLen bytes and
// reports whether the receiver installed it byte for byte.
func receiveBytes(t *testing.T, data []byte, id ID, chunkLen int) bool {
	fs := vfs.NewMem()
	s := mustOpenStore(t, fs)
	recv, err := s.NewReceiver(id, uint64(len(data)))
	if err != nil {
		return false
	}
	for offset := 0; offset < len(data); offset += chunkLen {
		end := min(offset+chunkLen, len(data))
		c := Chunk{ID: id, Offset: uint64(offset), Total: uint64(len(data)), Done: end == len(data),
			Data: append([]byte(nil), data[offset:end]...)}
		if _, err := recv.Receive(c); err != nil {
			checkDamageClass(t, err)
			if tmp := tempFiles(t, fs); len(tmp) != 0 {
				t.Fatalf("failed receiver left %v", tmp)
			}
			return false
		}
	}
	if !recv.Done() {
		t.Fatal("receiver took every byte but is not done")
	}
	if !bytes.Equal(readFile(t, fs, recv.Info().Path), data) {
		t.Fatal("installed file differs from the bytes sent")
	}
	return true
}
