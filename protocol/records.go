package protocol

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"runtime"
	"slices"
	"sync"

	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/zstd"
)

// Record is one message in a record batch.
//
// When a Record comes from a RecordIterator or DecodeRecords, Key, Value and
// the Headers slice alias the decoder's buffers (or the batch itself) and are
// valid only until the next record; copy what you keep. Header keys are
// strings the decoder allocated, so they may be kept.
type Record struct {
	// Offset is the record's absolute offset: the batch's base offset plus
	// the record's offset delta. Ignored by BatchBuilder.Add.
	Offset uint64
	// Timestamp is the producer's create time in unix milliseconds.
	Timestamp int64
	// Key is the record key; nil means no key, distinct from an empty key.
	Key []byte
	// Value is the record value; nil means no value (a tombstone), distinct
	// from an empty value.
	Value []byte
	// Headers are application key/value pairs, in order; keys may repeat.
	Headers []RecordHeader
}

// RecordHeader is one application header of a record. A nil Value is
// preserved as nil.
type RecordHeader struct {
	Key   string
	Value []byte
}

// DefaultMaxDecompressedSize bounds the records section a decoder
// decompresses when its MaxDecompressedSize is zero.
const DefaultMaxDecompressedSize = 64 << 20

// minEncodedRecordSize is the smallest encoding of one record: length,
// attributes, timestamp delta, offset delta, key length, value length and
// header count, one byte each.
const minEncodedRecordSize = 7

// maxRecordLengthPrefix is the largest record length prefix (a uvarint of
// a length below 2^35).
const maxRecordLengthPrefix = 5

// BatchBuilder encodes records into a sealed record batch. It is reusable
// (Reset) and, once its buffers have grown to the working size, Add and
// Build do not allocate. A BatchBuilder is not safe for concurrent use.
//
//	var builder protocol.BatchBuilder
//	builder.Add(protocol.Record{Timestamp: now, Key: k, Value: v})
//	batch, err := builder.Build(protocol.CodecZstd)
type BatchBuilder struct {
	records        []byte // encoded, uncompressed records section
	out            []byte // last built batch
	count          uint32
	firstTimestamp int64
	maxTimestamp   int64
	producerID     int64
	producerEpoch  int16
	baseSequence   int32
	producerSet    bool
}

// Reset empties the builder for a new batch, keeping its buffers. The
// producer identity goes back to none (producer id -1).
func (b *BatchBuilder) Reset() {
	b.records = b.records[:0]
	b.count = 0
	b.firstTimestamp, b.maxTimestamp = 0, 0
	b.producerID, b.producerEpoch, b.baseSequence, b.producerSet = 0, 0, 0, false
}

// SetProducer records the idempotent producer identity written into the
// batch header. Without it the header carries producer id -1.
func (b *BatchBuilder) SetProducer(producerID int64, epoch int16, baseSequence int32) {
	b.producerID, b.producerEpoch, b.baseSequence, b.producerSet = producerID, epoch, baseSequence, true
}

// Len is the number of records added since the last Reset.
func (b *BatchBuilder) Len() int { return int(b.count) }

// Grow makes room for at least n more bytes of encoded records without
// reallocating, so a producer that knows the size its batches reach
// spares the copies of growing the records section by doubling.
func (b *BatchBuilder) Grow(n int) {
	if n > 0 && cap(b.records)-len(b.records) < n {
		b.records = slices.Grow(b.records, n)
	}
}

// UncompressedSize is the size the batch would have built with CodecNone:
// the header plus the encoded records. Producers use it to cap batch bytes.
func (b *BatchBuilder) UncompressedSize() int { return BatchHeaderSize + len(b.records) }

// EncodedRecordSize is the number of bytes r adds to an uncompressed batch
// whose first timestamp is firstTimestamp.
func EncodedRecordSize(r *Record, firstTimestamp int64) int {
	body := recordBodySize(r, r.Timestamp-firstTimestamp, 0)
	return uvarintSize(uint64(body)) + body
}

// Add appends a record. The first record's timestamp becomes the batch's
// first timestamp; later records store their timestamp relative to it and
// get consecutive offset deltas. Add copies r's bytes; r may be reused.
func (b *BatchBuilder) Add(r Record) error {
	if b.count == math.MaxUint32 {
		return errors.New("protocol: record batch is full (2^32-1 records)")
	}
	if b.count == 0 {
		b.firstTimestamp, b.maxTimestamp = r.Timestamp, r.Timestamp
	}
	timestampDelta := r.Timestamp - b.firstTimestamp
	if (r.Timestamp < b.firstTimestamp) != (timestampDelta < 0) {
		return fmt.Errorf("protocol: record timestamp %d too far from the batch's first timestamp %d", r.Timestamp, b.firstTimestamp)
	}
	offsetDelta := uint64(b.count)
	body := recordBodySize(&r, timestampDelta, offsetDelta)
	if uint64(body) > math.MaxUint32 {
		return fmt.Errorf("protocol: record of %d bytes exceeds the 4 GiB record limit", body)
	}
	b.records = binary.AppendUvarint(b.records, uint64(body))
	b.records = append(b.records, 0) // attributes, reserved
	b.records = binary.AppendVarint(b.records, timestampDelta)
	b.records = binary.AppendUvarint(b.records, offsetDelta)
	b.records = appendNullableBytes(b.records, r.Key)
	b.records = appendNullableBytes(b.records, r.Value)
	b.records = binary.AppendUvarint(b.records, uint64(len(r.Headers)))
	for i := range r.Headers {
		h := &r.Headers[i]
		b.records = binary.AppendUvarint(b.records, uint64(len(h.Key)))
		b.records = append(b.records, h.Key...)
		b.records = appendNullableBytes(b.records, h.Value)
	}
	b.count++
	b.maxTimestamp = max(b.maxTimestamp, r.Timestamp)
	return nil
}

func recordBodySize(r *Record, timestampDelta int64, offsetDelta uint64) int {
	n := 1 + varintSize(timestampDelta) + uvarintSize(offsetDelta) +
		nullableBytesSize(r.Key) + nullableBytesSize(r.Value) + uvarintSize(uint64(len(r.Headers)))
	for i := range r.Headers {
		h := &r.Headers[i]
		n += uvarintSize(uint64(len(h.Key))) + len(h.Key) + nullableBytesSize(h.Value)
	}
	return n
}

func appendNullableBytes(dst, b []byte) []byte {
	if b == nil {
		return binary.AppendVarint(dst, -1)
	}
	dst = binary.AppendVarint(dst, int64(len(b)))
	return append(dst, b...)
}

func nullableBytesSize(b []byte) int {
	if b == nil {
		return 1
	}
	return varintSize(int64(len(b))) + len(b)
}

func uvarintSize(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}

func varintSize(v int64) int {
	return uvarintSize(uint64(v<<1) ^ uint64(v>>63))
}

// Build seals the records added so far into a batch compressed with codec
// and returns it. The bytes belong to the builder and stay valid until the
// next Build or AppendBatch; copy them (or use AppendBatch) to keep them
// past that. The base offset and append time are zero, for the leader and
// the log to stamp. When compression would not make the records section
// smaller, the batch is stored uncompressed (CodecNone in the header).
func (b *BatchBuilder) Build(codec Codec) ([]byte, error) {
	out, err := b.AppendBatch(b.out[:0], codec)
	if err != nil {
		return nil, err
	}
	b.out = out
	return out, nil
}

// AppendBatch is Build appending the batch to dst.
func (b *BatchBuilder) AppendBatch(dst []byte, codec Codec) ([]byte, error) {
	if b.count == 0 {
		return dst, errors.New("protocol: record batch has no records")
	}
	if !codec.Valid() {
		return dst, fmt.Errorf("protocol: unknown compression codec %d", uint8(codec))
	}
	start := len(dst)
	dst = growLen(dst, BatchHeaderSize)
	switch codec {
	case CodecS2:
		dst = appendS2(dst, b.records)
	case CodecZstd:
		dst = zstdEncoder().EncodeAll(b.records, dst)
	}
	if codec == CodecNone || len(dst)-start-BatchHeaderSize >= len(b.records) {
		codec = CodecNone
		dst = append(dst[:start+BatchHeaderSize], b.records...)
	}
	batch := dst[start:]
	if uint64(len(batch)) > math.MaxUint32 {
		return dst[:start], fmt.Errorf("protocol: record batch of %d bytes exceeds the 4 GiB batch limit", len(batch))
	}
	header := BatchHeader{
		Magic: BatchMagic, Codec: codec, RecordCount: b.count,
		FirstTimestamp: b.firstTimestamp, MaxTimestamp: b.maxTimestamp,
		ProducerID: -1,
	}
	if b.producerSet {
		header.ProducerID, header.ProducerEpoch, header.BaseSequence = b.producerID, b.producerEpoch, b.baseSequence
	}
	PutBatchHeader(batch, &header)
	SealBatch(batch)
	return dst, nil
}

// growLen extends b by n bytes (contents unspecified).
func growLen(b []byte, n int) []byte {
	if cap(b)-len(b) < n {
		grown := make([]byte, len(b), 2*cap(b)+n)
		copy(grown, b)
		b = grown
	}
	return b[:len(b)+n]
}

func appendS2(dst, src []byte) []byte {
	start := len(dst)
	dst = growLen(dst, s2.MaxEncodedLen(len(src)))
	encoded := s2.Encode(dst[start:], src)
	return dst[:start+len(encoded)]
}

var (
	zstdEncoderOnce sync.Once
	zstdEncoderInst *zstd.Encoder
)

// zstdEncoder is shared: EncodeAll is safe for concurrent use and keeps its
// own pool of block encoders.
func zstdEncoder() *zstd.Encoder {
	zstdEncoderOnce.Do(func() {
		encoder, err := zstd.NewWriter(nil,
			zstd.WithEncoderLevel(zstd.SpeedDefault),
			zstd.WithEncoderCRC(false), // the batch CRC covers the frame
			zstd.WithEncoderConcurrency(runtime.GOMAXPROCS(0)),
			zstd.WithZeroFrames(true))
		if err != nil {
			panic(fmt.Sprintf("protocol: zstd encoder options: %v", err)) // static options; a broken invariant
		}
		zstdEncoderInst = encoder
	})
	return zstdEncoderInst
}

// zstdDecoders holds one shared decoder per decompressed-size limit; DecodeAll
// is safe for concurrent use.
var zstdDecoders sync.Map // uint64 limit -> *zstd.Decoder

func zstdDecoder(limit uint64) (*zstd.Decoder, error) {
	if d, ok := zstdDecoders.Load(limit); ok {
		return d.(*zstd.Decoder), nil
	}
	window := max(limit, zstd.MinWindowSize)
	decoder, err := zstd.NewReader(nil,
		zstd.WithDecoderConcurrency(runtime.GOMAXPROCS(0)),
		zstd.WithDecoderMaxMemory(limit),
		zstd.WithDecoderMaxWindow(min(window, 1<<29)))
	if err != nil {
		return nil, err
	}
	actual, loaded := zstdDecoders.LoadOrStore(limit, decoder)
	if loaded {
		decoder.Close()
	}
	return actual.(*zstd.Decoder), nil
}
