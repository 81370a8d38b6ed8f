//go:build !amd64

package segmentlog

const canFold = false

func fold512(init uint32, dst, src []byte, k *[8]uint64) uint32 { panic("unreachable") }
