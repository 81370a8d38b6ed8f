package clients

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/raftmq/raftmq/protocol"
)

// ConsumerOption configures a Consumer (Client.NewConsumer).
type ConsumerOption func(*consumerConfig) error

type consumerConfig struct {
	fetchMaxBytes  int
	fetchMaxWait   time.Duration
	fetchReplies   int
	maxPollRecords int
	resetTo        *Position
}

func newConsumerConfig(opts []ConsumerOption) (consumerConfig, error) {
	config := consumerConfig{
		fetchMaxBytes:  1 << 20,
		fetchMaxWait:   500 * time.Millisecond,
		fetchReplies:   1,
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

// WithFetchReplies is how many replies, of up to WithFetchMaxBytes each, one
// fetch request may bring: while a partition has more committed records,
// its leader sends them one reply after the other without waiting for
// another request, so reading, sending and receiving overlap, and a
// consumer far from its brokers waits for one round trip per stream
// rather than per reply. A partition thus buffers up to about n+2 replies
// (the stream, the one being verified and the one Poll hands out). Default
// 1, one reply per request (the next request still leaves as soon as a
// reply arrives): on one machine, replaying a 3-replica partition over
// loopback took more CPU per record with 4 (every step of the NATS path
// cost more with the sockets kept full) and no less wall time. At most 255.
func WithFetchReplies(n int) ConsumerOption {
	return func(c *consumerConfig) error {
		if n < 1 || n > 255 {
			return fmt.Errorf("clients: fetch replies %d: want 1 to 255", n)
		}
		c.fetchReplies = n
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
	closing chan struct{}     // closed by Close: ends a Poll waiting for results

	mu         sync.Mutex
	partitions map[topicPartition]*partitionFetcher
	generation uint64
	buffered   []*fetchResult // fetched, not yet all handed out
	deferred   error          // error to return from the next Poll
	closed     bool
	// stops counts stopped fetchers (stopLocked; changed under mu). The
	// records Poll and PollEach hand out without mu go stale when their
	// partition is stopped; they check its generation under mu only when
	// this count moved, not for every record.
	stops atomic.Uint64

	// Used by Poll and PollEach only (one goroutine at a time), without mu.
	iterators  []*protocol.RecordIterator // free ones, decompression buffers kept
	record     Record                     // the record PollEach lends to its callback
	takenStops uint64                     // stops when poll took the results it hands out

	// testAfterReceive, when set (by tests), runs in Poll right after it
	// received a fetch result, before it takes mu.
	testAfterReceive func()
	// testBeforeHandOut, when set (by tests), runs in Poll after it took
	// the buffered results and released mu, before it hands them out.
	testBeforeHandOut func()
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
		closing:    make(chan struct{}),
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
	_, err = c.fetchFrom(topicPartition{topic, partition}, offsets.Offset)
	return err
}

// fetchFrom starts tp's fetcher at offset, in place of any running one,
// without a request: Seek once it resolved its position, and a group
// member starting a partition at the offset its claim read, or restarting
// a stopped fetcher at a position it holds. It returns the fetcher's
// generation, which pollGenerations reports with each of its records.
func (c *Consumer) fetchFrom(tp topicPartition, offset uint64) (uint64, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return 0, ErrClosed
	}
	c.stopLocked(tp)
	c.generation++
	fetchCtx, cancel := context.WithCancel(context.Background())
	fetcher := &partitionFetcher{generation: c.generation, cancel: cancel, done: make(chan struct{})}
	c.partitions[tp] = fetcher
	go func() {
		defer close(fetcher.done)
		c.fetchLoop(fetchCtx, tp, fetcher.generation, offset)
	}()
	return fetcher.generation, nil
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
	c.stops.Add(1)
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

// Close stops every fetcher; a Poll or PollEach waiting for records
// returns ErrClosed, as do later calls. Close does not close the Client.
func (c *Consumer) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil
	}
	c.closed = true
	close(c.closing)
	for tp := range c.partitions {
		c.stopLocked(tp)
	}
	return nil
}

// fetchLoop is one partition's fetcher: it fetches from offset on and hands
// each fetch with records to Poll. Fetches are pipelined: each request asks
// the leader for a stream of replies (fetchStream), which the fetcher reads
// and verifies as they come while earlier ones wait for Poll; the next
// request leaves as soon as a stream ends (its last reply names the offset
// to fetch next) while at most fetchQueueLow results wait. So the broker
// reads and sends the next records while this fetcher verifies the last
// ones and while Poll's caller consumes the ones before.
func (c *Consumer) fetchLoop(ctx context.Context, tp topicPartition, generation uint64, offset uint64) {
	stream, err := newFetchStream(c.client, tp, c.config)
	if err != nil {
		c.deliverAll(ctx, tp, generation, []*fetchResult{{err: err}})
		return
	}
	defer stream.close()
	var queue []*fetchResult // verified, waiting for Poll
	// stop handles a failed request (fetchFailed): it reports whether the
	// fetcher must stop, having handed Poll what waits and the error.
	stop := func(err error) bool {
		var failed *fetchResult
		if offset, failed = c.fetchFailed(ctx, stream, tp, offset, err); failed == nil {
			return false
		}
		c.deliverAll(ctx, tp, generation, append(queue, failed))
		return true
	}
	for {
		if !stream.open && len(queue) <= fetchQueueLow {
			if err := stream.send(ctx, offset); err != nil {
				if stop(err) {
					return
				}
				continue
			}
		}
		var results chan<- *fetchResult
		var head *fetchResult
		if len(queue) > 0 {
			results, head = c.results, queue[0]
			head.tp, head.generation = tp, generation
		}
		select {
		case results <- head:
			queue[0] = nil
			queue = queue[1:]
		case msg := <-stream.replies:
			reply, _, ok, err := stream.receive(msg)
			if !ok {
				continue
			}
			if err != nil {
				if stop(err) {
					return
				}
				continue
			}
			stream.succeeded()
			// Ask for what follows before verifying this reply (a pass
			// over all its bytes): the reply's next offset is where its
			// batches end. Should verifying find otherwise, the request
			// is abandoned and sent again from where they do end.
			early, sentEarly := max(reply.NextOffset, offset), false
			if !stream.open && len(queue) < fetchQueueLow && len(reply.Batches) > 0 {
				sentEarly = stream.send(ctx, early) == nil // else sent again, with its error handled, below
			}
			result, next, err := verifyFetched(reply.Batches, reply.NextOffset, offset)
			if err != nil {
				failed := &fetchResult{err: fmt.Errorf("clients: decode fetched records: %w", err)}
				c.deliverAll(ctx, tp, generation, append(queue, failed))
				return
			}
			if sentEarly && next != early {
				stream.abandon()
			}
			offset = next
			if result.pending > 0 {
				queue = append(queue, result)
			}
		case <-stream.expired:
			if stop(stream.timedOut()) {
				return
			}
		case <-ctx.Done():
			return
		}
	}
}

// fetchQueueLow is how many fetched results may wait for Poll when the
// fetcher sends its next request: with one, a fetcher Poll does not keep
// up with holds that one, a stream on its way, and then stops asking.
const fetchQueueLow = 1

// fetchFailed handles a failed fetch request at offset: it waits out the
// backoff of a retriable error, or resets the offset when it is out of
// range and WithOffsetReset says where to, and returns the offset to fetch
// from. Otherwise, it returns the result that reports the error.
func (c *Consumer) fetchFailed(ctx context.Context, stream *fetchStream, tp topicPartition, offset uint64, err error) (uint64, *fetchResult) {
	if ctx.Err() != nil {
		return offset, &fetchResult{err: ctx.Err()}
	}
	switch {
	case retriable(err):
		if err := stream.retry(ctx, err); err != nil {
			return offset, &fetchResult{err: err}
		}
		return offset, nil
	case errors.Is(err, protocol.CodeOffsetOutOfRange) && c.config.resetTo != nil:
		offsets, resetErr := c.client.ListOffsets(ctx, tp.topic, tp.partition, *c.config.resetTo)
		if resetErr != nil {
			return offset, &fetchResult{err: resetErr}
		}
		c.client.logger.Info("raftmq: offset out of range, resetting", "topic", tp.topic,
			"partition", tp.partition, "from", offset, "to", offsets.Offset)
		return offsets.Offset, nil
	}
	return offset, &fetchResult{err: err}
}

// deliverAll hands results to Poll in order, until ctx ends.
func (c *Consumer) deliverAll(ctx context.Context, tp topicPartition, generation uint64, results []*fetchResult) {
	for _, result := range results {
		if ctx.Err() != nil {
			return // stopped: nothing more to report
		}
		result.tp, result.generation = tp, generation
		select {
		case c.results <- result:
		case <-ctx.Done():
			return
		}
	}
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
