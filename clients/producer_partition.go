package clients

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/raftmq/raftmq/protocol"
)

// partitionProducer batches and sends the records of one partition. Produce
// callers add records under mu; one goroutine (run) owns everything else:
// taking batches, sending them, retries and completing them in order.
//
// A partition producer that has had nothing to do for the producer's
// partitionIdleTimeout (defaultPartitionIdleTimeout) retires: its run
// exits and Producer.partitions forgets it, so a producer that wrote to
// many short-lived topics does not keep a goroutine per partition; the
// next record of the partition starts a new one. Locks: Producer.mu
// before mu.
type partitionProducer struct {
	producer *Producer
	tp       topicPartition
	wake     chan struct{} // capacity 1: something was added or sealed, or a reply queued

	// handedOut counts the records Producer.partitionProducer returned
	// this producer for (guarded by producer.mu); arrived those of them
	// that reached add (guarded by mu). While they differ a record is on
	// its way to add, and the producer must not retire.
	handedOut uint64
	arrived   uint64

	mu     sync.Mutex
	open   *pendingBatch   // accepting records
	sealed []*pendingBatch // full or flushed, waiting to be sent
	// stopped: run has exited, after Close (add then fails records at
	// once) or retire (no record reaches add any more).
	stopped bool
	// replies are the outcomes of attempts, queued for run by queueReply.
	replies []produceReply
	// spareBuilders are recycled batch builders (takeBuilderLocked).
	spareBuilders []*protocol.BatchBuilder

	// Owned by run.
	window    []*pendingBatch // sent at least once, not completed; send order
	retryAt   time.Time       // when batches waiting for a retry are resent
	retryWait bool            // some batch in window waits for a retry
	// unknownTopic times a run of unknown_topic errors of the partition's
	// attempts and metadata lookups (WithUnknownTopicWait).
	unknownTopic unknownTopicTimer

	sequence      producerSequence // idempotent identity (idempotence.go); owned by run
	spareRequests [][]byte         // recycled request buffers (owned by run)
	// handledReplies is the reply queue run emptied last, the next one
	// to fill (owned by run; empty): the two take turns, so queueing a
	// reply does not allocate.
	handledReplies []produceReply
	// attemptsOut counts the attempts sent whose reply (or timeout) has
	// not been handled, the abandoned batches' included (owned by run).
	attemptsOut int
	// forgotten: the partition answered the window's first batch
	// unknown_producer; the next resend may start a new epoch
	// (restartSequenceIfSafe). Owned by run.
	forgotten bool
	// epochBumpDue: a batch failed for good and the epoch is bumped once
	// the batches before it have their outcome (epochSettled). Owned by
	// run.
	epochBumpDue bool
	// together collects a batch's records for the batch callback (owned
	// by run; empty between batches).
	together []*Record

	// accepted counts the records added to a batch (guarded by mu);
	// completedRecords those of them completed, in the same order
	// (guarded by producer.mu). Flush waits for the one to reach the
	// other.
	accepted         uint64
	completedRecords uint64

	// recordsHint and bytesHint are the record count and uncompressed
	// size of the last sealed batch (guarded by mu): the next batch's
	// record slice and records section start at that capacity.
	recordsHint int
	bytesHint   int
}

type pendingRecord struct {
	record *Record
	done   ProduceCallback // nil: the producer's batch callback
	size   int             // bufferedSize(record), counted against WithMaxBufferedBytes
}

type batchState uint8

const (
	batchUnsent batchState = iota
	batchInFlight
	batchRetry
	batchDone
)

type pendingBatch struct {
	records  []pendingRecord        // by value: no allocation per record
	builder  *protocol.BatchBuilder // from builderPool; nil once encoded
	openedAt time.Time
	deadline time.Time
	// firstTimestamp is the first record's timestamp (unix ms), the base
	// of the others' timestamp deltas.
	firstTimestamp int64

	request      []byte // encoded produce request, built on first send
	state        batchState
	attempts     int
	leader       uint64 // broker the last attempt went to
	needsRefresh bool   // refresh metadata before the next attempt
	err          error  // final error, or the last retriable one
	baseOffset   uint64
	sequenced    bool // carries a producer id and sequence (idempotence.go)
	// maybeWritten: an attempt ended without proof that the batch was not
	// written (a timeout, say); batchStart is where the record batch
	// starts in request (idempotence.go renumbers it there).
	maybeWritten bool
	batchStart   int
}

type produceReply struct {
	batch *pendingBatch
	msg   *nats.Msg
	err   error
}

func newPartitionProducer(p *Producer, tp topicPartition) *partitionProducer {
	return &partitionProducer{
		producer: p,
		tp:       tp,
		wake:     make(chan struct{}, 1),
		sequence: producerSequence{producerID: p.producerID},
	}
}

func (pp *partitionProducer) signal() {
	select {
	case pp.wake <- struct{}{}:
	default:
	}
}

// add appends a record to the open batch, sealing it when full.
func (pp *partitionProducer) add(rec pendingRecord) {
	r := protocol.Record{Timestamp: rec.record.Timestamp.UnixMilli(), Key: rec.record.Key, Value: rec.record.Value}
	if len(rec.record.Headers) > 0 {
		r.Headers = make([]protocol.RecordHeader, 0, len(rec.record.Headers))
		for _, h := range rec.record.Headers {
			r.Headers = append(r.Headers, protocol.RecordHeader{Key: h.Key, Value: h.Value})
		}
	}
	maxBytes := pp.producer.batchMaxBytes
	pp.mu.Lock()
	pp.arrived++
	if pp.stopped {
		pp.mu.Unlock()
		pp.producer.finish(rec.record, rec.done, ErrClosed)
		pp.producer.completed(nil, 1, rec.size)
		return
	}
	wake := false
	if pp.open != nil && pp.open.builder.Len() > 0 &&
		pp.open.builder.UncompressedSize()+recordSizeBound(rec.size, len(r.Headers)) > maxBytes &&
		pp.open.builder.UncompressedSize()+protocol.EncodedRecordSize(&r, pp.open.firstTimestamp) > maxBytes {
		pp.sealLocked()
		wake = true
	}
	if pp.open == nil {
		now := time.Now()
		pp.open = &pendingBatch{openedAt: now, deadline: now.Add(pp.producer.config.deliveryTimeout),
			firstTimestamp: r.Timestamp, records: make([]pendingRecord, 0, pp.recordsHint),
			builder: pp.takeBuilderLocked()}
		pp.open.builder.Grow(min(pp.bytesHint, maxBytes))
		wake = true
	}
	if err := pp.open.builder.Add(r); err != nil {
		pp.mu.Unlock()
		pp.producer.finish(rec.record, rec.done, err)
		pp.producer.completed(nil, 1, rec.size)
		return
	}
	pp.open.records = append(pp.open.records, rec)
	pp.accepted++
	if pp.open.builder.UncompressedSize() >= maxBytes {
		pp.sealLocked()
		wake = true
	}
	pp.mu.Unlock()
	if wake || pp.producer.config.linger == 0 {
		pp.signal()
	}
}

// recordSizeBound is at least what a record of size bytes (bufferedSize:
// key, value and headers) with headers headers adds to a batch: a batch
// with room for the bound has room for the record, and add measures the
// record exactly only when it does not (a batch's last few records).
func recordSizeBound(size, headers int) int {
	// Length prefix, attributes, timestamp and offset deltas, key and
	// value lengths, header count: at most 5+1+10+5+5+5+5 bytes; each
	// header's two lengths at most 10.
	return size + 36 + 10*headers
}

func (pp *partitionProducer) sealLocked() {
	if pp.open != nil {
		pp.noteSizeLocked(pp.open)
		pp.sealed = append(pp.sealed, pp.open)
		pp.open = nil
	}
}

// acceptedRecords returns how many records have joined a batch.
func (pp *partitionProducer) acceptedRecords() uint64 {
	pp.mu.Lock()
	defer pp.mu.Unlock()
	return pp.accepted
}

// sealNow makes the open batch ready to send without waiting for linger.
func (pp *partitionProducer) sealNow() {
	pp.mu.Lock()
	sealed := pp.open != nil
	pp.sealLocked()
	pp.mu.Unlock()
	if sealed {
		pp.signal()
	}
}

// takeReady removes the next batch to send: a sealed one, or the open one
// once it has lingered long enough or at once when idle (no batch of the
// partition in flight: lingering then only adds latency, since no reply
// is due that more records could ride along with). It returns the time
// the open batch is due when none is ready yet (zero when there is no
// open batch).
func (pp *partitionProducer) takeReady(now time.Time, idle bool) (*pendingBatch, time.Time) {
	pp.mu.Lock()
	defer pp.mu.Unlock()
	if len(pp.sealed) > 0 {
		batch := pp.sealed[0]
		pp.sealed[0] = nil
		pp.sealed = pp.sealed[1:]
		return batch, time.Time{}
	}
	if pp.open == nil {
		return nil, time.Time{}
	}
	due := pp.open.openedAt.Add(pp.producer.config.linger)
	if !idle && now.Before(due) {
		return nil, due
	}
	batch := pp.open
	pp.open = nil
	pp.noteSizeLocked(batch)
	return batch, time.Time{}
}

// noteSizeLocked remembers the size of a batch leaving the open slot as
// the starting capacity of the next one.
func (pp *partitionProducer) noteSizeLocked(batch *pendingBatch) {
	pp.recordsHint = len(batch.records)
	pp.bytesHint = batch.builder.UncompressedSize() - protocol.BatchHeaderSize
}

// defaultPartitionIdleTimeout is how long a partition producer waits with
// nothing to do before it retires. Retiring costs little (a goroutine
// start when the partition is written again, and the batch size hints
// and spare buffers) and only ever happens with nothing buffered or in
// flight, so the wait only bounds how long an unused partition's
// goroutine lingers; 5 minutes is Kafka's metadata.max.idle.ms, after
// which its producer forgets a topic it no longer writes to. It is not
// tied to the delivery timeout: nothing is outstanding when it runs.
const defaultPartitionIdleTimeout = 5 * time.Minute

// run is the partition's goroutine. It exits when the producer stops, or
// after partitionIdleTimeout with nothing to do (retire).
func (pp *partitionProducer) run() {
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	var idleSince time.Time // zero while there is something to do
	for {
		pp.handleReplies()
		now := time.Now()
		wakeAt := pp.sendReady(now)
		if wakeAt.IsZero() && pp.drained() {
			if idleSince.IsZero() {
				idleSince = now
			}
			wakeAt = idleSince.Add(pp.producer.config.partitionIdleTimeout)
			if !now.Before(wakeAt) {
				if pp.retire() {
					return
				}
				idleSince = now // a record is on its way to add
				wakeAt = now.Add(pp.producer.config.partitionIdleTimeout)
			}
		} else {
			idleSince = time.Time{}
		}
		if !wakeAt.IsZero() {
			timer.Reset(time.Until(wakeAt))
		}
		select {
		case <-pp.wake:
		case <-timer.C:
		case <-pp.producer.stop:
			timer.Stop()
			pp.abort()
			return
		}
		timer.Stop()
	}
}

// drained reports whether run has nothing in progress: no batch sent and
// not completed, no attempt whose reply is due, no epoch bump owed.
// Whether records wait to be sent is retire's to check.
func (pp *partitionProducer) drained() bool {
	return len(pp.window) == 0 && pp.attemptsOut == 0 && !pp.retryWait && !pp.epochBumpDue
}

// retire stops the partition producer, if no record is buffered or on its
// way to add: Producer.partitionProducer will not hand it out again and
// starts a new one for the partition's next record, with the idempotent
// identity it leaves in Producer.sequences. Called by run once drained.
func (pp *partitionProducer) retire() bool {
	p := pp.producer
	p.mu.Lock()
	defer p.mu.Unlock()
	pp.mu.Lock()
	defer pp.mu.Unlock()
	if pp.open != nil || len(pp.sealed) > 0 || pp.arrived != pp.handedOut {
		return false
	}
	pp.stopped = true
	delete(p.partitions, pp.tp)
	if p.last == pp {
		p.last = nil
	}
	now := time.Now()
	if keep := p.config.retiredSequenceKeep; now.Sub(p.sequencesPruned) >= keep/10 {
		// At most ten passes per keep time, however many retire.
		p.sequencesPruned = now
		for tp, retired := range p.sequences {
			if now.Sub(retired.at) >= keep {
				delete(p.sequences, tp)
				p.forgotSequences = true
			}
		}
	}
	if pp.sequence.producerID != 0 {
		p.sequences[pp.tp] = retiredSequence{sequence: pp.sequence, at: now}
	}
	return true
}

// retiredSequence is the idempotent identity a retired partition producer
// left, and when.
type retiredSequence struct {
	sequence producerSequence
	at       time.Time
}

// defaultRetiredSequenceKeep is how long a retired partition producer's
// identity is kept: a partition written to again within it continues its
// sequence; after it, the partition's next producer takes a new producer
// id. Bounded so a producer writing once to many short-lived topics does
// not keep an entry per partition for ever.
const defaultRetiredSequenceKeep = time.Hour

// sendReady resends batches whose retry is due, fails those past their
// delivery deadline, and sends new batches while the in-flight bound
// allows. It returns when run should wake up next for
// a timer (zero: no timer needed).
func (pp *partitionProducer) sendReady(now time.Time) time.Time {
	if pp.retryWait {
		if wakeAt, wait := pp.resendRetries(now); wait {
			return wakeAt
		}
	}
	for len(pp.window) < pp.producer.config.maxInFlight && pp.epochSettled() {
		batch, due := pp.takeReady(now, len(pp.window) == 0)
		if batch == nil {
			return due
		}
		pp.window = append(pp.window, batch)
		if !pp.send(batch) {
			pp.completeInOrder()
			wakeAt, _ := pp.resendRetries(now) // the backoff is not over: when to wake
			return wakeAt
		}
		pp.completeInOrder()
	}
	return time.Time{}
}

// resendRetries resends, in order, the batches waiting for a retry once
// every attempt in flight has its outcome and the backoff has passed, and
// fails those whose delivery deadline passes meanwhile. It reports whether
// new batches must wait, and until when (zero: for a reply).
func (pp *partitionProducer) resendRetries(now time.Time) (wakeAt time.Time, wait bool) {
	expiresAt := pp.expireRetries(now)
	if expiresAt.IsZero() {
		pp.retryWait = false // no batch waits for a retry any more
		return time.Time{}, false
	}
	for _, batch := range pp.window {
		if batch.state == batchInFlight {
			return expiresAt, true // wait for every outcome, then resend in order
		}
	}
	if now.Before(pp.retryAt) {
		if expiresAt.Before(pp.retryAt) {
			return expiresAt, true
		}
		return pp.retryAt, true
	}
	pp.retryWait = false
	pp.restartSequenceIfSafe()
	for _, batch := range pp.window {
		if batch.state == batchRetry && !pp.send(batch) {
			return pp.resendRetries(now) // the backoff is not over: when to wake
		}
	}
	pp.completeInOrder()
	return time.Time{}, false
}

// expireRetries fails the batches waiting for a retry whose delivery
// deadline has passed, with their last error, and returns the earliest
// deadline of those still waiting (zero when none is).
func (pp *partitionProducer) expireRetries(now time.Time) time.Time {
	var earliest time.Time
	for _, batch := range pp.window {
		switch {
		case batch.state != batchRetry:
		case !now.Before(batch.deadline):
			pp.fail(batch, batch.err)
		case earliest.IsZero() || batch.deadline.Before(earliest):
			earliest = batch.deadline
		}
	}
	pp.completeInOrder()
	return earliest
}

// errDeliveryTimeoutUnsent fails a batch whose delivery timeout passed
// before its first attempt (it waited behind other batches): nothing of
// it was written.
var errDeliveryTimeoutUnsent = &protocol.Error{Code: protocol.CodeTimeout, Message: "delivery timeout passed before the batch was sent"}

// send starts one attempt of batch, or fails it when its delivery deadline
// has passed. It returns false when the batch must wait for a retry
// (pp.retryWait is then set).
func (pp *partitionProducer) send(batch *pendingBatch) bool {
	if !time.Now().Before(batch.deadline) {
		err := batch.err // the last attempt's, for a resend
		if err == nil {
			err = errDeliveryTimeoutUnsent
		}
		pp.fail(batch, err)
		return true
	}
	client := pp.producer.client
	if batch.request == nil {
		// Sized for the whole request, so encoding the batch does not
		// reallocate (compression only makes it smaller).
		request := pp.takeRequestBuffer(requestHeaderRoom + batch.builder.UncompressedSize())
		request = protocol.AppendProduceRequest(request, &protocol.ProduceRequest{
			Topic:     pp.tp.topic,
			Partition: pp.tp.partition,
			Acks:      pp.producer.config.acks,
			Timeout:   brokerTimeout(client.config.requestTimeout),
		})
		pp.sequence.stamp(batch, batch.builder.Len())
		batch.batchStart = len(request)
		request, err := batch.builder.AppendBatch(request, pp.producer.config.codec)
		if err != nil {
			pp.fail(batch, fmt.Errorf("clients: encode batch: %w", err))
			return true
		}
		if limit := client.conn.MaxPayload(); limit > 0 && int64(len(request)) > limit {
			// A record larger than a batch may be (it is alone in its
			// batch) that compression did not bring under NATS's max
			// payload: failed before its sequence counts, so nothing
			// after it is disturbed.
			pp.putRequestBuffer(request)
			pp.fail(batch, &protocol.Error{Code: protocol.CodeRecordTooLarge, Message: fmt.Sprintf(
				"a record encoded in %d bytes (a request of %d bytes) is over the NATS servers' max payload of %d bytes: not sent; raise max_payload on the NATS servers, or send smaller records",
				batch.builder.UncompressedSize()-protocol.BatchHeaderSize, len(request), limit)})
			return true
		}
		pp.sequence.commit(batch, batch.builder.Len())
		batch.request = request
		pp.putBuilder(batch.builder) // the records' copy is in the request now
		batch.builder = nil
	}
	ctx, cancel := context.WithTimeout(pp.producer.stopped, client.config.requestTimeout)
	defer cancel()
	if batch.needsRefresh {
		batch.needsRefresh = false
		if _, err := client.metadata.refresh(ctx, pp.tp.topic); err != nil {
			return pp.retryLater(batch, pp.lookupError(err))
		}
	}
	leader, err := client.metadata.leader(ctx, pp.tp.topic, pp.tp.partition)
	if err != nil {
		return pp.retryLater(batch, pp.lookupError(err))
	}
	if leader == 0 {
		batch.needsRefresh = true
		return pp.retryLater(batch, &protocol.Error{Code: protocol.CodeNotReady, Message: "partition has no leader yet"})
	}
	batch.state = batchInFlight
	batch.attempts++
	batch.leader = leader
	subject := protocol.SubjectBrokerProduce(client.config.prefix, leader)
	pp.attemptsOut++
	err = client.replies.send(subject, batch.request, client.config.requestTimeout, func(msg *nats.Msg, err error) {
		pp.queueReply(produceReply{batch: batch, msg: msg, err: err})
	})
	if err != nil {
		pp.attemptsOut-- // not sent: no reply is due
		pp.fail(batch, err)
	}
	return true
}

// lookupError is the error an attempt's metadata lookup ended with:
// ErrClosed once the producer stopped (Close's context ended; the
// lookup's context derives from Producer.stopped), else attemptError's.
func (pp *partitionProducer) lookupError(err error) error {
	if pp.producer.stopped.Err() != nil {
		return ErrClosed
	}
	return attemptError(err)
}

// attemptError turns the end of an attempt's own deadline (the context
// above derives from no caller's) into a request timeout, which is
// retriable: the batch is retried until its delivery deadline.
func attemptError(err error) error {
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("clients: metadata: %w", errRequestTimeout)
	}
	return err
}

// brokerTimeout is the wait the broker is asked to honour, a little under
// the client's own, so the broker's "timeout" reply arrives first.
func brokerTimeout(requestTimeout time.Duration) time.Duration {
	if requestTimeout > 2*time.Second {
		return requestTimeout - time.Second
	}
	return requestTimeout * 3 / 4
}

// retryLater marks batch for a retry after backoff, or fails it when its
// delivery deadline has passed, err is not retriable, or the partition's
// topic has been unknown for WithUnknownTopicWait (deleted, not
// spreading). It returns false when the batch waits for a retry.
func (pp *partitionProducer) retryLater(batch *pendingBatch, err error) bool {
	now := time.Now()
	if pp.unknownTopic.expired(err, &pp.producer.client.config) || !retriable(err) || !now.Before(batch.deadline) {
		pp.fail(batch, err)
		return true
	}
	batch.state = batchRetry
	batch.err = err
	pp.retryWait = true
	retryAt := now.Add(pp.producer.client.config.backoff(batch.attempts))
	if retryAt.After(pp.retryAt) {
		pp.retryAt = retryAt
	}
	return false
}

func (pp *partitionProducer) fail(batch *pendingBatch, err error) {
	batch.state = batchDone
	batch.err = err
	pp.failedInSequence(batch)
}

// queueReply hands run the outcome of an attempt. It runs on the client's
// one reply-delivery goroutine (or a timer's), so it never waits for run:
// run may be busy for long (a user callback, a metadata refresh), and
// every partition and producer of the client would wait with it. The
// queue has no fixed bound to fill: besides the window's batches (at most
// WithMaxInFlight), the batches abandoned by failedInSequence left the
// window with their attempts on their way. Replies queued after run
// exited (Close) are dropped with the queue.
func (pp *partitionProducer) queueReply(reply produceReply) {
	pp.mu.Lock()
	pp.replies = append(pp.replies, reply)
	pp.mu.Unlock()
	pp.signal()
}

// handleReplies handles the replies queued so far, in arrival order.
func (pp *partitionProducer) handleReplies() {
	pp.mu.Lock()
	replies := pp.replies
	pp.replies = pp.handledReplies
	pp.mu.Unlock()
	for i := range replies {
		pp.handleReply(replies[i])
		replies[i] = produceReply{} // holds no reply message for the collector
	}
	pp.handledReplies = replies[:0]
}

// handleReply records the outcome of one attempt.
func (pp *partitionProducer) handleReply(reply produceReply) {
	pp.attemptsOut--
	batch := reply.batch
	if batch.state != batchInFlight {
		return
	}
	err := reply.err
	var produced protocol.ProduceReply
	if err == nil {
		produced, err = protocol.DecodeProduceReply(reply.msg.Data)
		if err == nil && produced.Err != nil {
			err = produced.Err
		}
	}
	if err == nil {
		pp.unknownTopic = unknownTopicTimer{}
		batch.state = batchDone
		batch.err = nil
		batch.baseOffset = produced.BaseOffset
		pp.completeInOrder()
		return
	}
	pp.noteAttemptError(batch, err)
	var apiError *protocol.Error
	switch {
	case errors.As(err, &apiError) && apiError.Code == protocol.CodeNotLeader && apiError.Leader != 0 && apiError.Leader != batch.leader:
		pp.producer.client.metadata.setLeader(pp.tp.topic, pp.tp.partition, apiError.Leader)
	case retriable(err):
		batch.needsRefresh = true
	}
	pp.retryLater(batch, err)
	pp.completeInOrder()
}

// completeInOrder runs the callbacks of finished batches at the head of the
// window, so one partition's callbacks run in produce order.
func (pp *partitionProducer) completeInOrder() {
	for len(pp.window) > 0 && pp.window[0].state == batchDone {
		batch := pp.window[0]
		pp.window[0] = nil
		pp.window = pp.window[1:]
		pp.complete(batch, batch.err)
	}
}

// Buffers of batches: a builder's records section and an encoded request
// are each up to the batch size, and reusing them spares allocating and
// zeroing that much per batch. A partition keeps a few of each (spare
// builders guarded by mu, spare requests owned by run), as many as a busy
// partition cycles through, so that they survive garbage collections (a
// sync.Pool is emptied by every other one, and a busy producer then
// allocated and cleared a fresh batch-sized buffer per batch); buffers
// beyond those go to process-wide pools.
var (
	builderPool = sync.Pool{New: func() any { return new(protocol.BatchBuilder) }}
	requestPool sync.Pool // of *[]byte
)

// maxPooledBuffer keeps outsized buffers out of the pools.
const maxPooledBuffer = 4 << 20

// spareBuilders is how many builders a partition keeps: one for the next
// open batch while the last sealed one is being encoded.
const spareBuilders = 2

func (pp *partitionProducer) takeBuilderLocked() *protocol.BatchBuilder {
	if n := len(pp.spareBuilders); n > 0 {
		builder := pp.spareBuilders[n-1]
		pp.spareBuilders[n-1] = nil
		pp.spareBuilders = pp.spareBuilders[:n-1]
		return builder
	}
	return builderPool.Get().(*protocol.BatchBuilder)
}

func (pp *partitionProducer) putBuilder(builder *protocol.BatchBuilder) {
	if builder.UncompressedSize() > maxPooledBuffer {
		return
	}
	builder.Reset()
	pp.mu.Lock()
	if len(pp.spareBuilders) < spareBuilders {
		pp.spareBuilders = append(pp.spareBuilders, builder)
		builder = nil
	}
	pp.mu.Unlock()
	if builder != nil {
		builderPool.Put(builder)
	}
}

// takeRequestBuffer returns an empty buffer of at least capacity bytes
// (run only).
func (pp *partitionProducer) takeRequestBuffer(capacity int) []byte {
	for n := len(pp.spareRequests); n > 0; n-- {
		request := pp.spareRequests[n-1]
		pp.spareRequests[n-1] = nil
		pp.spareRequests = pp.spareRequests[:n-1]
		if cap(request) >= capacity {
			return request[:0]
		}
	}
	if p, ok := requestPool.Get().(*[]byte); ok && cap(*p) >= capacity {
		return (*p)[:0]
	}
	return make([]byte, 0, capacity)
}

// putRequestBuffer recycles a completed batch's request (run only): every
// attempt's bytes were copied by the NATS client when published, and a
// completed batch is never sent again.
func (pp *partitionProducer) putRequestBuffer(request []byte) {
	if request == nil || cap(request) > maxPooledBuffer {
		return
	}
	if len(pp.spareRequests) <= pp.producer.config.maxInFlight {
		pp.spareRequests = append(pp.spareRequests, request)
		return
	}
	requestPool.Put(&request)
}

func (pp *partitionProducer) complete(batch *pendingBatch, err error) {
	pp.putRequestBuffer(batch.request)
	batch.request = nil
	if err != nil {
		err = fmt.Errorf("clients: produce to %s/%d: %w", pp.tp.topic, pp.tp.partition, err)
	}
	size := 0
	// Records produced without a callback of their own reach the batch
	// callback together; a record with one flushes those before it, so
	// the partition's callbacks still run in produce order.
	together := pp.together[:0]
	for i := range batch.records {
		rec := &batch.records[i]
		size += rec.size
		if err == nil {
			rec.record.Offset = batch.baseOffset + uint64(i)
		}
		if rec.done == nil {
			together = append(together, rec.record)
			continue
		}
		together = pp.reportTogether(together, err)
		rec.done(rec.record, err)
	}
	pp.together = pp.reportTogether(together, err)
	pp.producer.completed(pp, len(batch.records), size)
}

// reportTogether hands records to the batch callback, if any, and returns
// the emptied slice (holding no record) for reuse.
func (pp *partitionProducer) reportTogether(records []*Record, err error) []*Record {
	if len(records) == 0 {
		return records
	}
	pp.producer.config.batchCallback(records, err)
	clear(records)
	return records[:0]
}

// abort completes everything not yet completed: a batch that already has
// its outcome (acknowledged, or failed, and waiting for an earlier batch's
// so that callbacks run in order) with that outcome, the others with
// ErrClosed. An idempotent batch acknowledged after earlier ones of its
// epoch proves that they were written too, but not at which offsets
// (other producers' records may lie between), and a success reports its
// record's offset; so they fail with ErrClosed like any other. Replies
// queued before the stop are handled first: an acknowledgement that
// arrived is an outcome the producer has.
func (pp *partitionProducer) abort() {
	pp.handleReplies()
	for _, batch := range pp.window {
		err := ErrClosed
		if batch.state == batchDone {
			err = batch.err
		}
		pp.complete(batch, err)
	}
	pp.window = nil
	pp.mu.Lock()
	pp.stopped = true
	pending := pp.sealed
	if pp.open != nil {
		pending = append(pending, pp.open)
	}
	pp.sealed, pp.open = nil, nil
	pp.mu.Unlock()
	for _, batch := range pending {
		pp.complete(batch, ErrClosed)
	}
}
