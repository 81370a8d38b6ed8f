package segmentlog

import (
	"bytes"
	"math/rand/v2"
	"testing"

	"github.com/raftmq/raftmq/protocol"
)

// TestCRC32CMatchesStandardLibrary checks crc32c, and the folding below
// its threshold, against protocol.UpdateCRC32C for every length up to 3
// KiB and longer ones, at every alignment of 0-7 and from random
// registers.
func TestCRC32CMatchesStandardLibrary(t *testing.T) {
	if !canFold {
		t.Log("no AVX-512 VPCLMULQDQ: crc32c is the standard library's")
	}
	r := rand.New(rand.NewPCG(1, 2))
	buf := make([]byte, 70<<10)
	for i := range buf {
		buf[i] = byte(r.Uint32())
	}
	check := func(crc uint32, b []byte) {
		t.Helper()
		if got, want := crc32c(crc, b), protocol.UpdateCRC32C(crc, b); got != want {
			t.Fatalf("length %d, register %#x: crc32c %#08x, standard library %#08x", len(b), crc, got, want)
		}
	}
	for n := 0; n <= 3<<10; n++ {
		check(r.Uint32(), buf[n%8:n%8+n])
		if n >= 256 && canFold {
			crc := r.Uint32()
			b := buf[n%8 : n%8+n]
			if got, want := crc32cFold(crc, b), protocol.UpdateCRC32C(crc, b); got != want {
				t.Fatalf("length %d, register %#x: folded %#08x, standard library %#08x", n, crc, got, want)
			}
		}
	}
	for _, n := range []int{4 << 10, 4<<10 + 1, 64<<10 + 32, 65 << 10, 70<<10 - 8} {
		for off := range 8 {
			check(0, buf[off:off+n])
			check(r.Uint32(), buf[off:off+n])
		}
	}
	// Bytes that fold to zero lanes, and all ones.
	zeros, ones := make([]byte, 4096), make([]byte, 4096)
	for i := range ones {
		ones[i] = 0xFF
	}
	check(0, zeros)
	check(^uint32(0), zeros)
	check(0, ones)
}

func FuzzCRC32C(f *testing.F) {
	f.Add(uint32(0), make([]byte, 600))
	f.Add(uint32(7), make([]byte, 1500))
	f.Fuzz(func(t *testing.T, crc uint32, b []byte) {
		want := protocol.UpdateCRC32C(crc, b)
		if got := crc32c(crc, b); got != want {
			t.Fatalf("length %d: crc32c %#08x, standard library %#08x", len(b), got, want)
		}
		if len(b) >= 256 && canFold {
			if got := crc32cFold(crc, b); got != want {
				t.Fatalf("length %d: folded %#08x, standard library %#08x", len(b), got, want)
			}
		}
	})
}

func BenchmarkCRC32C(b *testing.B) {
	for _, n := range []int{1 << 10, 2 << 10, 4 << 10, 8 << 10, 16 << 10, 64 << 10} {
		buf := make([]byte, n)
		b.Run(sizeName(n)+"/fold", func(b *testing.B) {
			b.SetBytes(int64(n))
			for b.Loop() {
				crc32c(0, buf)
			}
		})
		b.Run(sizeName(n)+"/stdlib", func(b *testing.B) {
			b.SetBytes(int64(n))
			for b.Loop() {
				protocol.UpdateCRC32C(0, buf)
			}
		})
	}
}

// TestCopySealFrame checks that copySealFrame copies the payload after
// the head exactly, leaves the head (stamped by Append) as it is, and
// stores the CRC32C of the frame, for lengths around the folding
// thresholds, with the head frameHead chooses and, where the fold can run,
// foldHead.
func TestCopySealFrame(t *testing.T) {
	r := rand.New(rand.NewPCG(4, 4))
	data := make([]byte, 70<<10)
	for i := range data {
		data[i] = byte(r.Uint32())
	}
	lengths := []int{0, 1, 63, 64, 65, 300, foldHead + 255, foldHead + 256, foldHead + 257, copyFoldMinBytes - 1, copyFoldMinBytes, copyFoldMinBytes + 1, 1 << 10, 3000}
	for n := foldHead + 256; n < foldHead+256+400; n += 13 {
		lengths = append(lengths, n) // every mix of 64-byte blocks and tail
	}
	for _, base := range []int{foldMinBytes + foldHead, 64 << 10} {
		for d := -2; d <= 2; d++ {
			lengths = append(lengths, base+d)
		}
	}
	for _, n := range lengths {
		heads := []int{frameHead(n)}
		if canFold && n >= foldHead+256 {
			heads = append(heads, foldHead)
		}
		for _, head := range heads {
			src := data[n%7 : n%7+n]
			frame := make([]byte, frameHeaderSize+n+1)
			frame[len(frame)-1] = 0xA5 // must stay
			frame = frame[:frameHeaderSize+n]
			putFrameHeader(frame, n, 9, 3, protocol.EntryControl)
			copy(frame[frameHeaderSize:], src[:head])
			for i := frameHeaderSize; i < frameHeaderSize+min(head, 8); i++ {
				frame[i] ^= 0xFF // a stamp: the head is not copied again
			}
			crc := copySealFrame(frame, src, head)
			payload := frame[frameHeaderSize:]
			if !bytes.Equal(payload[head:], src[head:]) || !bytes.Equal(payload[min(head, 8):head], src[min(head, 8):head]) {
				t.Fatalf("length %d, head %d: payload not copied", n, head)
			}
			for i := range min(head, 8) {
				if payload[i] != ^src[i] {
					t.Fatalf("length %d, head %d: stamped byte %d overwritten", n, head, i)
				}
			}
			if want := protocol.CRC32C(frame[4:]); crc != want || le.Uint32(frame) != want {
				t.Fatalf("length %d, head %d: CRC %#08x stored %#08x, want %#08x", n, head, crc, le.Uint32(frame), want)
			}
			if frame[:len(frame)+1][len(frame)] != 0xA5 {
				t.Fatalf("length %d, head %d: wrote past the frame", n, head)
			}
		}
	}
}
