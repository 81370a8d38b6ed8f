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
// partition has a fetcher that long-polls the partition leader and keeps the
// next fetch in flight while the previous one is being consumed (pipelined
// prefetch). Poll and PollEach return records in offset order within each
// partition.
//
// Fetched batches are kept as the bytes the broker sent (the log's own
// bytes) and decoded only when Poll or PollEach hands their records out:
// PollEach without allocating or copying, Poll into Records it allocates.
//
// Assign, Seek, Unassign and Close may be called from any goroutine; Poll
// and PollEach from one goroutine at a time.
type Consumer struct {
	client  *Client
	config  consumerConfig
	results chan *fetchResult // unbuffered: a fetcher holds one result ahead

	mu         sync.Mutex
	partitions map[topicPartition]*partitionFetcher
	generation uint64
	buffered   []*fetchResult // fetched, not yet all handed out
	deferred   error          // error to return from the next Poll
	closed     bool

	// Used by Poll and PollEach only (one goroutine at a time), without mu.
	iterators []*protocol.RecordIterator // free ones, decompression buffers kept
	record    Record                     // the record PollEach lends to its callback
}

type partitionFetcher struct {
	generation uint64
	cancel     context.CancelFunc
	done       chan struct{}
}

// fetchResult is one fetch's verified batches, or a fetcher's final error.
// Poll and PollEach consume it from the front.
type fetchResult struct {
	tp         topicPartition
	generation uint64
	batches    []byte // verified batches whose records are not all handed out
	offset     uint64 // records before offset are skipped: handed out, or before the fetch offset
	pending    int    // records in batches at or after offset
	err        error

	// cursor, when set, is positioned in the first batch after the last
	// record handed out, so the next Poll goes on without decoding that
	// batch again.
	cursor *protocol.RecordIterator
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
		results:    make(chan *fetchResult),
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

// stopLocked stops a partition's fetcher and drops its buffered records.
func (c *Consumer) stopLocked(tp topicPartition) {
	fetcher := c.partitions[tp]
	if fetcher == nil {
		return
	}
	delete(c.partitions, tp)
	fetcher.cancel()
	<-fetcher.done
	c.buffered = slices.DeleteFunc(c.buffered, func(result *fetchResult) bool { return result.tp == tp })
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

// fetchLoop is one partition's fetcher: it fetches from offset on and hands
// each fetch with records to Poll. Fetches are pipelined: the next request
// leaves as soon as a reply arrives (its header names the offset to fetch
// next), so the broker reads and sends the next fetch while this one is
// verified and while Poll's caller consumes the one before.
func (c *Consumer) fetchLoop(ctx context.Context, tp topicPartition, generation uint64, offset uint64) {
	deliver := func(result *fetchResult) bool {
		result.tp, result.generation = tp, generation
		select {
		case c.results <- result:
			return true
		case <-ctx.Done():
			return false
		}
	}
	pending := c.startFetch(ctx, tp, offset)
	for {
		var response fetchResponse
		select {
		case response = <-pending:
		case <-ctx.Done():
			return
		}
		if err := response.err; err != nil {
			if ctx.Err() != nil {
				return
			}
			if errors.Is(err, protocol.CodeOffsetOutOfRange) && c.config.resetTo != nil {
				offsets, resetErr := c.client.ListOffsets(ctx, tp.topic, tp.partition, *c.config.resetTo)
				if resetErr == nil {
					c.client.logger.Info("raftmq: offset out of range, resetting", "topic", tp.topic,
						"partition", tp.partition, "from", offset, "to", offsets.Offset)
					offset = offsets.Offset
					pending = c.startFetch(ctx, tp, offset)
					continue
				}
				err = resetErr
			}
			deliver(&fetchResult{err: err})
			return
		}
		result, next, err := verifyFetched(response.batches, response.nextOffset, offset)
		if err != nil {
			deliver(&fetchResult{err: fmt.Errorf("clients: decode fetched records: %w", err)})
			return
		}
		pending = c.startFetch(ctx, tp, next)
		offset = next
		if result.pending > 0 && !deliver(result) {
			return
		}
	}
}

// fetchResponse is a successful fetch's batches and next offset, or its error.
type fetchResponse struct {
	batches    []byte // the reply's batches, owned by the fetcher
	nextOffset uint64
	err        error
}

// startFetch sends a fetch for offset and returns where its response
// arrives. The channel is buffered, so an abandoned fetch never blocks.
func (c *Consumer) startFetch(ctx context.Context, tp topicPartition, offset uint64) <-chan fetchResponse {
	responses := make(chan fetchResponse, 1)
	go func() {
		batches, next, err := c.fetch(ctx, tp, offset)
		responses <- fetchResponse{batches: batches, nextOffset: next, err: err}
	}()
	return responses
}

// fetch reads the batches at offset and after, long-polling the leader
// (retrying retriable errors until ctx ends). It returns the reply's
// batches, not yet verified, and the reply's next offset.
func (c *Consumer) fetch(ctx context.Context, tp topicPartition, offset uint64) ([]byte, uint64, error) {
	request := protocol.AppendFetchRequest(nil, &protocol.FetchRequest{
		Topic: tp.topic, Partition: tp.partition, Offset: offset,
		MaxBytes: uint32(c.config.fetchMaxBytes), MaxWait: c.config.fetchMaxWait,
	})
	var batches []byte
	next := offset
	err := c.client.callLeader(ctx, tp, protocol.SubjectBrokerFetch, request, c.config.fetchMaxWait, func(data []byte) error {
		reply, err := protocol.DecodeFetchReply(data)
		if err != nil {
			return err
		}
		if reply.Err != nil {
			return reply.Err
		}
		batches, next = reply.Batches, reply.NextOffset
		return nil
	})
	return batches, next, err
}

// verifyFetched checks the batches of a fetch at offset (structure and
// CRC), drops those wholly before offset and counts the records to hand
// out. It returns the offset to fetch next: the reply's next offset, but
// never before offset nor before the end of the last batch.
func verifyFetched(batches []byte, replyNext, offset uint64) (*fetchResult, uint64, error) {
	result := &fetchResult{offset: offset}
	next := max(replyNext, offset)
	for rest := batches; len(rest) > 0; {
		batch, _, err := nextBatch(rest)
		if err != nil {
			return nil, 0, err
		}
		h, err := protocol.VerifyBatch(batch)
		if err != nil {
			return nil, 0, err
		}
		rest = rest[len(batch):]
		if h.RecordCount == 0 || h.LastOffset() < offset {
			if result.batches == nil {
				batches = rest // nothing wanted in it: skip it
			}
			continue
		}
		result.batches = batches[:len(batches)-len(rest)]
		result.pending += int(h.RecordCount) - int(max(offset, h.BaseOffset)-h.BaseOffset)
		next = max(next, h.LastOffset()+1)
	}
	return result, next, nil
}

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
