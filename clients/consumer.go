package clients

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/raftmq/raftmq/protocol"
)

// ConsumerOption configures a Consumer (Client.NewConsumer).
type ConsumerOption func(*consumerConfig) error

type consumerConfig struct {
	fetchMaxBytes  int
	fetchMaxWait   time.Duration
	maxPollRecords int
	resetTo        *Position
}

func newConsumerConfig(opts []ConsumerOption) (consumerConfig, error) {
	config := consumerConfig{
		fetchMaxBytes:  1 << 20,
		fetchMaxWait:   500 * time.Millisecond,
		maxPollRecords: 10_000,
	}
	for _, opt := range opts {
		if err := opt(&config); err != nil {
			return consumerConfig{}, err
		}
	}
	return config, nil
}

// WithFetchMaxBytes bounds the record batch bytes of one fetch reply; a
// batch larger than that still comes, alone. It is capped at the NATS
// connection's max payload minus room for the reply header. Default 1 MiB.
func WithFetchMaxBytes(n int) ConsumerOption {
	return func(c *consumerConfig) error {
		if n < 1024 {
			return fmt.Errorf("clients: fetch max bytes %d: need at least 1024", n)
		}
		c.fetchMaxBytes = n
		return nil
	}
}

// WithFetchMaxWait is how long a broker holds a fetch when nothing new is
// committed (long poll). Default 500ms.
func WithFetchMaxWait(d time.Duration) ConsumerOption {
	return func(c *consumerConfig) error {
		if d < 0 {
			return fmt.Errorf("clients: fetch max wait %v is negative", d)
		}
		c.fetchMaxWait = d
		return nil
	}
}

// WithMaxPollRecords bounds the records one Poll returns. Default 10,000.
func WithMaxPollRecords(n int) ConsumerOption {
	return func(c *consumerConfig) error {
		if n < 1 {
			return fmt.Errorf("clients: max poll records %d: need at least 1", n)
		}
		c.maxPollRecords = n
		return nil
	}
}

// WithOffsetReset makes a partition whose fetch offset is out of range (its
// records were deleted by retention, or it is past the end) continue from
// position instead of reporting the error. Default: no reset; Poll returns a
// *PartitionError matching protocol.CodeOffsetOutOfRange and the partition
// stops until Seek.
func WithOffsetReset(position Position) ConsumerOption {
	return func(c *consumerConfig) error {
		if position.kind == positionOffset {
			return errors.New("clients: offset reset must be Earliest, Latest or AtTime")
		}
		c.resetTo = &position
		return nil
	}
}

// Consumer reads records from the partitions assigned to it. Each assigned
// partition has a fetcher that long-polls the partition leader and fetches
// the next batch while the previous one is being consumed (prefetch). Poll
// returns records in offset order within each partition.
//
// Assign, Seek, Unassign and Close may be called from any goroutine; Poll
// from one goroutine at a time.
type Consumer struct {
	client  *Client
	config  consumerConfig
	results chan fetchResult // unbuffered: a fetcher holds one result ahead

	mu         sync.Mutex
	partitions map[topicPartition]*partitionFetcher
	generation uint64
	leftover   []*Record // fetched, not yet returned by Poll
	deferred   error     // error to return from the next Poll
	closed     bool
}

type partitionFetcher struct {
	generation uint64
	cancel     context.CancelFunc
	done       chan struct{}
}

type fetchResult struct {
	tp         topicPartition
	generation uint64
	records    []*Record
	err        error
}

// PartitionError is an error of one partition reported by Poll; the
// partition's fetcher has stopped (Seek restarts it).
type PartitionError struct {
	Topic     string
	Partition uint32
	Err       error
}

func (e *PartitionError) Error() string {
	return fmt.Sprintf("clients: consume %s/%d: %v", e.Topic, e.Partition, e.Err)
}

func (e *PartitionError) Unwrap() error { return e.Err }

// NewConsumer returns a consumer with no partitions assigned.
func (c *Client) NewConsumer(opts ...ConsumerOption) (*Consumer, error) {
	config, err := newConsumerConfig(opts)
	if err != nil {
		return nil, err
	}
	if maxPayload := int(c.conn.MaxPayload()); maxPayload > 0 && config.fetchMaxBytes > maxPayload-requestHeaderRoom {
		config.fetchMaxBytes = maxPayload - requestHeaderRoom
	}
	return &Consumer{
		client:     c,
		config:     config,
		results:    make(chan fetchResult),
		partitions: make(map[topicPartition]*partitionFetcher),
	}, nil
}

// Assign starts consuming partitions of topic from start; with no
// partitions listed, every partition of the topic. Positions are resolved
// before Assign returns, so Latest means "records produced after Assign".
// Assigning a partition that is assigned already moves it to start.
func (c *Consumer) Assign(ctx context.Context, topic string, start Position, partitions ...uint32) error {
	if len(partitions) == 0 {
		c.client.metadata.forget(topic)
		info, err := c.client.metadata.topicWithRetry(ctx, topic, c.client.config.requestTimeout)
		if err != nil {
			return fmt.Errorf("clients: assign %s: %w", topic, err)
		}
		for _, p := range info.Partitions {
			partitions = append(partitions, p.Partition)
		}
		if len(partitions) == 0 {
			return fmt.Errorf("clients: assign %s: topic has no partitions", topic)
		}
	}
	for _, partition := range partitions {
		if err := c.Seek(ctx, topic, partition, start); err != nil {
			return err
		}
	}
	return nil
}

// Seek moves a partition to position, assigning it if needed. Records
// fetched before the seek and not yet returned by Poll are dropped.
func (c *Consumer) Seek(ctx context.Context, topic string, partition uint32, position Position) error {
	offsets, err := c.client.ListOffsets(ctx, topic, partition, position)
	if err != nil {
		return err
	}
	tp := topicPartition{topic, partition}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return ErrClosed
	}
	c.stopLocked(tp)
	c.generation++
	fetchCtx, cancel := context.WithCancel(context.Background())
	fetcher := &partitionFetcher{generation: c.generation, cancel: cancel, done: make(chan struct{})}
	c.partitions[tp] = fetcher
	go func() {
		defer close(fetcher.done)
		c.fetchLoop(fetchCtx, tp, fetcher.generation, offsets.Offset)
	}()
	return nil
}

// Unassign stops consuming partitions of topic; with none listed, all of
// the topic's assigned partitions.
func (c *Consumer) Unassign(topic string, partitions ...uint32) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for tp := range c.partitions {
		if tp.topic == topic && (len(partitions) == 0 || slices.Contains(partitions, tp.partition)) {
			c.stopLocked(tp)
		}
	}
}

// stopLocked stops a partition's fetcher and drops its leftover records.
func (c *Consumer) stopLocked(tp topicPartition) {
	fetcher := c.partitions[tp]
	if fetcher == nil {
		return
	}
	delete(c.partitions, tp)
	fetcher.cancel()
	<-fetcher.done
	c.leftover = slices.DeleteFunc(c.leftover, func(r *Record) bool {
		return r.Topic == tp.topic && r.Partition == tp.partition
	})
}

// Assigned returns the assigned partitions, sorted.
func (c *Consumer) Assigned() map[string][]uint32 {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string][]uint32)
	for tp := range c.partitions {
		out[tp.topic] = append(out[tp.topic], tp.partition)
	}
	for _, partitions := range out {
		slices.Sort(partitions)
	}
	return out
}

// Poll waits until records are available or ctx ends and returns up to
// WithMaxPollRecords of them, in offset order within each partition. A
// partition that fails for good (an unknown topic, an offset out of range
// without WithOffsetReset) yields a *PartitionError, after the records
// fetched before it. When ctx ends with nothing fetched, Poll returns
// ctx's error.
func (c *Consumer) Poll(ctx context.Context) ([]*Record, error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, ErrClosed
	}
	if err := c.deferred; err != nil {
		c.deferred = nil
		c.mu.Unlock()
		return nil, err
	}
	if len(c.leftover) > 0 {
		records := c.takeLeftoverLocked()
		c.mu.Unlock()
		return records, nil
	}
	c.mu.Unlock()

	var result fetchResult
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case result = <-c.results:
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var errs []error
	c.acceptLocked(result, &errs)
	for len(c.leftover) < c.config.maxPollRecords {
		select {
		case result = <-c.results:
			c.acceptLocked(result, &errs)
			continue
		default:
		}
		break
	}
	records := c.takeLeftoverLocked()
	err := errors.Join(errs...)
	if err != nil && len(records) > 0 {
		c.deferred, err = err, nil
	}
	return records, err
}

// acceptLocked keeps a fetch result if its fetcher is still current.
func (c *Consumer) acceptLocked(result fetchResult, errs *[]error) {
	fetcher := c.partitions[result.tp]
	if fetcher == nil || fetcher.generation != result.generation {
		return // from before a Seek or Unassign
	}
	if len(c.leftover) == 0 {
		c.leftover = result.records // no copy: the fetch's slice is Poll's from now on
	} else {
		c.leftover = append(c.leftover, result.records...)
	}
	if result.err != nil {
		*errs = append(*errs, &PartitionError{Topic: result.tp.topic, Partition: result.tp.partition, Err: result.err})
	}
}

// takeLeftoverLocked hands out up to max poll records of leftover without
// copying: the returned slice's capacity ends where the rest begins, so
// neither side's appends reach the other's records.
func (c *Consumer) takeLeftoverLocked() []*Record {
	n := min(len(c.leftover), c.config.maxPollRecords)
	records := c.leftover[:n:n]
	c.leftover = c.leftover[n:]
	if len(c.leftover) == 0 {
		c.leftover = nil
	}
	return records
}

// Close stops every fetcher. Close does not close the Client.
func (c *Consumer) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil
	}
	c.closed = true
	for tp := range c.partitions {
		c.stopLocked(tp)
	}
	return nil
}

// fetchLoop is one partition's fetcher: it fetches from offset on, hands
// each non-empty batch of records to Poll and fetches the next meanwhile.
func (c *Consumer) fetchLoop(ctx context.Context, tp topicPartition, generation uint64, offset uint64) {
	deliver := func(records []*Record, err error) bool {
		select {
		case c.results <- fetchResult{tp: tp, generation: generation, records: records, err: err}:
			return true
		case <-ctx.Done():
			return false
		}
	}
	for ctx.Err() == nil {
		records, next, err := c.fetch(ctx, tp, offset)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			if errors.Is(err, protocol.CodeOffsetOutOfRange) && c.config.resetTo != nil {
				offsets, resetErr := c.client.ListOffsets(ctx, tp.topic, tp.partition, *c.config.resetTo)
				if resetErr == nil {
					c.client.logger.Info("raftmq: offset out of range, resetting", "topic", tp.topic,
						"partition", tp.partition, "from", offset, "to", offsets.Offset)
					offset = offsets.Offset
					continue
				}
				err = resetErr
			}
			deliver(nil, err)
			return
		}
		offset = next
		if len(records) > 0 && !deliver(records, nil) {
			return
		}
	}
}

// fetch reads the records at offset and after, long-polling the leader.
func (c *Consumer) fetch(ctx context.Context, tp topicPartition, offset uint64) ([]*Record, uint64, error) {
	request := protocol.AppendFetchRequest(nil, &protocol.FetchRequest{
		Topic: tp.topic, Partition: tp.partition, Offset: offset,
		MaxBytes: uint32(c.config.fetchMaxBytes), MaxWait: c.config.fetchMaxWait,
	})
	var records []*Record
	next := offset
	err := c.client.callLeader(ctx, tp, protocol.SubjectBrokerFetch, request, c.config.fetchMaxWait, func(data []byte) error {
		reply, err := protocol.DecodeFetchReply(data)
		if err != nil {
			return err
		}
		if reply.Err != nil {
			return reply.Err
		}
		records, err = decodeBatches(tp, reply.Batches, offset)
		if err != nil {
			return err
		}
		next = max(reply.NextOffset, offset)
		if n := len(records); n > 0 {
			next = max(next, records[n-1].Offset+1)
		}
		return nil
	})
	return records, next, err
}

// decodeBatches decodes concatenated batches, skipping records before
// offset. Records of uncompressed batches alias data, which the caller
// never reuses; others are copied out of the decompression buffer.
func decodeBatches(tp topicPartition, data []byte, offset uint64) ([]*Record, error) {
	records, err := decodeBatchRecords(tp, data, offset)
	if err != nil {
		return nil, fmt.Errorf("clients: decode fetched records: %w", err)
	}
	return records, nil
}

func decodeBatchRecords(tp topicPartition, data []byte, offset uint64) ([]*Record, error) {
	// The records live in chunks of recordChunk (sized from the batch
	// headers), so a fetch allocates per chunk, not per record; chunks
	// rather than one slice keep each allocation small (one huge block of
	// pointers costs the collector more than it saves).
	total := 0
	for rest := data; len(rest) > 0; {
		batch, h, err := nextBatch(rest)
		if err != nil {
			return nil, err
		}
		rest = rest[len(batch):]
		if h.LastOffset() >= offset {
			total += int(h.RecordCount)
		}
	}
	var slab []Record
	records := make([]*Record, 0, total)
	var iterator protocol.RecordIterator
	for rest := data; len(rest) > 0; {
		batch, h, _ := nextBatch(rest) // checked above
		rest = rest[len(batch):]
		if h.LastOffset() < offset {
			continue
		}
		if err := iterator.Reset(batch); err != nil { // the batch's CRC check
			return nil, err
		}
		copyBytes := h.Codec != protocol.CodecNone
		for iterator.Next() {
			r := iterator.Record()
			if r.Offset < offset {
				continue
			}
			if len(slab) == cap(slab) { // a new chunk; earlier records keep theirs
				slab = make([]Record, 0, max(min(total-len(records), recordChunk), 1))
			}
			slab = append(slab, Record{
				Topic: tp.topic, Partition: tp.partition, Offset: r.Offset,
				Key: r.Key, Value: r.Value, Timestamp: time.UnixMilli(r.Timestamp),
			})
			rec := &slab[len(slab)-1]
			if copyBytes {
				rec.Key, rec.Value = cloneBytes(r.Key), cloneBytes(r.Value)
			}
			for _, header := range r.Headers {
				value := header.Value
				if copyBytes {
					value = cloneBytes(value)
				}
				rec.Headers = append(rec.Headers, Header{Key: header.Key, Value: value})
			}
			records = append(records, rec)
		}
		if err := iterator.Err(); err != nil {
			return nil, err
		}
	}
	return records, nil
}

// recordChunk is how many Records decodeBatchRecords allocates at once.
const recordChunk = 128

// nextBatch splits the first batch off concatenated batches by its header
// (its CRC is checked when its records are decoded).
func nextBatch(b []byte) ([]byte, protocol.BatchHeader, error) {
	h, err := protocol.ReadBatchHeader(b)
	if err != nil {
		return nil, h, err
	}
	if uint64(h.Length) > uint64(len(b)) {
		return nil, h, fmt.Errorf("%w: batch of %d bytes, only %d left", protocol.ErrCorruptBatch, h.Length, len(b))
	}
	return b[:h.Length], h, nil
}

// cloneBytes copies b, keeping nil distinct from empty.
func cloneBytes(b []byte) []byte {
	if b == nil {
		return nil
	}
	return append(make([]byte, 0, len(b)), b...)
}
