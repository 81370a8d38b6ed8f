package protocol

import (
	"encoding/binary"
	"math/rand/v2"
	"testing"
)

// TestReadBatchSummaryMatchesReadBatchHeader checks ReadBatchSummary
// against ReadBatchHeader on valid headers, headers with each checked
// field damaged, random bytes and short buffers: both must accept the
// same ones and read the same values.
func TestReadBatchSummaryMatchesReadBatchHeader(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 3))
	check := func(b []byte) {
		t.Helper()
		want, werr := ReadBatchHeader(b)
		got, err := ReadBatchSummary(b)
		if (err == nil) != (werr == nil) {
			t.Fatalf("ReadBatchSummary error %v, ReadBatchHeader error %v (header %x)", err, werr, b[:min(len(b), BatchHeaderSize)])
		}
		if err == nil && (got.RecordCount != want.RecordCount || got.AppendTime != want.AppendTime || got.MaxTimestamp != want.MaxTimestamp) {
			t.Fatalf("ReadBatchSummary %+v, ReadBatchHeader %+v", got, want)
		}
	}
	accepted := 0
	for range 20000 {
		h := BatchHeader{
			BaseOffset: r.Uint64(), AppendTime: int64(r.Uint64()), Length: uint32(r.IntN(200)),
			Magic: BatchMagic, Codec: Codec(r.IntN(8)), RecordCount: uint32(r.IntN(3)),
			FirstTimestamp: int64(r.Uint64()), MaxTimestamp: int64(r.Uint64()), ProducerID: int64(r.Uint64()),
			ProducerEpoch: int16(r.Uint32()), BaseSequence: int32(r.Uint32()),
		}
		if r.IntN(4) == 0 {
			h.Magic = byte(r.Uint32())
		}
		b := make([]byte, BatchHeaderSize+r.IntN(32))
		PutBatchHeader(b, &h)
		if r.IntN(4) == 0 {
			b[r.IntN(BatchHeaderSize)] ^= byte(1 + r.IntN(255))
		}
		if r.IntN(8) == 0 {
			binary.LittleEndian.PutUint32(b[batchLengthPos:], r.Uint32())
		}
		if _, err := ReadBatchHeader(b); err == nil {
			accepted++
		}
		check(b)
		check(b[:r.IntN(BatchHeaderSize)])
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		check(b)
	}
	if accepted < 1000 {
		t.Fatalf("only %d valid headers generated", accepted)
	}
	var builder BatchBuilder
	for i := range 7 {
		if err := builder.Add(Record{Timestamp: int64(100 + i), Value: make([]byte, 100)}); err != nil {
			t.Fatal(err)
		}
	}
	batch, err := builder.Build(CodecNone)
	if err != nil {
		t.Fatal(err)
	}
	StampBatch(batch, 9, 1234)
	check(batch)
	if got, err := ReadBatchSummary(batch); err != nil || got != (BatchSummary{RecordCount: 7, AppendTime: 1234, MaxTimestamp: 106}) {
		t.Fatalf("ReadBatchSummary of a built batch: %+v, %v", got, err)
	}
}
