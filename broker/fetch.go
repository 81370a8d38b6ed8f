package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/raftmq/raftmq/protocol"
	"github.com/raftmq/raftmq/segmentlog"
)

// The fetch path: long-poll reads of committed record batches, served as
// the log's raw bytes.

// handleFetch answers a fetch request. A request with MaxReplies above 1
// gets a stream: after each reply whose NextOffset is below its high
// watermark (protocol.FetchStreamContinues), the next one is read from
// there and sent at once, so the consumer's connection, the NATS server and
// this broker's log reads overlap instead of taking turns with a request
// between every reply.
func (b *Broker) handleFetch(msg *nats.Msg) {
	start := time.Now()
	req, err := protocol.DecodeFetchRequest(msg.Data)
	if err != nil {
		reply := protocol.AppendFetchReply(nil, &protocol.FetchReply{Err: asAPIError(err)})
		b.metrics.observeFetch(reply, start)
		_ = msg.Respond(reply)
		return
	}
	for n := 1; ; n++ {
		reply, header := b.fetch(req)
		b.metrics.observeFetch(reply, start)
		err := msg.Respond(reply) // copies reply into the connection's buffer
		putFetchBuffer(reply)
		if err != nil || !protocol.FetchStreamContinues(&header, n, req.MaxReplies) {
			return
		}
		// Data is committed at NextOffset already: no long poll.
		req.Offset, req.MaxWait = header.NextOffset, 0
		start = time.Now()
	}
}

// fetchBuffers recycles fetch reply buffers: a reply is up to the max
// payload (1 MiB by default), and a fresh one per fetch costs more to
// allocate and zero than to fill.
var fetchBuffers sync.Pool // of *[]byte

// getFetchBuffer returns an empty buffer with at least capacity bytes.
func getFetchBuffer(capacity int) []byte {
	if p, ok := fetchBuffers.Get().(*[]byte); ok && cap(*p) >= capacity {
		return (*p)[:0]
	}
	return make([]byte, 0, capacity)
}

// putFetchBuffer hands a reply buffer back once it was sent; small ones
// (error replies) and outsized ones are left to the collector.
func putFetchBuffer(b []byte) {
	if cap(b) < 64<<10 || cap(b) > 8<<20 {
		return
	}
	fetchBuffers.Put(&b)
}

// fetchReplyHeaderSize is the size of an encoded FetchReply without error
// and batches: version, error code, three uint64.
const fetchReplyHeaderSize = 1 + 2 + 3*8

// fetchReplyRoom is what a fetch keeps free of batches in the NATS max
// payload: the reply's header with room to spare.
const fetchReplyRoom = 1024

// fetch serves a fetch request and returns the encoded reply and the
// reply's fields (Batches aliasing the encoding). It waits up to the
// request's max wait for data to be committed at the requested offset.
func (b *Broker) fetch(req protocol.FetchRequest) ([]byte, protocol.FetchReply) {
	answer := func(reply *protocol.FetchReply) ([]byte, protocol.FetchReply) {
		return protocol.AppendFetchReply(nil, reply), *reply
	}
	failed := func(e *protocol.Error) ([]byte, protocol.FetchReply) {
		return answer(&protocol.FetchReply{Err: e})
	}
	r, apiErr := b.replicaFor(req.Topic, req.Partition)
	if apiErr != nil {
		return failed(apiErr)
	}
	if apiErr := b.leaderCheck(r); apiErr != nil {
		return failed(apiErr)
	}
	b.awaitCommitted(r)
	requestedBytes := int(req.MaxBytes)
	if requestedBytes <= 0 {
		requestedBytes = b.cfg.DefaultFetchBytes
	}
	maxWait := min(req.MaxWait, b.cfg.MaxFetchWait)
	var timer *time.Timer
	var expired <-chan time.Time
	if maxWait > 0 {
		timer = time.NewTimer(maxWait)
		defer timer.Stop()
		expired = timer.C
	}
	waited := false
	for {
		appliedIndex, highWatermark, advanced := r.state.visible()
		logStart := r.log.FirstOffset()
		reply := protocol.FetchReply{HighWatermark: highWatermark, LogStartOffset: logStart, NextOffset: req.Offset}
		// An offset past the high watermark but already assigned (appended,
		// committed or about to be, not yet applied here) waits like one at
		// the high watermark; only offsets never assigned are out of range.
		if req.Offset < logStart || req.Offset > max(highWatermark, r.log.NextOffset()) {
			reply.Err = &protocol.Error{Code: protocol.CodeOffsetOutOfRange, Low: logStart, High: highWatermark,
				Message: fmt.Sprintf("offset %d of %s/%d", req.Offset, req.Topic, req.Partition)}
			return answer(&reply)
		}
		if req.Offset < highWatermark {
			// The reply must fit in one NATS message of the connection's
			// max payload as it is now (a reconnect to a server with a
			// lower one may have lowered it), though ReadBatches returns
			// at least one batch, whatever its size.
			maxPayload := int(b.nc.MaxPayload())
			maxBytes := min(requestedBytes, maxPayload-fetchReplyRoom)
			// Read the batches straight after the space the header takes,
			// then write the header in front: no copy of the batch bytes.
			buf := getFetchBuffer(fetchReplyHeaderSize + maxBytes + 64<<10)[:fetchReplyHeaderSize]
			out, next, err := r.log.ReadBatches(buf, req.Offset, appliedIndex, maxBytes)
			if errors.Is(err, segmentlog.ErrOutOfRange) {
				// Retention deleted the offset since the range check above:
				// the consumer must reset, which out-of-range tells it.
				reply.Err = &protocol.Error{Code: protocol.CodeOffsetOutOfRange, Low: r.log.FirstOffset(), High: highWatermark,
					Message: fmt.Sprintf("offset %d of %s/%d: %v", req.Offset, req.Topic, req.Partition, err)}
				return answer(&reply)
			}
			if err != nil {
				return failed(readError(err, fmt.Sprintf("read %s/%d at offset %d", req.Topic, req.Partition, req.Offset)))
			}
			if len(out) > maxPayload {
				putFetchBuffer(out)
				reply.Err = b.fetchReplyTooLarge(req, len(out)-fetchReplyHeaderSize, maxPayload)
				return answer(&reply)
			}
			if len(out) > fetchReplyHeaderSize {
				reply.NextOffset = next
				protocol.AppendFetchReplyHeader(out[:0], &reply)
				reply.Batches = out[fetchReplyHeaderSize:]
				return out, reply
			}
			putFetchBuffer(out)
		}
		if expired == nil {
			return answer(&reply)
		}
		if !waited {
			// A wake (stop, close) between the checks at the start and
			// taking advanced above went to the previous channel: look
			// once more before the first wait.
			if apiErr := b.stillServes(r, req.Topic, req.Partition); apiErr != nil {
				return failed(apiErr)
			}
			waited = true
		}
		select {
		case <-advanced:
			// An advance, or a wake to look again (the replica stopped,
			// the broker is closing, a snapshot was installed: that only
			// on a follower). Answer only while this replica still leads
			// the partition; a deposed leader's log may hold entries that
			// never commit.
			if apiErr := b.stillServes(r, req.Topic, req.Partition); apiErr != nil {
				return failed(apiErr)
			}
		case <-expired:
			return answer(&reply)
		case <-b.stop:
			return answer(&reply)
		}
	}
}

// fetchReplyTooLarge returns the error that answers a fetch whose first
// batch, of batchBytes, makes a reply over the NATS max payload (written
// while the max payload was higher), and warns about it at most once a
// minute. Not sending the reply would leave the consumer waiting out its
// timeout and retrying for ever.
func (b *Broker) fetchReplyTooLarge(req protocol.FetchRequest, batchBytes, maxPayload int) *protocol.Error {
	b.logLimitedAt(slog.LevelWarn, "fetch reply too large", "fetch reply over the NATS max payload",
		"topic", req.Topic, "partition", req.Partition, "offset", req.Offset, "batch_bytes", batchBytes, "max_payload", maxPayload)
	return &protocol.Error{Code: protocol.CodeReplyTooLarge, Limit: uint64(maxPayload),
		Message: fmt.Sprintf("the batch at offset %d of %s/%d is %d bytes, too large for a reply within the NATS max payload of %d bytes: raise max_payload to at least %d bytes to read it",
			req.Offset, req.Topic, req.Partition, batchBytes, maxPayload, batchBytes+fetchReplyHeaderSize)}
}

// stillServes checks, for a request that waited, that r is still the
// broker's replica of the partition (not stopped, deleted or replaced) and
// still leads it, and that the broker is not closing.
func (b *Broker) stillServes(r *partitionReplica, topic string, partition uint32) *protocol.Error {
	current, apiErr := b.replicaFor(topic, partition)
	if apiErr != nil {
		return apiErr
	}
	if current != r {
		return &protocol.Error{Code: protocol.CodeNotLeader,
			Message: fmt.Sprintf("the replica of %s/%d on broker %d was replaced while the request waited", topic, partition, b.cfg.ID)}
	}
	return b.leaderCheck(r)
}

// awaitCommitted waits, briefly, until the leader has applied every entry
// that was committed when the request arrived. A produce is acknowledged at
// commit (acks=quorum) and the high watermark moves at apply, so without this
// a fetch or offsets request sent right after an acknowledgement could miss
// the acknowledged records. Apply trails commit by one hand-off, so the wait
// is short; it is bounded so a stuck apply cannot hold a request forever.
func (b *Broker) awaitCommitted(r *partitionReplica) {
	commit := r.group.Status().CommitIndex
	b.awaitApplied(context.Background(), r, func(applied uint64) bool { return applied >= commit })
}

// awaitCaughtUp is awaitCommitted for a leader that must also have applied
// an entry of its own term (its election no-op): its high watermark then
// covers every record an earlier leader acknowledged or served, which a
// new leader's commit index may not cover yet. It reports whether the
// leader applied its term's entry; a commit index not applied in time is
// let go, as awaitCommitted does.
func (b *Broker) awaitCaughtUp(ctx context.Context, r *partitionReplica) bool {
	status := r.group.Status()
	termApplied := func() bool { return true }
	if c := r.state.consumers; c != nil && c.producers != nil {
		termApplied = func() bool { return c.producers.appliedTermAtLeast(status.Term) }
	}
	b.awaitApplied(ctx, r, func(applied uint64) bool { return applied >= status.CommitIndex && termApplied() })
	return termApplied()
}

// awaitApplied waits until done holds for the replica's applied index, for
// at most a second, until ctx ends or until the broker stops; it reports
// whether done held.
func (b *Broker) awaitApplied(ctx context.Context, r *partitionReplica, done func(applied uint64) bool) bool {
	var expired <-chan struct{}
	for {
		applied, _, advanced := r.state.visible()
		if done(applied) {
			return true
		}
		if expired == nil {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, time.Second)
			defer cancel()
			expired = ctx.Done()
		}
		select {
		case <-advanced:
		case <-expired:
			return false
		case <-b.stop:
			return false
		}
	}
}
