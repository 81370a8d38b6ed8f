// Package protocol defines every byte format raftmq uses: the record batch
// (the same bytes on the wire, in the Raft log and on disk), log entry types,
// Raft RPC messages, client API requests and replies, error codes and version
// numbers. It imports no other package of the module.
//
// # Record batch
//
// A record batch is the unit a producer sends, one Raft entry carries and a
// segment stores. It starts with a fixed 64-byte header, little-endian:
//
//	offset size field
//	     0    8 base offset       record offset of the first record; stamped by the leader
//	     8    8 append time       unix milliseconds; stamped by the leader
//	    16    4 batch length      bytes of the whole batch, header included
//	    20    4 CRC32C            Castagnoli, over bytes [24, batch length)
//	    24    1 magic             batch format version (BatchMagic)
//	    25    1 attributes        bits 0-2: compression codec
//	    26    2 reserved          zero
//	    28    4 record count      number of records, at least 1
//	    32    8 first timestamp   producer's create time of the first record, unix ms
//	    40    8 max timestamp     largest create time in the batch, unix ms
//	    48    8 producer id       -1 when the producer is not idempotent
//	    56    2 producer epoch
//	    58    2 reserved          zero
//	    60    4 base sequence     producer sequence number of the first record
//	    64    … records           encoded records, compressed as attributes say
//
// The CRC leaves out the first 24 bytes, so the leader stamps base offset and
// append time with two fixed-position writes (StampBatch) and never recomputes
// a checksum over the records, as Kafka's v2 batch leaves its base offset out
// of its CRC. Batch length sits outside the CRC too; it is checked against the
// length of the buffer instead.
//
// # Records
//
// The records section after the header holds RecordCount records back to
// back; with a codec it is one zstd frame or one s2 block of that sequence
// (the batch CRC covers the compressed bytes, so zstd frames carry no
// checksum of their own). Each record is varint-encoded ("uvarint" is
// encoding/binary's unsigned varint, "varint" its zig-zag signed one):
//
//	length           uvarint  bytes of the record after this field
//	attributes       1 byte   reserved, zero
//	timestamp delta  varint   create time minus the batch's first timestamp, ms (may be negative)
//	offset delta     uvarint  record offset minus the base offset; the n-th record has n
//	key length       varint   -1 for no key (nil), else the length
//	key              bytes
//	value length     varint   -1 for no value (nil, a tombstone), else the length
//	value            bytes
//	header count     uvarint
//	headers          header count times:
//	  key length     uvarint
//	  key            bytes    UTF-8 by convention, not checked
//	  value length   varint   -1 for nil
//	  value          bytes
//
// The smallest record is 7 bytes. A decoder (RecordIterator, DecodeRecords)
// rejects with ErrCorruptBatch: a CRC or header problem, a records section
// that cannot hold RecordCount records, one that decompresses past its
// limit (MaxDecompressedSize, default 64 MiB; checked before or while
// decompressing, never after), a length running past its record or section,
// unread bytes inside a record or after the last one, non-zero attributes,
// an offset delta other than the record's position, and a timestamp above
// the header's max timestamp. Offsets and timestamps it yields are absolute:
// base offset plus offset delta, first timestamp plus timestamp delta.
//
// BatchBuilder writes this layout, fills the header (record count, first and
// max timestamps, producer fields) and seals the CRC; base offset and append
// time stay zero for the leader and the log to stamp. If a codec does not
// shrink the records section, the batch is stored uncompressed.
package protocol
