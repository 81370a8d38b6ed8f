package snapshot

import (
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/raftmq/raftmq/protocol"
)

// damagedFile writes b as snapshot meta's file into a fresh store directory.
func damagedFile(t *testing.T, meta Meta, b []byte) vfs.FS {
	t.Helper()
	fs := vfs.NewMem()
	if err := fs.MkdirAll(testDir, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, fs, fs.PathJoin(testDir, fileName(meta.ID())), b)
	return fs
}

// detectDamage checks that every way of using the file in fs refuses it:
// the store does not list it, or Open, Read to EOF and Verify fail with
// ErrCorrupt (or ErrUnsupportedVersion). It returns the first error.
func detectDamage(t *testing.T, fs vfs.FS, index uint64) error {
	t.Helper()
	s := mustOpenStore(t, fs)
	if d := s.Damaged(); len(d) > 0 {
		if len(s.List()) != 0 {
			t.Fatal("a damaged snapshot is listed")
		}
		return d[0]
	}
	verifyErr := s.Verify(index)
	_, _, readErr := readSnapshot(mustOpenStore(t, fs), index)
	for _, err := range []error{verifyErr, readErr} {
		if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrUnsupportedVersion) {
			t.Fatalf("damage not detected: verify %v, read %v", verifyErr, readErr)
		}
	}
	if len(s.List()) != 0 || len(s.Damaged()) != 1 {
		t.Fatalf("after detection: listed %d, damaged %v", len(s.List()), s.Damaged())
	}
	return readErr
}

func TestBitFlipsDetected(t *testing.T) {
	meta, body := testMeta(42), testBody(9, 4000)
	mem := vfs.NewMem()
	info := writeSnapshot(t, mustOpenStore(t, mem), meta, body)
	good := readFile(t, mem, info.Path)
	t.Logf("file of %d bytes", len(good))
	for pos := range good {
		bits := []int{pos % 8}
		if pos < headerSize+64 || pos >= len(good)-trailerSize {
			bits = []int{0, 1, 2, 3, 4, 5, 6, 7}
		}
		for _, bit := range bits {
			b := append([]byte(nil), good...)
			b[pos] ^= 1 << bit
			err := detectDamage(t, damagedFile(t, meta, b), meta.Index)
			if pos == 0 && bit == 0 && !strings.Contains(err.Error(), fileName(meta.ID())) {
				t.Fatalf("error does not name the file: %v", err)
			}
		}
	}
}

func TestTruncationAndTrailingGarbageDetected(t *testing.T) {
	meta := testMeta(42)
	mem := vfs.NewMem()
	info := writeSnapshot(t, mustOpenStore(t, mem), meta, testBody(9, 3000))
	good := readFile(t, mem, info.Path)
	for size := range len(good) {
		detectDamage(t, damagedFile(t, meta, good[:size]), meta.Index)
	}
	detectDamage(t, damagedFile(t, meta, append(append([]byte(nil), good...), 0)), meta.Index)
}

func TestFileUnderAnotherNameDetected(t *testing.T) {
	mem := vfs.NewMem()
	info := writeSnapshot(t, mustOpenStore(t, mem), testMeta(42), []byte("body"))
	err := detectDamage(t, damagedFile(t, testMeta(43), readFile(t, mem, info.Path)), 43)
	if !errors.Is(err, ErrCorrupt) {
		t.Fatal(err)
	}
}

// reseal recomputes both CRCs of a snapshot file after an edit.
func reseal(b []byte) {
	metaLen := le.Uint32(b[12:])
	le.PutUint32(b[16:], protocol.UpdateCRC32C(protocol.CRC32C(b[:16]), b[headerSize:headerSize+metaLen]))
	le.PutUint32(b[len(b)-8:], protocol.CRC32C(b[:len(b)-8]))
}

func TestUnsupportedVersion(t *testing.T) {
	meta := testMeta(42)
	mem := vfs.NewMem()
	info := writeSnapshot(t, mustOpenStore(t, mem), meta, []byte("body"))
	b := readFile(t, mem, info.Path)
	le.PutUint16(b[8:], FormatVersion+1)
	reseal(b)
	err := detectDamage(t, damagedFile(t, meta, b), meta.Index)
	if !errors.Is(err, ErrUnsupportedVersion) || errors.Is(err, ErrCorrupt) {
		t.Fatalf("newer version: %v", err)
	}
}

// TestBodyCorruptionWithValidCRC: a body that does not decompress (written
// by a buggy writer, CRC valid) is corruption, and so is a length mismatch.
func TestBodyCorruptionWithValidCRC(t *testing.T) {
	meta := testMeta(42)
	mem := vfs.NewMem()
	info := writeSnapshot(t, mustOpenStore(t, mem), meta, testBody(1, 1000))
	good := readFile(t, mem, info.Path)
	metaLen := int(le.Uint32(good[12:]))

	garbled := append([]byte(nil), good...)
	for i := headerSize + metaLen + 4; i < len(good)-trailerSize; i++ {
		garbled[i] ^= 0x5a
	}
	reseal(garbled)
	wrongLen := append([]byte(nil), good...)
	le.PutUint64(wrongLen[len(wrongLen)-16:], 999)
	reseal(wrongLen)
	for _, b := range [][]byte{garbled, wrongLen} {
		s := mustOpenStore(t, damagedFile(t, meta, b))
		if err := s.Verify(meta.Index); err != nil {
			t.Fatalf("CRC is valid, verify: %v", err)
		}
		r, err := s.Open(meta.Index)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadAll(r); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("read: %v", err)
		}
		if len(s.List()) != 0 || len(s.Damaged()) != 1 {
			t.Fatal("a snapshot found damaged by a read is still listed")
		}
	}
}
