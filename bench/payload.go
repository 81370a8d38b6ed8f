package bench

import (
	"encoding/binary"
	"math/rand/v2"
)

// Every record value the harness publishes starts with a 16-byte header:
//
//	uint64 id         producer << sequenceBits | sequence (little-endian)
//	int64  intended   nanoseconds since the run's clock base: when the
//	                  record was meant to be sent (fixed-rate mode) or was
//	                  handed to the client (as-fast-as-possible mode)
//
// and is padded to the record size with letters and digits (compressible
// roughly as text is). The id lets the ledger check that every
// acknowledgement and every delivery belongs to exactly one published
// record; the timestamp gives latency without a per-record map.
const payloadHeaderSize = 16

const (
	producerBits = 16
	sequenceBits = 64 - producerBits
	sequenceMask = 1<<sequenceBits - 1
)

func recordID(producer int, sequence uint64) uint64 {
	return uint64(producer)<<sequenceBits | sequence&sequenceMask
}

func splitRecordID(id uint64) (producer int, sequence uint64) {
	return int(id >> sequenceBits), id & sequenceMask
}

// writePayloadHeader stamps id and intended time into p (len >= 16).
func writePayloadHeader(p []byte, id uint64, intendedNanos int64) {
	binary.LittleEndian.PutUint64(p[0:8], id)
	binary.LittleEndian.PutUint64(p[8:16], uint64(intendedNanos))
}

// readPayloadHeader returns the id and intended time of a record, ok false
// when it is too short to be one of ours.
func readPayloadHeader(p []byte) (id uint64, intendedNanos int64, ok bool) {
	if len(p) < payloadHeaderSize {
		return 0, 0, false
	}
	return binary.LittleEndian.Uint64(p[0:8]), int64(binary.LittleEndian.Uint64(p[8:16])), true
}

const fillerAlphabet = "abcdefghijklmnopqrstuvwxyz0123456789"

// newPayloadBuffers returns n buffers of size bytes with seeded filler after
// the header.
func newPayloadBuffers(n, size int, seed uint64) [][]byte {
	random := rand.New(rand.NewPCG(seed, 0x72616674))
	buffers := make([][]byte, n)
	for i := range buffers {
		b := make([]byte, size)
		for j := payloadHeaderSize; j < size; j++ {
			b[j] = fillerAlphabet[random.IntN(len(fillerAlphabet))]
		}
		buffers[i] = b
	}
	return buffers
}
