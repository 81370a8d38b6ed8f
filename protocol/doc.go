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
//
// # Client API subjects
//
// The client API: subjects, request and reply messages, and their encodings.
// Every subject starts with the cluster prefix (DefaultSubjectPrefix,
// "raftmq"), so several clusters can share one NATS system. <id> is a broker
// id in decimal, <topic> a topic name (see ValidateTopicName).
//
//	subject                              served by                      body
//	<prefix>.api.produce.<topic>         any broker (queue APIQueue)    raw payload -> JSON PublishReply
//	<prefix>.api.broker.<id>.produce     broker <id>                    ProduceRequest -> ProduceReply (binary)
//	<prefix>.api.broker.<id>.fetch       broker <id>                    FetchRequest -> FetchReply (binary)
//	<prefix>.api.broker.<id>.offsets     broker <id>                    ListOffsetsRequest -> ListOffsetsReply (binary)
//	<prefix>.api.broker.<id>.status      broker <id>                    empty -> JSON BrokerStatus
//	<prefix>.api.broker.<id>.admin.<op>  broker <id>                    as <prefix>.api.admin.<op> (forwarding to the controller leader)
//	<prefix>.api.admin.<op>              any broker (queue APIQueue)    JSON admin request -> JSON admin reply
//	<prefix>.api.status                  every broker (no queue)        empty -> JSON BrokerStatus, one reply per broker
//	<prefix>.cluster.metadata            every broker (no queue)        broker-internal: the controller leader's metadata broadcast
//	<prefix>.cluster.status              every broker (no queue)        broker-internal: each broker's periodic BrokerStatus
//	<prefix>.peer.<id>                   broker <id>                    broker-internal: Raft messages (package transport)
//
// On a broker's embedded NATS server the broker-internal subjects travel in
// a separate account (RAFTMQ_PEERS) that only the in-process brokers join;
// see docs/adr/0005-peer-account-on-embedded-servers.md. Consumer group
// subjects are in the next section.
//
// Admin operations (<op>): AdminCreateTopic "topic.create", AdminListTopics
// "topic.list", AdminDescribeTopic "topic.describe", AdminDeleteTopic
// "topic.delete", AdminMetadata "metadata", AdminClusterStatus
// "cluster.status", AdminReassignPartition "partition.reassign",
// AdminReplaceBroker "broker.replace", AdminAddController "controller.add",
// AdminRemoveController "controller.remove". Brokers also use
// AdminRegisterBroker ("broker.register") and AdminReassignDone
// ("partition.reassign_done") among themselves.
//
// The SDK sends produce, fetch and list-offsets requests to the broker
// subject of the partition's leader (learned from Metadata). A broker that is
// not the leader answers CodeNotLeader with the leader's id when it knows it;
// the SDK retries there.
//
// The plain publish subject needs no SDK:
//
//	nats req raftmq.api.produce.orders 'hello'
//	{"partition":0,"offset":41}
//
// Optional NATS headers select the partition: HeaderPartition ("Raftmq-Partition",
// decimal) or HeaderKey ("Raftmq-Key", hashed with PartitionForKey); without
// either the broker picks partitions round robin. The payload becomes one
// record's value (the key header, if any, its key). An empty key header is
// a key, the empty one: it is hashed like any other and stored as an empty
// key, as the SDK does with an empty non-nil Record.Key (and Kafka's
// clients with an empty key); only a request without the header has no key.
//
// # Client API binary encoding
//
// Produce, fetch and list-offsets messages are little-endian binary. Every
// message starts with one byte, the API version (APIVersion); a broker
// answers a request in a version it does not know with CodeUnsupportedVersion
// (in reply version APIVersion). Strings are a uint16 length and the bytes.
// Replies carry an error block right after the version:
//
//	uint16 code            ErrorCode; 0 = no error, and the block ends here
//	uint64 leader          CodeNotLeader: the leader's broker id, 0 if unknown
//	uint64 low, high       CodeOffsetOutOfRange: the valid range [low, high]
//	uint64 limit           CodeBatchTooLarge / CodeRecordTooLarge: the limit in bytes
//	string message         human-readable detail
//
// Record batch bytes always come last and run to the end of the message, so
// neither side copies them to frame them. Admin messages are JSON with a
// "v" version field.
//
// # Consumer group subjects
//
// Consumer groups: subjects, messages and the consumer-state control entry.
//
//	subject                                 served by                   body
//	<prefix>.api.broker.<id>.group.commit   broker <id> (partition      OffsetCommitRequest -> OffsetCommitReply (JSON)
//	                                        leader)
//	<prefix>.api.broker.<id>.group.offsets  broker <id> (partition      OffsetFetchRequest -> OffsetFetchReply (JSON)
//	                                        leader)
//	<prefix>.api.admin.group.<op>           any broker (queue APIQueue) JSON; forwarded to the group coordinator
//	                                        (<op>: join, heartbeat, leave, list, describe, delete, reset)
//	<prefix>.group.changed.<group>          published by the coordinator  empty: the assignment changed, heartbeat now
//
// Offsets live in each partition's own Raft log: a commit (or a claim, a
// reset, a delete) is a control entry (EntryControl, AppendConsumerOps) of
// the partition's group, so offset commits and fetches go to the partition
// leader, many partitions of one leader per request. Membership and
// assignment are kept by the group coordinator, the controller group's
// leader, in the controller's Raft log; join, heartbeat and leave go there
// (any broker forwards them).
//
// Assignment is incremental (cooperative): a heartbeat reply lists the
// partitions the member owns (Assigned, each with its assignment epoch)
// and the ones it must give up (Revoke). A member stops consuming a revoked
// partition, commits what it processed and reports it no longer owns it in
// its next heartbeat (Owned); only then does the partition go to its new
// owner. The new owner first claims the partition at its leader
// (OffsetFetchRequest with Claim): the claim is a Raft entry that raises the
// partition's epoch for the group, so a commit from the previous owner with
// an older epoch is refused (CodeStaleEpoch) from then on, and the offset
// returned is read after the claim applied.
//
// Group messages are JSON: they are small and rare next to produce and
// fetch, and JSON keeps them readable in `nats req`.
//
// # Large control messages
//
// Status reports, the metadata broadcast and admin replies larger than
// CompressAbove (or than the NATS max payload) travel zstd-compressed, with
// the NATS header HeaderEncoding; a requester asks for compressed replies
// with HeaderAcceptEncoding (see payload.go).
package protocol
