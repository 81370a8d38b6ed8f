package segmentlog

import (
	"encoding/binary"
	"math/rand/v2"
	"testing"

	"github.com/raftmq/raftmq/protocol"
)

// TestReadBatchInfoMatchesProtocol checks readBatchInfo against
// protocol.ReadBatchHeader on valid headers, headers with each checked
// field damaged, random bytes and short buffers: both must accept the
// same ones and read the same values.
func TestReadBatchInfoMatchesProtocol(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 3))
	check := func(b []byte) {
		t.Helper()
		want, werr := protocol.ReadBatchHeader(b)
		got, err := readBatchInfo(b)
		if (err == nil) != (werr == nil) {
			t.Fatalf("readBatchInfo error %v, ReadBatchHeader error %v (header %x)", err, werr, b[:min(len(b), protocol.BatchHeaderSize)])
		}
		if err == nil && (got.recordCount != want.RecordCount || got.appendTime != want.AppendTime || got.maxTime != want.MaxTimestamp) {
			t.Fatalf("readBatchInfo %+v, ReadBatchHeader %+v", got, want)
		}
	}
	accepted := 0
	for range 20000 {
		h := protocol.BatchHeader{
			BaseOffset: r.Uint64(), AppendTime: int64(r.Uint64()), Length: uint32(r.IntN(200)),
			Magic: protocol.BatchMagic, Codec: protocol.Codec(r.IntN(8)), RecordCount: uint32(r.IntN(3)),
			FirstTimestamp: int64(r.Uint64()), MaxTimestamp: int64(r.Uint64()), ProducerID: int64(r.Uint64()),
			ProducerEpoch: int16(r.Uint32()), BaseSequence: int32(r.Uint32()),
		}
		if r.IntN(4) == 0 {
			h.Magic = byte(r.Uint32())
		}
		b := make([]byte, protocol.BatchHeaderSize+r.IntN(32))
		protocol.PutBatchHeader(b, &h)
		if r.IntN(4) == 0 {
			b[r.IntN(protocol.BatchHeaderSize)] ^= byte(1 + r.IntN(255))
		}
		if r.IntN(8) == 0 {
			binary.LittleEndian.PutUint32(b[batchLengthPos:], r.Uint32())
		}
		if _, err := protocol.ReadBatchHeader(b); err == nil {
			accepted++
		}
		check(b)
		check(b[:r.IntN(protocol.BatchHeaderSize)])
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		check(b)
	}
	if accepted < 1000 {
		t.Fatalf("only %d valid headers generated", accepted)
	}
	check(testBatch(7, 100, 1))
}
