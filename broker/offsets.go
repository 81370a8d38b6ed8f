package broker

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/raftmq/raftmq/protocol"
	"github.com/raftmq/raftmq/raft"
)

// maxOpsPerEntry bounds the consumer ops coalesced into one Raft entry.
const maxOpsPerEntry = 4096

// An entry of consumer ops is also bounded in bytes, by the largest record
// batch a partition takes (Broker.maxBatchBytes), which the broker sized
// to fit in one peer message: a Raft entry larger than that could never be
// sent to a follower, would never commit, and every later entry of the
// partition would wait behind it. Requests keep each op small (group and
// member names, MaxCommitMetadataBytes of metadata), so an entry always
// takes at least one.

// consumerOpBatcher coalesces the consumer ops arriving at a partition
// leader into Raft entries: while one entry is being proposed and applied,
// new ops queue up, and the next entry takes all of them (group commit).
type consumerOpBatcher struct {
	mu      sync.Mutex
	pending []*consumerOpWaiter
	running bool
}

type consumerOpWaiter struct {
	op   protocol.ConsumerOp  // Kind 0: a read barrier (no op; resolved when the entry applied)
	done chan *protocol.Error // capacity 1
}

// readBarrier is the op of a waiter that only waits for an entry to apply.
var readBarrier = protocol.ConsumerOp{}

// submitConsumerOps queues ops on r and returns one waiter per op.
func (b *Broker) submitConsumerOps(r *partitionReplica, ops []protocol.ConsumerOp) []*consumerOpWaiter {
	waiters := make([]*consumerOpWaiter, len(ops))
	for i, op := range ops {
		waiters[i] = &consumerOpWaiter{op: op, done: make(chan *protocol.Error, 1)}
	}
	r.ops.mu.Lock()
	r.ops.pending = append(r.ops.pending, waiters...)
	start := !r.ops.running
	r.ops.running = true
	r.ops.mu.Unlock()
	if start {
		go b.proposeConsumerOps(r)
	}
	return waiters
}

// proposeConsumerOps proposes the queued ops of r, one entry at a time,
// until the queue is empty.
func (b *Broker) proposeConsumerOps(r *partitionReplica) {
	for {
		r.ops.mu.Lock()
		n := b.opsThatFit(r.ops.pending)
		if n == 0 {
			r.ops.running = false
			r.ops.mu.Unlock()
			return
		}
		batch := r.ops.pending[:n:n]
		r.ops.pending = r.ops.pending[n:]
		r.ops.mu.Unlock()

		ops := make([]protocol.ConsumerOp, 0, len(batch))
		for _, w := range batch {
			if w.op.Kind != 0 {
				ops = append(ops, w.op)
			}
		}
		results, apiErr := b.proposeOps(r, ops)
		next := 0
		for _, w := range batch {
			switch {
			case apiErr != nil:
				w.done <- apiErr
			case w.op.Kind == 0:
				w.done <- nil
			case next < len(results):
				w.done <- results[next]
				next++
			default:
				w.done <- protocol.Errorf(protocol.CodeUnknown, "consumer op result missing")
			}
		}
	}
}

// opsThatFit is how many of the queued waiters, from the first, the next
// consumer-ops entry takes: at most maxOpsPerEntry ops, at most
// maxBatchBytes of entry data, and at least one waiter when any wait.
func (b *Broker) opsThatFit(pending []*consumerOpWaiter) int {
	size := protocol.ConsumerOpsSize(nil)
	for i, w := range pending {
		if i == maxOpsPerEntry {
			return i
		}
		if w.op.Kind != 0 {
			size += protocol.ConsumerOpSize(&w.op)
		}
		if size > b.maxBatchBytes && i > 0 {
			return i
		}
	}
	return len(pending)
}

// proposeOps proposes one consumer-ops entry and waits until it applied here.
func (b *Broker) proposeOps(r *partitionReplica, ops []protocol.ConsumerOp) ([]*protocol.Error, *protocol.Error) {
	ctx, cancel := context.WithTimeout(context.Background(), b.cfg.ProduceTimeout)
	defer cancel()
	what := fmt.Sprintf("offset commit to %s/%d", r.topic, r.partition)
	results := &r.state.consumers.results
	defer results.end(results.begin(r.group.Status().AppliedIndex))
	index, _, err := r.group.Propose(ctx, protocol.EntryControl, protocol.AppendConsumerOps(nil, ops), raft.AckApplied).Wait(ctx)
	if err != nil {
		return nil, raftError(err, what)
	}
	opResults, ok := results.take(index)
	if !ok {
		return nil, outcomeUnknown(what, index)
	}
	return opResults, nil
}

// awaitOps waits for every waiter, or ctx.
func awaitOps(ctx context.Context, waiters []*consumerOpWaiter) []*protocol.Error {
	out := make([]*protocol.Error, len(waiters))
	for i, w := range waiters {
		select {
		case out[i] = <-w.done:
		case <-ctx.Done():
			out[i] = protocol.Errorf(protocol.CodeTimeout, "consumer op not applied in time; it may still be")
		}
	}
	return out
}

func (b *Broker) handleOffsetCommit(msg *nats.Msg) {
	var req protocol.OffsetCommitRequest
	if err := json.Unmarshal(msg.Data, &req); err != nil {
		b.respondJSON(msg, protocol.OffsetCommitReply{Version: protocol.APIVersion, Error: protocol.Errorf(protocol.CodeMalformedRequest, "%v", err)})
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), b.cfg.ProduceTimeout+time.Second)
	defer cancel()
	b.respondJSON(msg, b.commitOffsets(ctx, &req))
}

// commitOffsets validates a commit, queues one op per partition on the
// partitions' batchers and waits for them all.
func (b *Broker) commitOffsets(ctx context.Context, req *protocol.OffsetCommitRequest) protocol.OffsetCommitReply {
	reply := protocol.OffsetCommitReply{Version: protocol.APIVersion, Results: make([]protocol.PartitionResult, len(req.Offsets))}
	if err := validateGroupAndMember(req.Group, req.Member, req.Op != protocol.CommitOpCommit); err != nil {
		reply.Error = err
		return reply
	}
	kind := map[string]protocol.ConsumerOpKind{protocol.CommitOpCommit: protocol.ConsumerOpCommit,
		protocol.CommitOpReset: protocol.ConsumerOpReset, protocol.CommitOpDelete: protocol.ConsumerOpDelete,
		protocol.CommitOpDeleteAndFence: protocol.ConsumerOpDeleteAndFence}[req.Op]
	if kind == 0 {
		reply.Error = protocol.Errorf(protocol.CodeInvalidArgument, "unknown commit op %q", req.Op)
		return reply
	}
	now := time.Now().UnixMilli()
	type queued struct {
		index  int
		waiter *consumerOpWaiter
	}
	// Find the partitions' replicas first, then wait for them all at once:
	// a new leader may need a while to apply its term's entry, and the
	// waits must share the request's time, not add up.
	replicas := make([]*partitionReplica, len(req.Offsets))
	for i, po := range req.Offsets {
		res := &reply.Results[i]
		res.Topic, res.Partition, res.Offset = po.Topic, po.Partition, po.Offset
		r, apiErr := b.replicaFor(po.Topic, po.Partition)
		if apiErr == nil {
			apiErr = b.leaderCheck(r)
		}
		if apiErr == nil && len(po.Metadata) > protocol.MaxCommitMetadataBytes {
			apiErr = &protocol.Error{Code: protocol.CodeInvalidArgument, Limit: protocol.MaxCommitMetadataBytes,
				Message: fmt.Sprintf("commit metadata for %s/%d is %d bytes, the limit is %d", po.Topic, po.Partition, len(po.Metadata), protocol.MaxCommitMetadataBytes)}
		}
		if apiErr != nil {
			res.Error = apiErr
			continue
		}
		replicas[i] = r
	}
	caughtUp := b.awaitAllCaughtUp(ctx, replicas)
	var all []queued
	for i, po := range req.Offsets {
		r := replicas[i]
		if r == nil {
			continue
		}
		res := &reply.Results[i]
		// The high watermark the commit is checked against (and a reset
		// resolved with) must cover what the previous leader served: a
		// consumer committing right after a failover would otherwise be
		// refused offset_out_of_range.
		if !caughtUp[r] {
			res.Error = protocol.Errorf(protocol.CodeNotReady, "new leader of %s/%d is applying the previous terms' entries", po.Topic, po.Partition)
			continue
		}
		var apiErr *protocol.Error
		if res.Offset, apiErr = b.resolveCommitOffset(r, req, po); apiErr != nil {
			res.Error = apiErr
			continue
		}
		op := protocol.ConsumerOp{Kind: kind, Group: req.Group, Member: req.Member, Epoch: po.Epoch,
			Offset: res.Offset, Metadata: po.Metadata, Time: now}
		all = append(all, queued{i, b.submitConsumerOps(r, []protocol.ConsumerOp{op})[0]})
	}
	for _, q := range all {
		select {
		case reply.Results[q.index].Error = <-q.waiter.done:
		case <-ctx.Done():
			reply.Results[q.index].Error = protocol.Errorf(protocol.CodeTimeout, "commit not applied in time; it may still be")
		}
	}
	return reply
}

// awaitAllCaughtUp runs awaitCaughtUp on each distinct replica at once and
// says which caught up.
func (b *Broker) awaitAllCaughtUp(ctx context.Context, replicas []*partitionReplica) map[*partitionReplica]bool {
	var distinct []*partitionReplica
	seen := make(map[*partitionReplica]bool, len(replicas))
	for _, r := range replicas {
		if r != nil && !seen[r] {
			seen[r] = true
			distinct = append(distinct, r)
		}
	}
	ok := make([]bool, len(distinct))
	var wg sync.WaitGroup
	for i, r := range distinct {
		wg.Go(func() { ok[i] = b.awaitCaughtUp(ctx, r) })
	}
	wg.Wait()
	caughtUp := make(map[*partitionReplica]bool, len(distinct))
	for i, r := range distinct {
		caughtUp[r] = ok[i]
	}
	return caughtUp
}

// validateGroupAndMember checks the group name of an offset request and its
// member id, if any: every op the request queues carries both. A request
// that may refer to a group named under the older rule (a reset, a delete,
// a fetch without claim) passes existing.
func validateGroupAndMember(group, member string, existing bool) *protocol.Error {
	validate := protocol.ValidateGroupName
	if existing {
		validate = protocol.ValidateExistingGroupName
	}
	if err := validate(group); err != nil {
		return protocol.Errorf(protocol.CodeInvalidArgument, "%v", err)
	}
	if member == "" {
		return nil
	}
	if err := protocol.ValidateMemberID(member); err != nil {
		return protocol.Errorf(protocol.CodeInvalidArgument, "%v", err)
	}
	return nil
}

// resolveCommitOffset checks (commit) or computes (reset) the offset to
// store. A commit must not pass the high watermark: the leader's high
// watermark now is at most the one where the entry applies, on every
// replica, so the check needs no repeating at apply.
func (b *Broker) resolveCommitOffset(r *partitionReplica, req *protocol.OffsetCommitRequest, po protocol.PartitionOffset) (uint64, *protocol.Error) {
	appliedIndex, highWatermark, _ := r.state.visible()
	logStart := r.log.FirstOffset()
	switch req.Op {
	case protocol.CommitOpDelete, protocol.CommitOpDeleteAndFence:
		return 0, nil
	case protocol.CommitOpCommit:
		if po.Offset > highWatermark {
			return 0, &protocol.Error{Code: protocol.CodeOffsetOutOfRange, Low: logStart, High: highWatermark,
				Message: fmt.Sprintf("commit of offset %d beyond the high watermark of %s/%d", po.Offset, r.topic, r.partition)}
		}
		return po.Offset, nil
	}
	switch req.ResetTo {
	case protocol.ResetEarliest:
		return logStart, nil
	case protocol.ResetLatest:
		return highWatermark, nil
	case protocol.ResetOffset:
		offset := po.Offset
		if req.ResetValue > 0 {
			offset = uint64(req.ResetValue)
		}
		if offset < logStart || offset > highWatermark {
			return 0, &protocol.Error{Code: protocol.CodeOffsetOutOfRange, Low: logStart, High: highWatermark,
				Message: fmt.Sprintf("reset of %s/%d to offset %d", r.topic, r.partition, offset)}
		}
		return offset, nil
	case protocol.ResetTimestamp:
		offset, err := offsetForTimestamp(r, req.ResetValue, logStart, highWatermark, appliedIndex)
		if err != nil {
			return 0, readError(err, fmt.Sprintf("offset for timestamp %d in %s/%d", req.ResetValue, r.topic, r.partition))
		}
		return offset, nil
	}
	return 0, protocol.Errorf(protocol.CodeInvalidArgument, "reset target %q: want earliest, latest, offset or timestamp", req.ResetTo)
}

func (b *Broker) handleOffsetFetch(msg *nats.Msg) {
	var req protocol.OffsetFetchRequest
	if err := json.Unmarshal(msg.Data, &req); err != nil {
		b.respondJSON(msg, protocol.OffsetFetchReply{Version: protocol.APIVersion, Error: protocol.Errorf(protocol.CodeMalformedRequest, "%v", err)})
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), b.cfg.ProduceTimeout+time.Second)
	defer cancel()
	b.respondJSON(msg, b.fetchOffsets(ctx, &req))
}

// fetchOffsets reads (after claiming, with req.Claim) a group's committed
// offsets on partitions this broker leads.
func (b *Broker) fetchOffsets(ctx context.Context, req *protocol.OffsetFetchRequest) protocol.OffsetFetchReply {
	reply := protocol.OffsetFetchReply{Version: protocol.APIVersion, Partitions: make([]protocol.CommittedOffset, len(req.Partitions))}
	if err := validateGroupAndMember(req.Group, req.Member, !req.Claim); err != nil {
		reply.Error = err
		return reply
	}
	replicas := make([]*partitionReplica, len(req.Partitions))
	claims := make([]*consumerOpWaiter, len(req.Partitions))
	now := time.Now().UnixMilli()
	for i, gp := range req.Partitions {
		out := &reply.Partitions[i]
		out.Topic, out.Partition = gp.Topic, gp.Partition
		r, apiErr := b.replicaFor(gp.Topic, gp.Partition)
		if apiErr == nil {
			apiErr = b.leaderCheck(r)
		}
		if apiErr != nil {
			out.Error = apiErr
			continue
		}
		replicas[i] = r
		// A claim, or for a plain read a barrier entry, goes through the
		// partition's log: once it applied here, this broker's state holds
		// every commit acknowledged before the request, and a deposed leader
		// that has not noticed yet cannot commit it (no stale read).
		op := readBarrier
		if req.Claim {
			op = protocol.ConsumerOp{Kind: protocol.ConsumerOpClaim, Group: req.Group, Member: req.Member, Epoch: gp.Epoch, Time: now}
		}
		claims[i] = b.submitConsumerOps(r, []protocol.ConsumerOp{op})[0]
	}
	for i, r := range replicas {
		if r == nil {
			continue
		}
		out := &reply.Partitions[i]
		if out.Error = awaitOps(ctx, claims[i:i+1])[0]; out.Error != nil {
			continue
		}
		rec, _ := r.state.consumers.get(req.Group)
		fillCommitted(out, r, rec, time.Now())
	}
	return reply
}

// fillCommitted sets a CommittedOffset from a record and the partition's ends.
func fillCommitted(out *protocol.CommittedOffset, r *partitionReplica, rec consumerRecord, now time.Time) {
	_, highWatermark, _ := r.state.visible()
	out.HighWatermark, out.LogStartOffset = highWatermark, r.log.FirstOffset()
	out.Committed, out.Offset, out.Epoch, out.Member, out.Metadata = rec.Committed, rec.Offset, rec.Epoch, rec.Member, rec.Metadata
	if rec.Committed {
		out.CommitTime = time.UnixMilli(rec.Time).UTC()
	}
	out.LagRecords, out.LagSeconds = consumerLag(r, rec, now)
}

// consumerLag is a group's lag on r: records between its position (the
// committed offset, else the log start) and the high watermark, and the age
// of the oldest of them (its batch's append time).
func consumerLag(r *partitionReplica, rec consumerRecord, now time.Time) (records uint64, seconds float64) {
	appliedIndex, highWatermark, _ := r.state.visible()
	position := max(rec.Offset, r.log.FirstOffset())
	if !rec.Committed {
		position = r.log.FirstOffset()
	}
	if position >= highWatermark {
		return 0, 0
	}
	records = highWatermark - position
	data, _, err := r.log.ReadBatches(nil, position, appliedIndex, 1)
	if err != nil || len(data) < protocol.BatchHeaderSize {
		return records, 0
	}
	h, err := protocol.ReadBatchHeader(data)
	if err != nil {
		return records, 0
	}
	return records, max(0, now.Sub(time.UnixMilli(h.AppendTime)).Seconds())
}
