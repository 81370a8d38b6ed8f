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
package protocol
