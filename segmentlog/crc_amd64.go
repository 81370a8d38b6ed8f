package segmentlog

import "golang.org/x/sys/cpu"

// canFold reports whether fold512 may run: AVX-512 with VPCLMULQDQ.
var canFold = cpu.X86.HasAVX512F && cpu.X86.HasAVX512VPCLMULQDQ

// fold512 folds src, whose length is a multiple of 64 and at least 256, with
// init XORed into its first four bytes, into 64 bytes with the same CRC
// register (from zero) as src, and returns that register (not inverted).
// Unless dst is nil, it also copies src to dst (as long), in the same
// pass. k is foldConstants.
//
//go:noescape
func fold512(init uint32, dst, src []byte, k *[8]uint64) uint32
