package protocol

import "fmt"

// The consumer's fast path through RecordIterator: ResetVerified skips the
// CRC of a batch its caller verified already, and NextPlain decodes the
// common record shape (no headers, short length fields) without the
// general decoder's per-field bookkeeping. Both accept and reject exactly
// what Reset and Next do.

// ResetVerified is Reset for a batch whose CRC the caller has checked
// (VerifyBatch) and which has not changed since: it checks the header and
// the length again, but not the CRC. Use it only on bytes the caller owns.
func (it *RecordIterator) ResetVerified(batch []byte) error {
	header, err := ReadBatchHeader(batch)
	if err == nil && int(header.Length) != len(batch) {
		err = fmt.Errorf("%w: header says %d bytes, buffer holds %d", ErrCorruptBatch, header.Length, len(batch))
	}
	return it.start(batch, header, err)
}

// NextPlain is Next (same records, same errors) with a fast path for a
// record without headers whose varints take at most two bytes each; any
// other record, and every error, goes through Next.
func (it *RecordIterator) NextPlain() bool {
	if it.err == nil && it.rest != nil && it.next != it.header.RecordCount && it.decodePlainRecord() {
		it.next++
		return true
	}
	return it.Next()
}

// decodePlainRecord decodes the next record into it.record when it has the
// plain shape and is valid, and reports whether it did; it changes nothing
// otherwise, so Next can decode (and report) it the general way.
func (it *RecordIterator) decodePlainRecord() bool {
	length, prefix := shortUvarint(it.rest)
	if prefix == 0 || length == 0 || length > uint64(len(it.rest)-prefix) {
		return false
	}
	end := prefix + int(length)
	record := it.rest[prefix:end]
	if record[0] != 0 { // attributes
		return false
	}
	pos := 1
	timestampDelta, n := shortVarint(record[pos:])
	pos += n
	offsetDelta, m := shortUvarint(record[pos:])
	pos += m
	if n == 0 || m == 0 || offsetDelta != uint64(it.next) {
		return false
	}
	key, pos, ok := plainNullableBytes(record, pos)
	if !ok {
		return false
	}
	value, pos, ok := plainNullableBytes(record, pos)
	// The header count, zero, must be the record's last byte.
	if !ok || pos != len(record)-1 || record[pos] != 0 {
		return false
	}
	timestamp := it.header.FirstTimestamp + timestampDelta
	if (timestamp < it.header.FirstTimestamp) != (timestampDelta < 0) || timestamp > it.header.MaxTimestamp {
		return false
	}
	it.rest = it.rest[end:]
	it.record = Record{Offset: it.header.BaseOffset + offsetDelta, Timestamp: timestamp, Key: key, Value: value}
	return true
}

// plainNullableBytes reads a nullable byte field (a varint length, -1 for
// nil, then the bytes) at pos in record, with a length of at most two
// bytes; ok is false for anything else.
func plainNullableBytes(record []byte, pos int) (field []byte, next int, ok bool) {
	length, n := shortVarint(record[pos:])
	if n == 0 || length < -1 {
		return nil, 0, false
	}
	pos += n
	if length == -1 {
		return nil, pos, true
	}
	if length > int64(len(record)-pos) {
		return nil, 0, false
	}
	end := pos + int(length)
	return record[pos:end:end], end, true
}

// shortUvarint decodes an unsigned varint of one or two bytes as
// binary.Uvarint does; n is 0 for anything else (longer, truncated, or a
// two-byte encoding of a value below 128, left to the general decoder).
func shortUvarint(b []byte) (v uint64, n int) {
	if len(b) > 0 && b[0] < 0x80 {
		return uint64(b[0]), 1
	}
	if len(b) > 1 && b[1] < 0x80 && b[1] != 0 {
		return uint64(b[0]&0x7f) | uint64(b[1])<<7, 2
	}
	return 0, 0
}

// shortVarint decodes a zig-zag signed varint of one or two bytes.
func shortVarint(b []byte) (int64, int) {
	u, n := shortUvarint(b)
	v := int64(u >> 1)
	if u&1 != 0 {
		v = ^v
	}
	return v, n
}

// RecordRef is Record without copying it: the iterator's own record, valid
// (and to be left unchanged) until the next call of Next, NextPlain, Reset
// or ResetVerified.
func (it *RecordIterator) RecordRef() *Record { return &it.record }
