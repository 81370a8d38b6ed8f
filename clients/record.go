package clients

import (
	"fmt"
	"sync/atomic"
	"time"

	"github.com/raftmq/raftmq/protocol"
)

// Record is one message: what a producer sends and a consumer receives.
type Record struct {
	// Topic names the topic. A producer with WithDefaultTopic fills it in
	// when empty.
	Topic string
	// Partition is the partition the record went to or came from. A producer
	// using ManualPartitioner sends to this partition; other partitioners
	// overwrite it.
	Partition uint32
	// Offset is the record's position in its partition, assigned by the
	// cluster; set on a successful produce and on every consumed record.
	Offset uint64
	// Key is optional; KeyHashPartitioner sends records with equal keys to
	// the same partition. A nil Key is no key; an empty non-nil one is a
	// key like any other (the empty key), hashed and stored as such.
	Key []byte
	// Value is the payload.
	Value []byte
	// Headers are optional key/value pairs carried with the record.
	Headers []Header
	// Timestamp is the record's create time, millisecond resolution. A
	// producer sets it to the current time when zero.
	Timestamp time.Time
}

// Header is a record header.
type Header struct {
	Key   string
	Value []byte
}

// A Partitioner chooses the partition of a record. It must be safe for
// concurrent use.
type Partitioner interface {
	// Partition returns a partition in [0, partitions) for rec; partitions
	// is at least 1.
	Partition(rec *Record, partitions int) int
}

// KeyHashPartitioner sends a record with a key to
// protocol.PartitionForKey(key, partitions), the partition the plain NATS
// publish subject also picks for that key (an empty key, non-nil, is
// hashed too), and spreads records without a key (Key nil) round robin.
// It is the default.
func KeyHashPartitioner() Partitioner { return &keyHashPartitioner{} }

type keyHashPartitioner struct{ roundRobin roundRobinPartitioner }

func (k *keyHashPartitioner) Partition(rec *Record, partitions int) int {
	if rec.Key == nil {
		return k.roundRobin.Partition(rec, partitions)
	}
	return protocol.PartitionForKey(rec.Key, partitions)
}

// RoundRobinPartitioner spreads records over the partitions in turn,
// ignoring keys.
func RoundRobinPartitioner() Partitioner { return &roundRobinPartitioner{} }

type roundRobinPartitioner struct{ next atomic.Uint64 }

func (r *roundRobinPartitioner) Partition(_ *Record, partitions int) int {
	return int((r.next.Add(1) - 1) % uint64(partitions))
}

// ManualPartitioner sends every record to the partition in its Partition
// field; a partition the topic does not have fails the record with a
// protocol.CodeBadPartition error.
func ManualPartitioner() Partitioner { return manualPartitioner{} }

type manualPartitioner struct{}

func (manualPartitioner) Partition(rec *Record, _ int) int { return int(rec.Partition) }

// Position says where a consumer starts reading a partition. Make one with
// Earliest, Latest, AtOffset or AtTime.
type Position struct {
	kind   positionKind
	offset uint64
	time   time.Time
}

type positionKind uint8

const (
	positionEarliest positionKind = iota
	positionLatest
	positionOffset
	positionTime
)

// Earliest is the first record still held by the partition.
func Earliest() Position { return Position{kind: positionEarliest} }

// Latest is the end of the partition: only records produced from now on.
func Latest() Position { return Position{kind: positionLatest} }

// AtOffset is the record with the given offset.
func AtOffset(offset uint64) Position { return Position{kind: positionOffset, offset: offset} }

// AtTime is the first record whose batch has a timestamp at or after t (the
// end of the partition when there is none).
func AtTime(t time.Time) Position { return Position{kind: positionTime, time: t} }

func (p Position) String() string {
	switch p.kind {
	case positionEarliest:
		return "earliest"
	case positionLatest:
		return "latest"
	case positionOffset:
		return fmt.Sprintf("offset %d", p.offset)
	}
	return "time " + p.time.Format(time.RFC3339Nano)
}

// Acks says when the cluster acknowledges a produced batch.
type Acks = protocol.Acks

const (
	// AcksQuorum acknowledges a batch once it is durable on a quorum of
	// replicas. The default; an acknowledged record survives the loss of a
	// minority of brokers.
	AcksQuorum = protocol.AcksQuorum
	// AcksLeaderUnsafe acknowledges once the partition leader has appended
	// the batch, before it is durable or replicated. Unsafe: acknowledged
	// records are lost if the leader fails before replicating them.
	AcksLeaderUnsafe = protocol.AcksLeader
	// AcksApplied acknowledges once the batch is committed and visible to
	// consumers.
	AcksApplied = protocol.AcksApplied
)

// Codec is a record batch compression codec.
type Codec = protocol.Codec

const (
	// CompressionNone sends records uncompressed.
	CompressionNone = protocol.CodecNone
	// CompressionS2 compresses batches with S2 (klauspost/compress): fast,
	// moderate ratio.
	CompressionS2 = protocol.CodecS2
	// CompressionZstd compresses batches with zstd: slower, better ratio.
	CompressionZstd = protocol.CodecZstd
)
