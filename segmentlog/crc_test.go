package segmentlog

import (
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
