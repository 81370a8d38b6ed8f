package segmentlog

import "golang.org/x/sys/cpu"

// canFold reports whether fold512 may run: AVX-512 with VPCLMULQDQ.
var canFold = cpu.X86.HasAVX512F && cpu.X86.HasAVX512VPCLMULQDQ

// fold512 folds b, whose length is a non-zero multiple of 256, with init
// XORed into its first four bytes, into 64 bytes with the same CRC
// register (from zero) as b, and returns that register (not inverted).
// k is foldConstants.
//
//go:noescape
func fold512(init uint32, b []byte, k *[8]uint64) uint32
