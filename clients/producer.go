package clients

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/raftmq/raftmq/protocol"
)

// Producer sends records to topics. Records are batched per partition
// (WithLinger, WithBatchMaxBytes), compressed (WithCompression), sent to the
// partition leader with a bounded number of batches in flight
// (WithMaxInFlight) and retried on retriable errors with backoff and a
// metadata refresh (WithDeliveryTimeout).
//
// Produce is asynchronous and calls a callback per record; ProduceSync
// waits for its records; Flush waits for everything produced so far. A
// Producer is safe for concurrent use.
type Producer struct {
	client *Client
	config producerConfig
	// batchMaxBytes is config.batchMaxBytes capped by the max payload.
	batchMaxBytes int
	// producerID is the idempotent producer id, 0 with idempotence off.
	producerID int64
	clock      producerClock
	// lastCount is the partition count of the last record's topic
	// (lastPartitionCount).
	lastCount atomic.Pointer[partitionCountOf]

	mu         sync.Mutex
	partitions map[topicPartition]*partitionProducer
	// sequences holds the idempotent identity of the partitions whose
	// producer retired (idle), for the next one to continue it: the
	// partition expects the sequence to go on, not to restart. Entries
	// older than retiredSequenceKeep are dropped (retire), and once any
	// was, a partition producer that finds no entry takes a new producer
	// id (forgotSequences): a new identity, which no partition fences.
	sequences       map[topicPartition]retiredSequence
	sequencesPruned time.Time // the last pass dropping old entries
	forgotSequences bool
	// last is the partition producer the last record went to (guarded by
	// mu): consecutive records of one partition skip the map lookup,
	// which hashes the topic name per record.
	last    *partitionProducer
	pending int // records produced and not completed; at most config.maxBufferedRecords
	// pendingBytes is their bufferedSize; at most config.maxBufferedBytes
	// (a single larger record is let in alone).
	pendingBytes int
	idle         chan struct{} // closed when pending drops to 0; replaced when it rises
	// recordsCompleted is non-nil while Produce (for room in the buffer)
	// or Flush waits for records to complete; closed (and cleared) when
	// some do (awaitCompletionLocked).
	recordsCompleted chan struct{}
	closed           bool
	workers          sync.WaitGroup
	stop             <-chan struct{} // closed by Close after the final flush (stopped.Done())
	// stopped ends with stop: the partition producers' requests derive
	// from it, so a Close whose context ended does not wait for them.
	stopped   context.Context
	stopAll   context.CancelFunc
	closeDone chan struct{} // closed when the first Close returns
}

type topicPartition struct {
	topic     string
	partition uint32
}

// requestHeaderRoom is what a produce request needs beside its batch.
const requestHeaderRoom = 1024

// MaxBatchBytes is the largest record batch a producer sends over a NATS
// connection whose max payload is maxPayload (what the server announces):
// one batch travels as one NATS message with its request header, so a
// batch larger than this could not be sent. WithBatchMaxBytes above it is
// lowered to it. A maxPayload of 0 or less (not announced) sets no bound;
// one that leaves no room for a batch gives 0.
func MaxBatchBytes(maxPayload int64) int {
	if maxPayload <= 0 {
		return math.MaxInt
	}
	return max(int(maxPayload)-requestHeaderRoom, 0)
}

// NewProducer returns a producer that sends through c.
func (c *Client) NewProducer(opts ...ProducerOption) (*Producer, error) {
	config, err := newProducerConfig(opts)
	if err != nil {
		return nil, err
	}
	batchMaxBytes := min(config.batchMaxBytes, MaxBatchBytes(c.conn.MaxPayload()))
	idle := make(chan struct{})
	close(idle)
	producerID := int64(0)
	if !config.idempotenceOff {
		producerID = newProducerID()
	}
	stopped, stopAll := context.WithCancel(context.Background())
	return &Producer{
		producerID:    producerID,
		client:        c,
		config:        config,
		batchMaxBytes: batchMaxBytes,
		partitions:    make(map[topicPartition]*partitionProducer),
		sequences:     make(map[topicPartition]retiredSequence),
		idle:          idle,
		stop:          stopped.Done(),
		stopped:       stopped,
		stopAll:       stopAll,
		closeDone:     make(chan struct{}),
	}, nil
}

// ProduceCallback receives a record's outcome: on success err is nil and
// rec.Partition, rec.Offset and rec.Timestamp are set. The callbacks of
// the records a partition took run in produce order, on a goroutine of the
// producer; they must not block (a slow one holds up its partition).
//
// A record that Produce fails at once is not taken by a partition: its
// callback runs on the caller's goroutine before Produce returns, possibly
// before those of records produced earlier to the same partition. That is
// a nil record; one with no topic (and no WithDefaultTopic); one whose
// topic's metadata could not be loaded (unknown topic, ctx ended); one
// the partitioner gave a partition the topic does not have; one whose ctx
// ended while it waited for room in the buffer; one its batch cannot hold
// (a timestamp too far from the batch's first); and one produced once Close
// has begun (ErrClosed).
type ProduceCallback func(rec *Record, err error)

// Produce queues rec for sending and returns; done is called once with the
// outcome. A nil done reports to the producer's WithBatchCallback, or to
// nobody without one. ctx bounds only the wait before the record
// is queued: the first metadata lookup of a topic, and a full buffer
// (WithMaxBufferedRecords). Once queued, a record is governed by the
// delivery timeout. Produce does not keep a reference to rec after its
// callback returns; rec must not be modified before then.
func (p *Producer) Produce(ctx context.Context, rec *Record, done ProduceCallback) {
	if done == nil && p.config.batchCallback == nil {
		done = ignoreOutcome
	}
	if err := p.enqueue(ctx, rec, done); err != nil {
		p.finish(rec, done, err)
	}
}

func ignoreOutcome(*Record, error) {}

// finish reports the outcome of one record: to done, or to the batch
// callback when done is nil.
func (p *Producer) finish(rec *Record, done ProduceCallback, err error) {
	if done != nil {
		done(rec, err)
		return
	}
	p.config.batchCallback([]*Record{rec}, err)
}

func (p *Producer) enqueue(ctx context.Context, rec *Record, done ProduceCallback) error {
	if rec == nil {
		return errors.New("clients: nil record")
	}
	if rec.Topic == "" {
		if p.config.defaultTopic == "" {
			return errors.New("clients: record has no topic and the producer no default topic")
		}
		rec.Topic = p.config.defaultTopic
	}
	// At most one monotonic clock read per record, and none for a record
	// that comes with its timestamp: clock reads are a visible cost at a
	// million records a second. The partition count of the topic of the
	// last record is checked against the cache's generation, which moves
	// whenever the cached metadata may have changed or aged out, without
	// a clock read or a lock.
	if rec.Timestamp.IsZero() {
		rec.Timestamp = p.clock.now()
	}
	partitions, ok := p.lastPartitionCount(rec.Topic)
	if !ok {
		var err error
		if partitions, err = p.partitionCount(ctx, rec.Topic); err != nil {
			return fmt.Errorf("clients: topic %q: %w", rec.Topic, err)
		}
	}
	partition := p.config.partitioner.Partition(rec, partitions)
	if partition < 0 || partition >= partitions {
		return &protocol.Error{Code: protocol.CodeBadPartition,
			Message: fmt.Sprintf("topic %q has %d partitions, no partition %d", rec.Topic, partitions, partition)}
	}
	rec.Partition = uint32(partition)
	size := bufferedSize(rec)
	partitionProducer, full, err := p.partitionProducer(ctx, topicPartition{rec.Topic, rec.Partition}, size)
	if err != nil {
		return err
	}
	partitionProducer.add(pendingRecord{record: rec, done: done, size: size})
	if full {
		p.sealAll()
	}
	return nil
}

// lastPartitionCount is the per-record fast path: the partition count of
// topic when it is the topic the count was last looked up for and the
// metadata cache has not moved to another generation since.
func (p *Producer) lastPartitionCount(topic string) (int, bool) {
	last := p.lastCount.Load()
	if last == nil || last.topic != topic || last.generation != p.client.metadata.generation.Load() {
		return 0, false
	}
	return last.partitions, true
}

// partitionCount looks the partition count of topic up in the metadata
// cache, loading it when missing or stale, and remembers it for
// lastPartitionCount.
func (p *Producer) partitionCount(ctx context.Context, topic string) (int, error) {
	if count := p.client.metadata.partitionCountAt(topic, p.clock.now); count != nil {
		p.lastCount.Store(count)
		return count.partitions, nil
	}
	partitions, err := p.client.metadata.partitionCount(ctx, topic, p.config.deliveryTimeout)
	if err != nil {
		return 0, err
	}
	if count := p.client.metadata.partitionCountAt(topic, p.clock.now); count != nil {
		p.lastCount.Store(count)
	}
	return partitions, nil
}

// sealAll makes every open batch ready to send. It runs when the buffer is
// full: no record can join an open batch until one completes, so lingering
// would only add latency (Kafka's accumulator treats an exhausted buffer
// the same way).
func (p *Producer) sealAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, pp := range p.partitions {
		pp.sealNow()
	}
}

// bufferedSize is what a record counts against WithMaxBufferedBytes: its
// key, value and headers.
func bufferedSize(rec *Record) int {
	size := len(rec.Key) + len(rec.Value)
	for _, h := range rec.Headers {
		size += len(h.Key) + len(h.Value)
	}
	return size
}

// roomFor reports whether a record of size bytes may join the buffer: it
// holds fewer than WithMaxBufferedRecords records and the record fits in
// WithMaxBufferedBytes (or the buffer is empty, so a record larger than
// the bound still goes, alone).
func (p *Producer) roomFor(size int) bool {
	return p.pending < p.config.maxBufferedRecords &&
		(p.pending == 0 || p.pendingBytes+size <= p.config.maxBufferedBytes)
}

// partitionProducer returns the producer of one partition, starting it on
// first use and after it retired; it counts the record about to be added
// (size bytes) as pending, waiting while the buffer has no room for it (or
// until ctx ends). full reports that the buffer is full with this record.
func (p *Producer) partitionProducer(ctx context.Context, tp topicPartition, size int) (_ *partitionProducer, full bool, _ error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for !p.roomFor(size) && !p.closed {
		if err := p.awaitCompletionLocked(ctx); err != nil {
			return nil, false, err
		}
	}
	if p.closed {
		return nil, false, ErrClosed
	}
	if p.pending == 0 {
		p.idle = make(chan struct{})
	}
	p.pending++
	p.pendingBytes += size
	pp := p.last
	if pp == nil || pp.tp != tp {
		pp = p.partitions[tp]
		if pp == nil {
			pp = p.startPartitionProducerLocked(tp)
		}
		p.last = pp
	}
	pp.handedOut++ // before p.mu is unlocked: pp cannot retire until add
	return pp, p.pending >= p.config.maxBufferedRecords || p.pendingBytes >= p.config.maxBufferedBytes, nil
}

// startPartitionProducerLocked starts the producer of partition tp, which
// continues the idempotent identity of the one that retired, if any.
func (p *Producer) startPartitionProducerLocked(tp topicPartition) *partitionProducer {
	pp := newPartitionProducer(p, tp)
	if retired, ok := p.sequences[tp]; ok {
		pp.sequence = retired.sequence
		delete(p.sequences, tp) // run owns it now
	} else if p.forgotSequences && pp.sequence.producerID != 0 {
		// The partition may have known this producer id at a sequence
		// forgotten here: start over as a new producer.
		pp.sequence.producerID = newProducerID()
	}
	p.partitions[tp] = pp
	p.workers.Add(1)
	go func() {
		defer p.workers.Done()
		pp.run()
	}()
	return pp
}

// awaitCompletionLocked waits, with p.mu unlocked meanwhile, until some
// records complete, or returns ctx's error if ctx ends first.
func (p *Producer) awaitCompletionLocked(ctx context.Context) error {
	if p.recordsCompleted == nil {
		p.recordsCompleted = make(chan struct{})
	}
	recordsCompleted := p.recordsCompleted
	p.mu.Unlock()
	defer p.mu.Lock()
	select {
	case <-recordsCompleted:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// completed is called after the callbacks of records holding size bytes
// ran; batchOf is the partition producer whose batch held them, nil for
// records that failed before joining a batch.
func (p *Producer) completed(batchOf *partitionProducer, records, size int) {
	p.mu.Lock()
	p.pending -= records
	p.pendingBytes -= size
	if batchOf != nil {
		batchOf.completedRecords += uint64(records)
	}
	if p.recordsCompleted != nil {
		close(p.recordsCompleted)
		p.recordsCompleted = nil
	}
	if p.pending == 0 {
		close(p.idle)
	}
	p.mu.Unlock()
}

// ProduceResult is the outcome of one record of ProduceSync.
type ProduceResult struct {
	Record *Record
	Err    error
}

// ProduceResults are the outcomes of ProduceSync, in argument order.
type ProduceResults []ProduceResult

// FirstErr returns the first error among the results, or nil.
func (r ProduceResults) FirstErr() error {
	for _, result := range r {
		if result.Err != nil {
			return result.Err
		}
	}
	return nil
}

// ProduceSync sends records and waits until each is acknowledged or failed,
// without waiting for the linger time. On success each record's Partition,
// Offset and Timestamp are set. If ctx ends first, the records not yet
// completed report ctx's error, though they may still be delivered.
func (p *Producer) ProduceSync(ctx context.Context, records ...*Record) ProduceResults {
	results := make(ProduceResults, len(records))
	completed := make([]bool, len(records))
	var resultsMu sync.Mutex
	remaining := len(records)
	allDone := make(chan struct{})
	if remaining == 0 {
		close(allDone)
	}
	touched := make(map[topicPartition]bool)
	for i, rec := range records {
		results[i].Record = rec
		p.Produce(ctx, rec, func(rec *Record, err error) {
			resultsMu.Lock()
			defer resultsMu.Unlock()
			results[i].Err = err
			completed[i] = true
			if remaining--; remaining == 0 {
				close(allDone)
			}
		})
		if rec != nil {
			touched[topicPartition{rec.Topic, rec.Partition}] = true
		}
	}
	p.mu.Lock()
	for tp := range touched {
		if pp := p.partitions[tp]; pp != nil {
			pp.sealNow()
		}
	}
	p.mu.Unlock()
	select {
	case <-allDone:
		return results
	case <-ctx.Done():
	}
	resultsMu.Lock()
	defer resultsMu.Unlock()
	out := make(ProduceResults, len(results))
	copy(out, results)
	for i := range out {
		if !completed[i] {
			out[i].Err = ctx.Err()
		}
	}
	return out
}

// Flush sends every buffered record at once, without waiting for the
// linger time, and waits until every record produced before the call is
// acknowledged or failed, or ctx ends. Records produced during the call
// are not waited for, so Flush returns under a steady load too.
func (p *Producer) Flush(ctx context.Context) error {
	// A partition completes its records in the order it accepted them:
	// those accepted so far are done once as many have completed.
	type flushTarget struct {
		partition *partitionProducer
		accepted  uint64
	}
	p.mu.Lock()
	targets := make([]flushTarget, 0, len(p.partitions))
	for _, pp := range p.partitions {
		targets = append(targets, flushTarget{pp, pp.acceptedRecords()})
		pp.sealNow()
	}
	for {
		for len(targets) > 0 && targets[len(targets)-1].partition.completedRecords >= targets[len(targets)-1].accepted {
			targets = targets[:len(targets)-1]
		}
		if len(targets) == 0 {
			p.mu.Unlock()
			return nil
		}
		if err := p.awaitCompletionLocked(ctx); err != nil {
			p.mu.Unlock()
			return fmt.Errorf("clients: flush: %w", err)
		}
	}
}

// Close flushes, waiting at most until ctx ends, and stops the producer.
// Records still unacknowledged when ctx ends fail with ErrClosed. Later
// Produce calls fail with ErrClosed. Close does not close the Client. A
// Close while another runs waits for it (or until its own ctx ends).
func (p *Producer) Close(ctx context.Context) error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		select {
		case <-p.closeDone:
			return nil
		case <-ctx.Done():
			return fmt.Errorf("clients: close: %w", ctx.Err())
		}
	}
	defer close(p.closeDone)
	p.closed = true
	// No record joins the buffer any more: it is flushed once empty.
	idle := p.idle
	p.mu.Unlock()
	p.sealAll()
	var flushErr error
	select {
	case <-idle:
	case <-ctx.Done():
		flushErr = fmt.Errorf("clients: flush: %w", ctx.Err())
	}
	p.stopAll()
	p.workers.Wait()
	return flushErr
}

// producerClock reads the time with one monotonic clock read instead of
// time.Now's two (wall and monotonic clocks): on the benchmark VM time.Now
// was 5% of a 100 B publish's CPU, about three times a monotonic read.
// The wall time it returns is that of a base reading plus the monotonic
// time elapsed since; the base is read again (both clocks) once it is a
// second old, so a step of the wall clock shows within a second and
// slewing moves a timestamp by well under a millisecond. Safe for
// concurrent use.
type producerClock struct {
	base atomic.Pointer[time.Time]
}

// clockRebase is how long a base reading serves.
const clockRebase = time.Second

func (c *producerClock) now() time.Time {
	if base := c.base.Load(); base != nil {
		if d := time.Since(*base); d >= 0 && d < clockRebase {
			return base.Add(d)
		}
	}
	now := time.Now()
	c.base.Store(&now)
	return now
}
