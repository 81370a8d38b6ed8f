package segmentlog

import (
	"math/bits"

	"github.com/raftmq/raftmq/protocol"
)

// Frame checksums. Every frame carries the CRC32C (Castagnoli) of its
// header and payload, the same checksum protocol.CRC32C computes. The
// standard library computes it with the SSE4.2 CRC32 instruction, three
// streams at once: about 25 GB/s on the benchmark machine, so the CRC of a
// 64 MiB Sync batch takes some 2.7 ms of the log's CPU. On processors with
// AVX-512 carry-less multiplication (VPCLMULQDQ), crc32c instead folds
// 256 bytes per step with four 512-bit accumulators, then 64 bytes per
// step with one (crc_amd64.s), runs the CRC32 instruction over the last
// 64 folded bytes, and leaves the bytes after the last full 64 to the
// standard library.
//
// Folding. Read as polynomials over GF(2), reflected (the first byte's
// low bit is the highest coefficient), a 16-byte lane L = A·x^64 + B (A
// its first 8 bytes) followed by N more bits of message contributes
// L·x^N to it, and
//
//	L·x^N = A·x^(N+64) + B·x^N ≡ A·(x^(N+64) mod P) + B·(x^N mod P)  (mod P)
//
// a value of at most 96 bits that takes the lane's place N bits further
// on. Two carry-less multiplications of 64 by 32 bits compute it; the
// product of two reflected 64-bit words lands one bit short of the
// reflected 128-bit lane, so the constants are x^(N+63) and x^(N-1) mod P.
// The CRC register's initial value is XORed into the first four bytes,
// which is what a CRC register starting at it amounts to.

// foldMinBytes is the length from which crc32c folds; below it the
// standard library is as fast or faster (on the benchmark machine: 1 KiB
// 50 against 67 ns, 4 KiB 204 against 176 ns, 64 KiB 2.6 against 1.4 us).
const foldMinBytes = 4 << 10

// castagnoliPoly is the Castagnoli polynomial without its x^32 term, not
// reflected: bit i is the coefficient of x^i.
const castagnoliPoly = 0x1EDC6F41

// xPowMod returns x^e mod P, not reflected.
func xPowMod(e int) uint32 {
	r := uint32(1)
	for range e {
		carry := r & 0x80000000
		r <<= 1
		if carry != 0 {
			r ^= castagnoliPoly
		}
	}
	return r
}

// foldConstant returns x^e mod P as a reflected 64-bit multiplier: the
// coefficient of x^d at bit 63-d.
func foldConstant(e int) uint64 { return uint64(bits.Reverse32(xPowMod(e))) << 32 }

// foldConstants holds, for folding a lane by 2048, 1536, 1024 and 512
// bits, the multiplier of its first 8 bytes and that of its last 8.
var foldConstants = func() (k [8]uint64) {
	for i, n := range []int{2048, 1536, 1024, 512} {
		k[2*i], k[2*i+1] = foldConstant(n+63), foldConstant(n-1)
	}
	return k
}()

// crc32c extends the Castagnoli checksum crc with b (as
// protocol.UpdateCRC32C).
func crc32c(crc uint32, b []byte) uint32 {
	if len(b) < foldMinBytes || !canFold {
		return protocol.UpdateCRC32C(crc, b)
	}
	return crc32cFold(crc, b)
}

// crc32cFold is crc32c by folding; b holds at least 256 bytes.
func crc32cFold(crc uint32, b []byte) uint32 {
	n := len(b) &^ 63
	// protocol.UpdateCRC32C's checksum is the register inverted, in and
	// out.
	crc = ^fold512(^crc, nil, b[:n], &foldConstants)
	return protocol.UpdateCRC32C(crc, b[n:])
}

// foldHead is how many payload bytes copySealFrame copies before the rest:
// the record batch header, which Append stamps before the frame is sealed.
const foldHead = protocol.BatchHeaderSize

// copySealFrame finishes a frame whose header and first head payload bytes
// are in place: it copies data[head:] into the payload and stores the
// frame's CRC, which it returns. Where crc32c folds, the copy and the
// checksum of the rest of the payload are one pass over it (fold512),
// and head is foldHead (frameHead); otherwise head must be len(data).
func copySealFrame(frame, data []byte, head int) uint32 {
	crc := protocol.UpdateCRC32C(0, frame[4:frameHeaderSize+head])
	if rest := data[head:]; len(rest) > 0 {
		dst := frame[frameHeaderSize+head:]
		n := len(rest) &^ 63
		crc = ^fold512(^crc, dst[:n], rest[:n], &foldConstants)
		copy(dst[n:], rest[n:])
		crc = protocol.UpdateCRC32C(crc, dst[n:])
	}
	le.PutUint32(frame, crc)
	return crc
}

// copyFoldMinBytes is the payload length from which copySealFrame copies
// and checksums in one pass: copying and folding 1 KiB took 42 ns on the
// benchmark machine, a copy and the standard library's CRC 57 ns; 768
// bytes 40 against 52 ns; 512 bytes the same.
const copyFoldMinBytes = 768

// frameHead returns how many payload bytes of an entry of n bytes Append
// copies (and stamps) before copySealFrame copies the rest.
func frameHead(n int) int {
	if canFold && n >= copyFoldMinBytes {
		return foldHead
	}
	return n
}
