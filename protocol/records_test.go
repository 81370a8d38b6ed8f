package protocol

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"testing"

	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/zstd"
)

var allCodecs = []Codec{CodecNone, CodecS2, CodecZstd}

func testRecords() []Record {
	return []Record{
		{Timestamp: 1_700_000_000_000, Key: []byte("k1"), Value: []byte("hello")},
		{Timestamp: 1_700_000_000_005, Key: nil, Value: []byte{}},
		{Timestamp: 1_699_999_999_990, Key: []byte{}, Value: nil}, // earlier than the first
		{Timestamp: 1_700_000_000_100, Key: []byte("k"), Value: bytes.Repeat([]byte("v"), 1000),
			Headers: []RecordHeader{{Key: "trace", Value: []byte("abc")}, {Key: "", Value: nil}, {Key: "trace", Value: []byte{}}}},
	}
}

func decodeAll(t testing.TB, batch []byte) []Record {
	t.Helper()
	var out []Record
	err := DecodeRecords(batch, func(r Record) error {
		c := Record{Offset: r.Offset, Timestamp: r.Timestamp}
		if r.Key != nil {
			c.Key = append([]byte{}, r.Key...)
		}
		if r.Value != nil {
			c.Value = append([]byte{}, r.Value...)
		}
		for _, h := range r.Headers {
			var v []byte
			if h.Value != nil {
				v = append([]byte{}, h.Value...)
			}
			c.Headers = append(c.Headers, RecordHeader{Key: h.Key, Value: v})
		}
		out = append(out, c)
		return nil
	})
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	return out
}

func sameBytes(a, b []byte) bool { return (a == nil) == (b == nil) && bytes.Equal(a, b) }

func checkRecordsEqual(t *testing.T, got, want []Record, baseOffset uint64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d records, want %d", len(got), len(want))
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.Offset != baseOffset+uint64(i) || g.Timestamp != w.Timestamp || !sameBytes(g.Key, w.Key) || !sameBytes(g.Value, w.Value) {
			t.Fatalf("record %d: got %+v, want offset %d %+v", i, g, baseOffset+uint64(i), w)
		}
		if len(g.Headers) != len(w.Headers) {
			t.Fatalf("record %d: %d headers, want %d", i, len(g.Headers), len(w.Headers))
		}
		for j := range w.Headers {
			if g.Headers[j].Key != w.Headers[j].Key || !sameBytes(g.Headers[j].Value, w.Headers[j].Value) {
				t.Fatalf("record %d header %d: got %+v want %+v", i, j, g.Headers[j], w.Headers[j])
			}
		}
	}
}

func TestBatchBuilderRoundTripEveryCodec(t *testing.T) {
	var builder BatchBuilder
	for _, codec := range allCodecs {
		builder.Reset()
		records := testRecords()
		for _, r := range records {
			if err := builder.Add(r); err != nil {
				t.Fatal(err)
			}
		}
		batch, err := builder.Build(codec)
		if err != nil {
			t.Fatal(err)
		}
		header, err := VerifyBatch(batch)
		if err != nil {
			t.Fatalf("%v: built batch does not verify: %v", codec, err)
		}
		if header.Codec != codec {
			t.Fatalf("%v: header codec %v (a 1000-byte run compresses)", codec, header.Codec)
		}
		if header.RecordCount != 4 || header.FirstTimestamp != records[0].Timestamp || header.MaxTimestamp != records[3].Timestamp || header.ProducerID != -1 {
			t.Fatalf("%v: header %+v", codec, header)
		}
		StampBatch(batch, 5000, 1)
		checkRecordsEqual(t, decodeAll(t, batch), records, 5000)
	}
}

func TestBatchBuilderProducerAndReset(t *testing.T) {
	var builder BatchBuilder
	builder.SetProducer(42, 3, 100)
	builder.Add(Record{Timestamp: 10, Value: []byte("a")})
	batch, _ := builder.Build(CodecNone)
	h, _ := VerifyBatch(batch)
	if h.ProducerID != 42 || h.ProducerEpoch != 3 || h.BaseSequence != 100 {
		t.Fatalf("producer fields: %+v", h)
	}
	builder.Reset()
	if builder.Len() != 0 {
		t.Fatal("Reset kept records")
	}
	if _, err := builder.Build(CodecNone); err == nil {
		t.Fatal("empty batch built")
	}
	builder.Add(Record{Timestamp: 20, Value: []byte("b")})
	batch, _ = builder.Build(CodecNone)
	h, _ = VerifyBatch(batch)
	if h.ProducerID != -1 || h.RecordCount != 1 || h.FirstTimestamp != 20 {
		t.Fatalf("after Reset: %+v", h)
	}
	if builder.UncompressedSize() != len(batch) {
		t.Fatalf("UncompressedSize %d, batch %d", builder.UncompressedSize(), len(batch))
	}
	r := Record{Timestamp: 25, Key: []byte("x"), Headers: []RecordHeader{{Key: "h"}}}
	before := builder.UncompressedSize()
	builder.Add(r)
	if got := builder.UncompressedSize() - before; got != EncodedRecordSize(&r, 20) {
		t.Fatalf("EncodedRecordSize %d, actual growth %d", EncodedRecordSize(&r, 20), got)
	}
}

func TestBuildFallsBackToUncompressedWhenNotSmaller(t *testing.T) {
	var builder BatchBuilder
	random := make([]byte, 64)
	for i := range random {
		random[i] = byte(rand.Uint32())
	}
	builder.Add(Record{Timestamp: 1, Value: random})
	for _, codec := range []Codec{CodecS2, CodecZstd} {
		batch, err := builder.Build(codec)
		if err != nil {
			t.Fatal(err)
		}
		h, err := VerifyBatch(batch)
		if err != nil || h.Codec != CodecNone {
			t.Fatalf("%v on random bytes: codec %v, err %v", codec, h.Codec, err)
		}
		checkRecordsEqual(t, decodeAll(t, batch), []Record{{Timestamp: 1, Value: random}}, 0)
	}
}

func TestAppendBatchAppends(t *testing.T) {
	var builder BatchBuilder
	builder.Add(Record{Timestamp: 1, Value: []byte("one")})
	prefix := []byte("prefix")
	out, err := builder.AppendBatch(prefix, CodecZstd)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out[:6], []byte("prefix")) {
		t.Fatal("prefix clobbered")
	}
	if _, err := VerifyBatch(out[6:]); err != nil {
		t.Fatal(err)
	}
}

func TestBatchBuilderHotPathDoesNotAllocate(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are checked in runs without -race (sync.Pool drops items at random under the race detector)")
	}
	value := bytes.Repeat([]byte("value-"), 20)
	record := Record{Timestamp: 1_700_000_000_000, Key: []byte("key"), Value: value,
		Headers: []RecordHeader{{Key: "h", Value: []byte("v")}}}
	for _, codec := range allCodecs {
		var builder BatchBuilder
		build := func() {
			builder.Reset()
			for range 100 {
				if err := builder.Add(record); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := builder.Build(codec); err != nil {
				t.Fatal(err)
			}
		}
		// Grow buffers, and warm every one of the shared zstd encoders
		// (one per GOMAXPROCS, each growing its state over its first
		// uses): with 8 Ps a single warm-up left allocations behind.
		for range 4 * (runtime.GOMAXPROCS(0) + 1) {
			build()
		}
		if allocs := testing.AllocsPerRun(20, build); allocs > 0 {
			t.Errorf("%v: %v allocations per 100-record batch, want 0", codec, allocs)
		}
	}
}

func TestRecordIteratorReuseDoesNotAllocate(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are checked in runs without -race (sync.Pool drops items at random under the race detector)")
	}
	var builder BatchBuilder
	for i := range 100 {
		builder.Add(Record{Timestamp: int64(i), Key: []byte("key"), Value: bytes.Repeat([]byte{'v'}, 100)})
	}
	for _, codec := range allCodecs {
		batch, _ := builder.AppendBatch(nil, codec)
		var it RecordIterator
		decode := func() {
			if err := it.Reset(batch); err != nil {
				t.Fatal(err)
			}
			n := 0
			for it.Next() {
				n++
			}
			if it.Err() != nil || n != 100 {
				t.Fatalf("%v: %d records, %v", codec, n, it.Err())
			}
		}
		// Warm every one of the shared zstd decoders (one per GOMAXPROCS).
		for range runtime.GOMAXPROCS(0) + 1 {
			decode()
		}
		if allocs := testing.AllocsPerRun(20, decode); allocs > 0 {
			t.Errorf("%v: %v allocations per decode with a reused iterator, want 0", codec, allocs)
		}
	}
}

// sealRecords wraps an arbitrary records section in a valid header and CRC,
// so that only the record decoding can reject it.
func sealRecords(section []byte, codec Codec, count uint32, firstTimestamp, maxTimestamp int64) []byte {
	b := make([]byte, BatchHeaderSize+len(section))
	PutBatchHeader(b, &BatchHeader{Magic: BatchMagic, Codec: codec, RecordCount: count,
		FirstTimestamp: firstTimestamp, MaxTimestamp: maxTimestamp, ProducerID: -1})
	copy(b[BatchHeaderSize:], section)
	SealBatch(b)
	return b
}

func TestDecodeRejectsMalformedRecords(t *testing.T) {
	var builder BatchBuilder
	builder.Add(Record{Timestamp: 100, Key: []byte("k"), Value: []byte("v"), Headers: []RecordHeader{{Key: "h", Value: []byte("x")}}})
	builder.Add(Record{Timestamp: 101, Value: []byte("w")})
	good, _ := builder.AppendBatch(nil, CodecNone)
	section := good[BatchHeaderSize:]
	mutate := func(f func(s []byte) []byte) []byte { return f(append([]byte(nil), section...)) }
	cases := map[string][]byte{
		"count too high":      sealRecords(section, CodecNone, 3, 100, 101),
		"count too low":       sealRecords(section, CodecNone, 1, 100, 101),
		"timestamp above max": sealRecords(section, CodecNone, 2, 100, 100),
		"trailing bytes":      sealRecords(append(append([]byte(nil), section...), 0), CodecNone, 2, 100, 101),
		"truncated":           sealRecords(section[:len(section)-1], CodecNone, 2, 100, 101),
		"attributes":          sealRecords(mutate(func(s []byte) []byte { s[1] = 1; return s }), CodecNone, 2, 100, 101),
		"offset delta":        sealRecords(mutate(func(s []byte) []byte { s[3] = 5; return s }), CodecNone, 2, 100, 101),
		"key length":          sealRecords(mutate(func(s []byte) []byte { s[4] = 0x7e; return s }), CodecNone, 2, 100, 101),
		"s2 garbage":          sealRecords([]byte("not s2 at all, really not"), CodecS2, 1, 0, 0),
		"zstd garbage":        sealRecords([]byte("not zstd at all, really no"), CodecZstd, 1, 0, 0),
		"bad crc":             append(append([]byte(nil), good[:len(good)-1]...), good[len(good)-1]^1),
	}
	for name, batch := range cases {
		err := DecodeRecords(batch, func(Record) error { return nil })
		if !errors.Is(err, ErrCorruptBatch) {
			t.Errorf("%s: err = %v, want ErrCorruptBatch", name, err)
		}
	}
}

func TestDecodeStopsAtCallbackError(t *testing.T) {
	var builder BatchBuilder
	for i := range 5 {
		builder.Add(Record{Timestamp: int64(i), Value: []byte{byte(i)}})
	}
	batch, _ := builder.Build(CodecS2)
	stop := errors.New("stop")
	seen := 0
	err := DecodeRecords(batch, func(Record) error {
		seen++
		if seen == 2 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || seen != 2 {
		t.Fatalf("err %v after %d records", err, seen)
	}
}

// heapAllocDuring reports the bytes allocated while f runs.
func heapAllocDuring(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

func TestDecompressionBombsRejectedWithinLimit(t *testing.T) {
	const huge = 64 << 20
	const limit = 1 << 20
	zeros := make([]byte, huge)
	encoder, _ := zstd.NewWriter(nil)
	zstdBomb := encoder.EncodeAll(zeros, nil)
	// Without a content size in the frame header the decoder cannot refuse
	// up front; it must stop at the limit while decoding.
	noSizeEncoder, _ := zstd.NewWriter(nil, zstd.WithSingleSegment(false))
	var streamed bytes.Buffer
	w := noSizeEncoder
	w.Reset(&streamed)
	w.Write(zeros)
	w.Close()
	s2Bomb := s2.Encode(nil, zeros)
	zeros = nil
	bombs := map[string][]byte{
		"zstd with content size":    sealRecords(zstdBomb, CodecZstd, 1, 0, 0),
		"zstd without content size": sealRecords(streamed.Bytes(), CodecZstd, 1, 0, 0),
		"s2":                        sealRecords(s2Bomb, CodecS2, 1, 0, 0),
	}
	for name, bomb := range bombs {
		it := RecordIterator{MaxDecompressedSize: limit}
		var err error
		allocated := heapAllocDuring(func() { err = it.Reset(bomb) })
		if !errors.Is(err, ErrCorruptBatch) {
			t.Errorf("%s (%d bytes): err = %v, want ErrCorruptBatch", name, len(bomb), err)
		}
		// The bound: the limit, decoder state and slack, far below huge.
		if allocated > 16*limit {
			t.Errorf("%s: allocated %d bytes for a %d-byte limit", name, allocated, limit)
		}
		t.Logf("%s: %d-byte batch, %d bytes allocated, %v", name, len(bomb), allocated, err)
	}
}

func TestDecodeRejectsRecordCountBeyondSection(t *testing.T) {
	// A header claiming 2^32-1 records over a tiny section must fail before
	// any per-record work or allocation.
	batch := sealRecords(make([]byte, 14), CodecNone, 1<<32-1, 0, 0)
	if err := DecodeRecords(batch, func(Record) error { return nil }); !errors.Is(err, ErrCorruptBatch) {
		t.Fatalf("err = %v", err)
	}
}

func FuzzDecodeRecords(f *testing.F) {
	var builder BatchBuilder
	for _, r := range testRecords() {
		builder.Add(r)
	}
	for _, codec := range allCodecs {
		batch, _ := builder.AppendBatch(nil, codec)
		f.Add(batch[BatchHeaderSize:], uint8(codec), uint32(4), int64(1_700_000_000_000), int64(1_700_000_000_100), false)
		f.Add(batch, uint8(codec), uint32(4), int64(0), int64(0), true)
	}
	f.Fuzz(func(t *testing.T, data []byte, codec uint8, count uint32, first, maxTimestamp int64, raw bool) {
		batch := data
		if !raw { // seal the data as a records section so the CRC passes
			batch = sealRecords(data, Codec(codec&codecMask), count, first, maxTimestamp)
		}
		it := RecordIterator{MaxDecompressedSize: 1 << 20}
		if err := it.Reset(batch); err != nil {
			if !errors.Is(err, ErrCorruptBatch) {
				t.Fatalf("Reset error outside the corruption class: %v", err)
			}
			return
		}
		header := it.Header()
		var decoded []Record
		for it.Next() {
			r := it.Record()
			if r.Offset != header.BaseOffset+uint64(len(decoded)) || r.Timestamp > header.MaxTimestamp {
				t.Fatalf("record %d: offset %d timestamp %d, header %+v", len(decoded), r.Offset, r.Timestamp, header)
			}
			decoded = append(decoded, Record{Timestamp: r.Timestamp, Key: clone(r.Key), Value: clone(r.Value), Headers: cloneHeaders(r.Headers)})
		}
		if err := it.Err(); err != nil {
			if !errors.Is(err, ErrCorruptBatch) {
				t.Fatalf("Next error outside the corruption class: %v", err)
			}
			return
		}
		if len(decoded) != int(header.RecordCount) {
			t.Fatalf("decoded %d of %d records without error", len(decoded), header.RecordCount)
		}
		// Whatever decodes re-encodes to records that decode the same.
		var rebuilt BatchBuilder
		for _, r := range decoded {
			if err := rebuilt.Add(r); err != nil {
				t.Fatal(err)
			}
		}
		again, err := rebuilt.Build(CodecNone)
		if err != nil {
			t.Fatal(err)
		}
		StampBatch(again, header.BaseOffset, 0)
		var i int
		if err := DecodeRecords(again, func(r Record) error {
			want := decoded[i]
			if r.Timestamp != want.Timestamp || !sameBytes(r.Key, want.Key) || !sameBytes(r.Value, want.Value) || len(r.Headers) != len(want.Headers) {
				return fmt.Errorf("record %d changed on re-encode", i)
			}
			i++
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	})
}

func clone(b []byte) []byte {
	if b == nil {
		return nil
	}
	return append([]byte{}, b...)
}

func cloneHeaders(headers []RecordHeader) []RecordHeader {
	var out []RecordHeader
	for _, h := range headers {
		out = append(out, RecordHeader{Key: h.Key, Value: clone(h.Value)})
	}
	return out
}
