package protocol

import (
	"encoding/binary"
	"fmt"
	"sync"

	"github.com/klauspost/compress/s2"
)

// RecordIterator decodes the records of one batch at a time. The zero value
// is ready to use; reuse one iterator across batches so its decompression
// buffer is reused. Not safe for concurrent use.
//
//	var it protocol.RecordIterator
//	if err := it.Reset(batch); err != nil { ... }
//	for it.Next() {
//		r := it.Record()
//		...
//	}
//	if err := it.Err(); err != nil { ... }
//
// Memory: besides the batch itself, the iterator holds at most the
// decompressed records section, which may not exceed MaxDecompressedSize,
// plus the header keys and a header slice bounded by the section's size.
// Every structural problem is an error wrapping ErrCorruptBatch.
type RecordIterator struct {
	// MaxDecompressedSize bounds the decompressed records section of a
	// compressed batch; 0 means DefaultMaxDecompressedSize.
	MaxDecompressedSize int

	header  BatchHeader
	buf     []byte // decompressed records section
	rest    []byte // records not yet decoded
	next    uint32 // index of the next record
	record  Record
	headers []RecordHeader
	err     error
}

// Reset verifies batch (VerifyBatch: header, length, CRC), decompresses its
// records section if needed, and positions the iterator before the first
// record. Records alias batch when it is uncompressed, so batch must not
// change while they are used.
func (it *RecordIterator) Reset(batch []byte) error {
	header, err := VerifyBatch(batch)
	return it.start(batch, header, err)
}

// start positions the iterator before the first record of batch, whose
// header the caller read (and checked as far as it wanted), or records
// err.
func (it *RecordIterator) start(batch []byte, header BatchHeader, err error) error {
	it.rest, it.next, it.err = nil, 0, nil
	it.record = Record{}
	if err != nil {
		it.err = err
		return err
	}
	it.header = header
	section := batch[BatchHeaderSize:]
	limit := it.MaxDecompressedSize
	if limit <= 0 {
		limit = DefaultMaxDecompressedSize
	}
	switch header.Codec {
	case CodecS2:
		section, err = it.decodeS2(section, limit)
	case CodecZstd:
		section, err = it.decodeZstd(section, limit)
	}
	if err != nil {
		it.err = err
		return err
	}
	if uint64(header.RecordCount)*minEncodedRecordSize > uint64(len(section)) {
		it.err = fmt.Errorf("%w: %d records cannot fit in a %d-byte records section", ErrCorruptBatch, header.RecordCount, len(section))
		return it.err
	}
	it.rest = section
	return nil
}

func (it *RecordIterator) decodeS2(src []byte, limit int) ([]byte, error) {
	size, err := s2.DecodedLen(src)
	if err != nil {
		return nil, fmt.Errorf("%w: s2 records section: %v", ErrCorruptBatch, err)
	}
	if size > limit {
		return nil, fmt.Errorf("%w: s2 records section decompresses to %d bytes, over the %d-byte limit", ErrCorruptBatch, size, limit)
	}
	if cap(it.buf) < size {
		it.buf = make([]byte, size)
	}
	out, err := s2.Decode(it.buf[:cap(it.buf)], src)
	if err != nil {
		return nil, fmt.Errorf("%w: s2 records section: %v", ErrCorruptBatch, err)
	}
	return out, nil
}

func (it *RecordIterator) decodeZstd(src []byte, limit int) ([]byte, error) {
	decoder, err := zstdDecoder(uint64(limit))
	if err != nil {
		return nil, fmt.Errorf("protocol: zstd decoder: %w", err)
	}
	out, err := decoder.DecodeAll(src, it.buf[:0])
	if err != nil {
		return nil, fmt.Errorf("%w: zstd records section: %v", ErrCorruptBatch, err)
	}
	if len(out) > limit {
		return nil, fmt.Errorf("%w: zstd records section decompresses to %d bytes, over the %d-byte limit", ErrCorruptBatch, len(out), limit)
	}
	if cap(out) <= 2*limit {
		it.buf = out[:0]
	}
	return out, nil
}

// Header is the header of the batch passed to the last Reset.
func (it *RecordIterator) Header() BatchHeader { return it.header }

// Next decodes the next record and reports whether there is one. It returns
// false at the end of the batch or on an error (see Err).
func (it *RecordIterator) Next() bool {
	if it.err != nil || it.rest == nil {
		return false
	}
	if it.next == it.header.RecordCount {
		if len(it.rest) != 0 {
			it.err = fmt.Errorf("%w: %d bytes after the last of %d records", ErrCorruptBatch, len(it.rest), it.header.RecordCount)
		}
		it.rest = nil
		return false
	}
	if err := it.decodeRecord(); err != nil {
		it.err = fmt.Errorf("%w: record %d: %v", ErrCorruptBatch, it.next, err)
		it.rest = nil
		return false
	}
	it.next++
	return true
}

// Record is the record Next decoded; see Record for how long its bytes stay valid.
func (it *RecordIterator) Record() Record { return it.record }

// Err is the first error Reset or Next met, or nil.
func (it *RecordIterator) Err() error { return it.err }

// recordReader reads fields from one record's bytes.
type recordReader struct {
	b   []byte
	err error
}

func (r *recordReader) uvarint(field string) uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.err = fmt.Errorf("bad %s", field)
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *recordReader) varint(field string) int64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.err = fmt.Errorf("bad %s", field)
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *recordReader) bytes(field string, length uint64) []byte {
	if r.err != nil {
		return nil
	}
	if length > uint64(len(r.b)) {
		r.err = fmt.Errorf("%s length %d exceeds the %d bytes left in the record", field, length, len(r.b))
		return nil
	}
	v := r.b[:length:length]
	r.b = r.b[length:]
	return v
}

func (r *recordReader) nullableBytes(field string) []byte {
	if r.err != nil {
		return nil
	}
	length, n := binary.Varint(r.b)
	if n <= 0 {
		r.err = fmt.Errorf("bad %s length", field)
		return nil
	}
	r.b = r.b[n:]
	if length == -1 {
		return nil
	}
	if length < 0 {
		r.err = fmt.Errorf("negative %s length %d", field, length)
		return nil
	}
	return r.bytes(field, uint64(length))
}

func (it *RecordIterator) decodeRecord() error {
	length, n := binary.Uvarint(it.rest)
	if n <= 0 {
		return fmt.Errorf("bad length prefix")
	}
	if length > uint64(len(it.rest)-n) {
		return fmt.Errorf("length %d exceeds the %d bytes left", length, len(it.rest)-n)
	}
	r := recordReader{b: it.rest[n : n+int(length)]}
	it.rest = it.rest[n+int(length):]
	if len(r.b) == 0 {
		return fmt.Errorf("empty record")
	}
	if attributes := r.b[0]; attributes != 0 {
		return fmt.Errorf("unknown attributes %#x", attributes)
	}
	r.b = r.b[1:]
	timestampDelta := r.varint("timestamp delta")
	offsetDelta := r.uvarint("offset delta")
	key := r.nullableBytes("key")
	value := r.nullableBytes("value")
	headerCount := r.uvarint("header count")
	if r.err != nil {
		return r.err
	}
	if offsetDelta != uint64(it.next) {
		return fmt.Errorf("offset delta %d, want %d (offsets are dense)", offsetDelta, it.next)
	}
	timestamp := it.header.FirstTimestamp + timestampDelta
	if (timestamp < it.header.FirstTimestamp) != (timestampDelta < 0) || timestamp > it.header.MaxTimestamp {
		return fmt.Errorf("timestamp %d (delta %d) outside the batch's range up to %d", timestamp, timestampDelta, it.header.MaxTimestamp)
	}
	// Each header takes at least two bytes, which bounds the slice below.
	if headerCount > uint64(len(r.b))/2 {
		return fmt.Errorf("%d headers cannot fit in %d bytes", headerCount, len(r.b))
	}
	it.headers = it.headers[:0]
	for range headerCount {
		headerKey := r.bytes("header key", r.uvarint("header key length"))
		headerValue := r.nullableBytes("header value")
		if r.err != nil {
			return r.err
		}
		it.headers = append(it.headers, RecordHeader{Key: string(headerKey), Value: headerValue})
	}
	if len(r.b) != 0 {
		return fmt.Errorf("%d unread bytes at the end of the record", len(r.b))
	}
	it.record = Record{
		Offset:    it.header.BaseOffset + offsetDelta,
		Timestamp: timestamp,
		Key:       key,
		Value:     value,
	}
	if len(it.headers) > 0 {
		it.record.Headers = it.headers
	}
	return nil
}

var iteratorPool = sync.Pool{New: func() any { return new(RecordIterator) }}

// DecodeRecords verifies batch and calls fn for each record in order, with
// absolute offsets and timestamps, using a pooled iterator with the default
// decompressed-size limit. It stops at fn's first error and returns it. The
// record's bytes are valid only during the call (see Record).
func DecodeRecords(batch []byte, fn func(Record) error) error {
	it := iteratorPool.Get().(*RecordIterator)
	defer func() {
		it.rest, it.record = nil, Record{}
		clear(it.headers)
		if cap(it.buf) > 4<<20 { // don't pin big buffers in the pool
			it.buf = nil
		}
		iteratorPool.Put(it)
	}()
	if err := it.Reset(batch); err != nil {
		return err
	}
	for it.Next() {
		if err := fn(it.Record()); err != nil {
			return err
		}
	}
	return it.Err()
}
