package clients

import (
	"errors"
	"fmt"
	"time"
)

// ProducerOption configures a Producer (Client.NewProducer).
type ProducerOption func(*producerConfig) error

type producerConfig struct {
	linger             time.Duration
	batchMaxBytes      int
	codec              Codec
	partitioner        Partitioner
	acks               Acks
	maxInFlight        int
	maxBufferedRecords int
	maxBufferedBytes   int
	deliveryTimeout    time.Duration
	defaultTopic       string
	idempotenceOff     bool // WithIdempotence(false) (idempotence.go)
	batchCallback      BatchCallback
	// partitionIdleTimeout is how long a partition producer with nothing
	// to do waits for a record before it stops (retire); tests shorten it.
	partitionIdleTimeout time.Duration
	// retiredSequenceKeep is how long the identity of a retired partition
	// producer is kept for the partition's next one (Producer.sequences);
	// tests shorten it.
	retiredSequenceKeep time.Duration
}

func newProducerConfig(opts []ProducerOption) (producerConfig, error) {
	config := producerConfig{
		linger:               5 * time.Millisecond,
		batchMaxBytes:        512 << 10,
		codec:                CompressionNone,
		acks:                 AcksQuorum,
		maxInFlight:          maxIdempotentInFlight, // 5, as Kafka's producer
		maxBufferedRecords:   100_000,
		maxBufferedBytes:     DefaultMaxBufferedBytes,
		deliveryTimeout:      time.Minute,
		partitionIdleTimeout: defaultPartitionIdleTimeout,
		retiredSequenceKeep:  defaultRetiredSequenceKeep,
	}
	for _, opt := range opts {
		if err := opt(&config); err != nil {
			return producerConfig{}, err
		}
	}
	if config.partitioner == nil {
		config.partitioner = KeyHashPartitioner()
	}
	if err := config.validateIdempotence(); err != nil {
		return producerConfig{}, err
	}
	return config, nil
}

// WithLinger is how long a partition's batch waits for more records before
// it is sent while an earlier batch of the same partition is in flight,
// trading latency for larger batches. A partition with nothing in flight
// sends at once (as Nagle's algorithm does): records produced while that
// batch awaits its acknowledgement gather into the next one, so an idle or
// lightly loaded producer adds no linger to its latency and a busy one
// still sends large batches. A full batch (WithBatchMaxBytes), Flush and
// ProduceSync send at once. 0 sends as soon as the partition has a free
// in-flight slot. Default 5ms.
func WithLinger(d time.Duration) ProducerOption {
	return func(c *producerConfig) error {
		if d < 0 {
			return fmt.Errorf("clients: linger %v is negative", d)
		}
		c.linger = d
		return nil
	}
}

// WithBatchMaxBytes bounds the uncompressed size of one batch. It is capped
// at the NATS connection's max payload minus room for the request header.
// A single larger record is sent in a batch of its own (and the broker may
// refuse it with batch_too_large, naming its limit); one whose request,
// compressed or not, is over the NATS max payload fails with
// record_too_large without being sent. Default 512 KiB.
func WithBatchMaxBytes(n int) ProducerOption {
	return func(c *producerConfig) error {
		if n < 1024 {
			return fmt.Errorf("clients: batch max bytes %d: need at least 1024", n)
		}
		c.batchMaxBytes = n
		return nil
	}
}

// WithCompression compresses every batch with codec: CompressionNone,
// CompressionS2 or CompressionZstd. Brokers store and serve batches as
// sent; consumers decompress. Default CompressionNone.
func WithCompression(codec Codec) ProducerOption {
	return func(c *producerConfig) error {
		if !codec.Valid() {
			return fmt.Errorf("clients: unknown compression codec %d", uint8(codec))
		}
		c.codec = codec
		return nil
	}
}

// WithPartitioner sets how records are spread over partitions:
// KeyHashPartitioner, RoundRobinPartitioner, ManualPartitioner or your own.
// Default KeyHashPartitioner (round robin for records without a key).
func WithPartitioner(p Partitioner) ProducerOption {
	return func(c *producerConfig) error {
		if p == nil {
			return errors.New("clients: nil partitioner")
		}
		c.partitioner = p
		return nil
	}
}

// WithAcks sets when the cluster acknowledges a batch: AcksQuorum (durable
// on a quorum), AcksApplied (also visible to consumers) or AcksLeaderUnsafe
// (appended on the leader only; may be lost). Default AcksQuorum.
func WithAcks(acks Acks) ProducerOption {
	return func(c *producerConfig) error {
		if !acks.Valid() {
			return fmt.Errorf("clients: unknown acks mode %d", uint8(acks))
		}
		c.acks = acks
		return nil
	}
}

// WithMaxInFlight bounds the batches sent to one partition and not yet
// acknowledged. Batches leave in order and the broker appends them in the
// order they arrive; after a "not leader" error or a timeout every
// unacknowledged batch is resent in order. With idempotence (the default,
// WithIdempotence) retries neither duplicate nor reorder batches, and n may
// be at most 5. Without it, a batch that times out while later ones succeed
// is retried after them (and may be duplicated, as its first attempt may
// have been committed): use 1 where strict order under timeouts matters.
// Default 5 (as Kafka's max.in.flight.requests.per.connection).
func WithMaxInFlight(n int) ProducerOption {
	return func(c *producerConfig) error {
		if n < 1 {
			return fmt.Errorf("clients: max in-flight %d: need at least 1", n)
		}
		c.maxInFlight = n
		return nil
	}
}

// WithMaxBufferedRecords bounds the records produced and not yet
// acknowledged, across all partitions; Produce blocks while the bound is
// reached, until a record completes or its context ends. Their bytes are
// bounded by WithMaxBufferedBytes. Default 100,000.
func WithMaxBufferedRecords(n int) ProducerOption {
	return func(c *producerConfig) error {
		if n < 1 {
			return fmt.Errorf("clients: max buffered records %d: need at least 1", n)
		}
		c.maxBufferedRecords = n
		return nil
	}
}

// DefaultMaxBufferedBytes is the default of WithMaxBufferedBytes.
const DefaultMaxBufferedBytes = 64 << 20

// WithMaxBufferedBytes bounds the bytes (keys, values and headers) of the
// records produced and not yet acknowledged, across all partitions, as
// Kafka's buffer.memory does; Produce blocks while a record does not fit,
// until records complete or its context ends. A record larger than the
// bound is let in once the buffer is empty. The producer keeps the records
// (it does not copy them) and one encoded copy of each batch, so the
// memory it holds for buffered records is at most about twice the bound.
// The default lets WithMaxInFlight full 1 MiB batches be in flight on a
// dozen partitions at once. Default 64 MiB (DefaultMaxBufferedBytes).
func WithMaxBufferedBytes(n int) ProducerOption {
	return func(c *producerConfig) error {
		if n < 1 {
			return fmt.Errorf("clients: max buffered bytes %d: need at least 1", n)
		}
		c.maxBufferedBytes = n
		return nil
	}
}

// WithDeliveryTimeout bounds how long a record may take, retries included,
// from Produce to its acknowledgement; after it the record fails with the
// last error seen (a timeout if it was never sent), unless an attempt
// already on its way is answered. Retriable errors (not leader, no leader
// yet, timeouts, brokers unreachable, the NATS connection reconnecting)
// are retried with backoff until then. Default 1 minute.
func WithDeliveryTimeout(d time.Duration) ProducerOption {
	return func(c *producerConfig) error {
		if d <= 0 {
			return fmt.Errorf("clients: delivery timeout %v must be positive", d)
		}
		c.deliveryTimeout = d
		return nil
	}
}

// WithDefaultTopic is the topic of records whose Topic is empty. Default
// none: such records fail.
func WithDefaultTopic(topic string) ProducerOption {
	return func(c *producerConfig) error {
		c.defaultTopic = topic
		return nil
	}
}

// BatchCallback receives the outcome of records that completed together:
// consecutive records of one partition, in produce order, all with the
// same outcome (on success err is nil and each record's Partition, Offset
// and Timestamp are set). records and the slice are valid only during the
// call: the producer reuses the slice and keeps no reference to the
// records once the callback returns. Calls for one partition run in
// produce order (interleaved in order with the ProduceCallbacks of
// records produced with one), on a goroutine of the producer, or on the
// caller's goroutine with one record when Produce fails at once; they
// must not block.
type BatchCallback func(records []*Record, err error)

// WithBatchCallback makes fn the callback of every record produced with a
// nil ProduceCallback: the records of one acknowledged (or failed) batch
// reach fn in one call instead of one call per record, which spares a
// busy producer a function call and whatever per-call work the caller
// does (a lock, a clock read) per record. Records produced with a
// ProduceCallback keep it. Default none: a record produced with a nil
// callback reports to nobody.
func WithBatchCallback(fn BatchCallback) ProducerOption {
	return func(c *producerConfig) error {
		c.batchCallback = fn
		return nil
	}
}
