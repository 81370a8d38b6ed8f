package broker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/raftmq/raftmq/protocol"
	"github.com/raftmq/raftmq/raft"
)

// subscribe starts serving the client API and the broker-internal subjects.
func (b *Broker) subscribe() error {
	type subscription struct {
		subject, queue string
		handler        nats.MsgHandler
		// peer subscribes on the peer connection: broker-to-broker
		// messages that clients must not forge (docs/adr/0005).
		peer bool
	}
	id := b.cfg.ID
	subs := []subscription{
		{protocol.SubjectBrokerProduce(b.prefix, id), "", b.handleProduce, false},
		{protocol.SubjectBrokerFetch(b.prefix, id), "", b.goHandle(b.handleFetch), false},
		{protocol.SubjectBrokerOffsets(b.prefix, id), "", b.goHandle(b.handleListOffsets), false},
		{protocol.SubjectBrokerStatus(b.prefix, id), "", b.handleStatusRequest, false},
		{protocol.SubjectBrokerCommit(b.prefix, id), "", b.goHandle(b.handleOffsetCommit), false},
		{protocol.SubjectBrokerCommitted(b.prefix, id), "", b.goHandle(b.handleOffsetFetch), false},
		{protocol.SubjectBrokerAdmin(b.prefix, id, ">"), "", b.goHandle(b.handleAdmin), false},
		{protocol.SubjectAdmin(b.prefix, ">"), protocol.APIQueue, b.goHandle(b.handleAdmin), false},
		{protocol.SubjectProduceAll(b.prefix), protocol.APIQueue, b.goHandle(b.handlePublish), false},
		{protocol.SubjectStatusAll(b.prefix), "", b.handleStatusRequest, false},
		{protocol.SubjectClusterStatus(b.prefix), "", b.handleStatusReport, true},
		{protocol.SubjectClusterMetadata(b.prefix), "", b.handleMetadataBroadcast, true},
	}
	if b.peerAccount() {
		// Status reports of brokers that replicate in the client account
		// (over TCP) arrive here; they only tell this broker that such a
		// broker exists (handleOtherAccountReport).
		subs = append(subs, subscription{protocol.SubjectClusterStatus(b.prefix), "", b.handleOtherAccountReport, false})
	}
	for _, s := range subs {
		conn := b.nc
		if s.peer {
			conn = b.peerNC
		}
		var sub *nats.Subscription
		var err error
		if s.queue != "" {
			sub, err = conn.QueueSubscribe(s.subject, s.queue, s.handler)
		} else {
			sub, err = conn.Subscribe(s.subject, s.handler)
		}
		if err != nil {
			return fmt.Errorf("broker: subscribe %s: %w", s.subject, err)
		}
		if err := sub.SetPendingLimits(subscriptionPendingMessages, subscriptionPendingBytes); err != nil {
			return fmt.Errorf("broker: pending limits of %s: %w", s.subject, err)
		}
		b.subs = append(b.subs, sub)
	}
	if err := b.registerDropMetrics(); err != nil {
		return err
	}
	// Make sure the server has the interest before the broker reports ready.
	conns := []*nats.Conn{b.nc}
	if b.peerAccount() {
		conns = append(conns, b.peerNC)
	}
	for _, conn := range conns {
		if err := conn.Flush(); err != nil {
			return fmt.Errorf("broker: NATS flush: %w", err)
		}
	}
	return nil
}

// Pending limits of every client API subscription. NATS queues a
// subscription's messages in the client until its handler takes them; past
// either limit it drops new ones (a slow consumer) and reports that as an
// asynchronous error, which the connection's error handler logs
// (transport.Connect) and raftmq_subscription_dropped_messages_total counts.
// A dropped produce request times out at the producer, which retries it
// (idempotently), so a drop costs latency, never data. The limits are far
// above what the producers' in-flight windows queue (a few batches of at
// most the max payload per producer and partition) and bound the memory a
// flood of requests can take.
const (
	subscriptionPendingMessages = 1 << 20
	subscriptionPendingBytes    = 256 << 20
)

// registerDropMetrics exports the messages NATS dropped per subscription.
func (b *Broker) registerDropMetrics() error {
	c := &dropCollector{
		subs: b.subs,
		desc: prometheus.NewDesc("raftmq_subscription_dropped_messages_total",
			"Client API messages dropped before the broker read them because a subscription exceeded its pending limits (slow consumer).",
			[]string{"subject"}, prometheus.Labels{"broker": strconv.FormatUint(b.cfg.ID, 10)}),
	}
	if reg := b.metrics.registerer; reg != nil {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("broker: register subscription metrics: %w", err)
		}
	}
	b.metrics.collectors = append(b.metrics.collectors, c) // unregistered with the others
	return nil
}

// dropCollector reads nats.Subscription.Dropped at scrape time.
type dropCollector struct {
	subs []*nats.Subscription
	desc *prometheus.Desc
}

func (c *dropCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *dropCollector) Collect(ch chan<- prometheus.Metric) {
	// A subject may have a subscription on each connection (cluster
	// status: the peer account's and the client account's); one series
	// per subject sums them.
	var subjects []string
	dropped := map[string]int{}
	for _, sub := range c.subs {
		n, err := sub.Dropped()
		if err != nil {
			continue // unsubscribed (the broker is stopping)
		}
		if _, ok := dropped[sub.Subject]; !ok {
			subjects = append(subjects, sub.Subject)
		}
		dropped[sub.Subject] += n
	}
	for _, subject := range subjects {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.CounterValue, float64(dropped[subject]), subject)
	}
}

// goHandle runs a handler on its own goroutine, so a slow request (a long
// poll, an admin command) does not hold up the subscription.
func (b *Broker) goHandle(handler nats.MsgHandler) nats.MsgHandler {
	return func(msg *nats.Msg) {
		if !b.track() {
			b.respondShuttingDown(msg)
			return
		}
		go func() {
			defer b.requests.Done()
			handler(msg)
		}()
	}
}

// track registers an in-flight request; false once the broker is closing.
func (b *Broker) track() bool {
	b.mu.RLock()
	defer b.mu.RUnlock()
	if b.closing {
		return false
	}
	b.requests.Add(1)
	return true
}

func (b *Broker) respondShuttingDown(msg *nats.Msg) {
	if msg.Reply == "" {
		return
	}
	e := protocol.Errorf(protocol.CodeShuttingDown, "broker %d is shutting down", b.cfg.ID)
	// The subject tells which encoding the requester expects.
	switch msg.Sub.Subject {
	case protocol.SubjectBrokerFetch(b.prefix, b.cfg.ID):
		_ = msg.Respond(protocol.AppendFetchReply(nil, &protocol.FetchReply{Err: e}))
	case protocol.SubjectBrokerOffsets(b.prefix, b.cfg.ID):
		_ = msg.Respond(protocol.AppendListOffsetsReply(nil, &protocol.ListOffsetsReply{Err: e}))
	case protocol.SubjectBrokerProduce(b.prefix, b.cfg.ID):
		_ = msg.Respond(protocol.AppendProduceReply(nil, &protocol.ProduceReply{Err: e}))
	default:
		b.respondJSON(msg, struct {
			Version int             `json:"v"`
			Error   *protocol.Error `json:"error"`
		}{protocol.APIVersion, e})
	}
}

func (b *Broker) respondJSON(msg *nats.Msg, v any) {
	if msg.Reply == "" {
		return
	}
	data, err := json.Marshal(v)
	if err != nil {
		b.logger.Error("encode reply", "err", err)
		return
	}
	reply := &nats.Msg{Data: data}
	if msg.Header.Get(protocol.HeaderAcceptEncoding) == protocol.EncodingZstd {
		reply = largeMessage("", data, b.nc.MaxPayload())
	}
	if size, limit := messageSize(reply), b.nc.MaxPayload(); size > limit {
		// No reply would leave the requester waiting out its timeout
		// with no idea why.
		b.logLimited("reply", "reply over the NATS max payload", "subject", msg.Subject, "bytes", size, "max_payload", limit)
		data, _ = json.Marshal(adminError{protocol.APIVersion, protocol.Errorf(protocol.CodeReplyTooLarge,
			"the reply of %d bytes is over the NATS max payload of %d bytes: ask for less (fewer topics)", size, limit)})
		reply = &nats.Msg{Data: data}
	}
	_ = msg.RespondMsg(reply)
}

// largeMessage returns a message on subject carrying data, compressed when
// it is large (protocol.EncodePayload, for a connection whose max payload
// is maxPayload), with the encoding in its header.
func largeMessage(subject string, data []byte, maxPayload int64) *nats.Msg {
	msg := &nats.Msg{Subject: subject, Data: data}
	if payload, encoding := protocol.EncodePayload(data, maxPayload); encoding != "" {
		msg.Data = payload
		msg.Header = nats.Header{protocol.HeaderEncoding: []string{encoding}}
	}
	return msg
}

// messagePayload returns msg's plain payload, decompressed if its header
// says it is compressed (largeMessage).
func messagePayload(msg *nats.Msg) ([]byte, error) {
	return protocol.DecodePayload(msg.Data, msg.Header.Get(protocol.HeaderEncoding))
}

// messageSize is what NATS counts against its max payload: the payload and
// the encoded header (an upper bound: a line per value plus the preamble).
func messageSize(msg *nats.Msg) int64 {
	size := len(msg.Data)
	if len(msg.Header) > 0 {
		size += len("NATS/1.0\r\n\r\n")
		for k, values := range msg.Header {
			for _, v := range values {
				size += len(k) + len(": \r\n") + len(v)
			}
		}
	}
	return int64(size)
}

// publishLarge publishes data on the peer connection with largeMessage; a
// message that is still over the max payload (or any other publish error)
// is logged, at most once a minute for each kind of message (what).
func (b *Broker) publishLarge(what, subject string, data []byte) {
	msg := largeMessage(subject, data, b.peerNC.MaxPayload())
	if err := b.peerNC.PublishMsg(msg); err != nil {
		b.logLimited(what, "cannot publish "+what, "err", err, "bytes", messageSize(msg), "max_payload", b.peerNC.MaxPayload())
	}
}

// logLimited logs msg at error level unless a message of the same key was
// logged in the last minute: for an error that would otherwise repeat at
// every status interval.
func (b *Broker) logLimited(key, msg string, args ...any) {
	b.logLimitedAt(slog.LevelError, key, msg, args...)
}

// logLimitedAt is logLimited at the given level.
func (b *Broker) logLimitedAt(level slog.Level, key, msg string, args ...any) {
	now := time.Now()
	b.logLimit.Lock()
	if b.logLimit.last == nil {
		b.logLimit.last = map[string]time.Time{}
	}
	last, seen := b.logLimit.last[key]
	log := !seen || now.Sub(last) >= time.Minute
	if log {
		b.logLimit.last[key] = now
	}
	b.logLimit.Unlock()
	if log {
		b.logger.Log(context.Background(), level, msg, args...)
	}
}

// asAPIError turns a decode error into a client error.
func asAPIError(err error) *protocol.Error {
	var apiErr *protocol.Error
	if errors.As(err, &apiErr) {
		return apiErr
	}
	return protocol.Errorf(protocol.CodeMalformedRequest, "%v", err)
}

// handleProduce runs on the produce subscription's goroutine, so proposals
// from one connection enter the Raft log in the order they were sent; only
// the wait for the acknowledgement moves to another goroutine.
func (b *Broker) handleProduce(msg *nats.Msg) {
	start := time.Now()
	req, err := protocol.DecodeProduceRequest(msg.Data)
	if err != nil {
		reply := protocol.ProduceReply{Err: asAPIError(err)}
		b.metrics.observeProduce(reply.Err, 0, 0, start)
		_ = msg.Respond(protocol.AppendProduceReply(nil, &reply))
		return
	}
	b.produce(req, start, func(reply protocol.ProduceReply) {
		_ = msg.Respond(protocol.AppendProduceReply(nil, &reply))
	})
}

// produce validates, stamps and proposes a batch; done is called exactly once
// with the reply (possibly on another goroutine). req.Batch is owned by the
// broker from now on (it is stamped in place).
func (b *Broker) produce(req protocol.ProduceRequest, start time.Time, done func(protocol.ProduceReply)) {
	fail := func(e *protocol.Error, records int) {
		b.metrics.observeProduce(e, records, len(req.Batch), start)
		done(protocol.ProduceReply{Err: e})
	}
	r, apiErr := b.replicaFor(req.Topic, req.Partition)
	if apiErr != nil {
		fail(apiErr, 0)
		return
	}
	if apiErr := b.leaderCheck(r); apiErr != nil {
		fail(apiErr, 0)
		return
	}
	header, apiErr := b.validateBatch(req.Batch)
	if apiErr != nil {
		fail(apiErr, 0)
		return
	}
	if !b.track() {
		fail(protocol.Errorf(protocol.CodeShuttingDown, "broker %d is shutting down", b.cfg.ID), 0)
		return
	}
	appendTime := time.Now().UnixMilli()
	protocol.StampBatch(req.Batch, 0, appendTime)
	timeout := req.Timeout
	if timeout <= 0 {
		timeout = b.cfg.ProduceTimeout
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	mode := raft.AckCommitted
	switch req.Acks {
	case protocol.AcksApplied:
		mode = raft.AckApplied
	case protocol.AcksLeader: // unsafe, chosen by the producer
		mode = raft.AckAppendedUnsafe
	}
	propose := func() *raft.Proposal { return r.group.Propose(ctx, protocol.EntryRecordBatch, req.Batch, mode) }
	admitted, apiErr := b.admitBatch(r, header, appendTime, propose)
	if apiErr != nil || admitted.proposal == nil {
		cancel()
		b.requests.Done()
		if apiErr != nil {
			fail(apiErr, 0)
			return
		}
		b.metrics.observeProduce(nil, int(header.RecordCount), len(req.Batch), start)
		done(protocol.ProduceReply{BaseOffset: admitted.baseOffset, AppendTime: admitted.appendTime})
		return
	}
	if admitted.duplicate {
		appendTime = admitted.appendTime
	}
	proposal := admitted.proposal
	go func() {
		defer b.requests.Done()
		defer cancel()
		index, _, err := proposal.Wait(ctx)
		if err != nil {
			fail(produceError(index, err, fmt.Sprintf("produce to %s/%d", req.Topic, req.Partition)), int(header.RecordCount))
			return
		}
		baseOffset, err := r.log.OffsetOfIndex(index)
		if err != nil {
			// Committed, but the offset cannot be read back (the replica
			// was stopped meanwhile). The client retries; a duplicate is
			// possible, a loss is not.
			fail(protocol.Errorf(protocol.CodeTimeout, "committed at index %d but the offset is unavailable (%v): the batch was written", index, err), int(header.RecordCount))
			return
		}
		b.metrics.observeProduce(nil, int(header.RecordCount), len(req.Batch), start)
		done(protocol.ProduceReply{BaseOffset: baseOffset, AppendTime: appendTime})
	}()
}

// produceError is the reply to a produce whose proposal failed at index
// (0: never appended). An entry the leader appended and then lost other
// than to a committed entry at its index (raft.ErrProposalDropped) — it
// stepped down and its copy was overwritten, the replica stopped after an
// error or was removed, or an acks=applied entry committed before the
// group closed — may be held by another replica and committed by a later
// leader (raft.Proposal.Wait): its outcome is unknown, so it is answered
// CodeTimeout, "it may have been written", never not_leader, which reads
// as a refusal.
func produceError(index uint64, err error, what string) *protocol.Error {
	if index == 0 || errors.Is(err, raft.ErrProposalDropped) {
		return raftError(err, what)
	}
	return protocol.Errorf(protocol.CodeTimeout, "%s: the leader lost the entry at index %d before it was acknowledged (%v); it may still be committed", what, index, err)
}

// validateBatch checks a batch before it is appended: its size, structure
// and CRC, then every record, decompressed if need be, as a consumer will
// decode it (the record count, each record's fields and timestamp within
// the batch's range, the decompressed size within a consumer's limit) and
// against max record bytes. A batch a consumer could not decode would
// stop every consumer of the partition at its offset for good, and one
// whose header claims more records than it holds would move the high
// watermark past records that do not exist.
func (b *Broker) validateBatch(batch []byte) (protocol.BatchHeader, *protocol.Error) {
	if len(batch) > b.maxBatchBytes {
		return protocol.BatchHeader{}, &protocol.Error{Code: protocol.CodeBatchTooLarge, Limit: uint64(b.maxBatchBytes),
			Message: fmt.Sprintf("batch of %d bytes exceeds max batch bytes", len(batch))}
	}
	header, err := protocol.VerifyBatch(batch)
	if err != nil {
		return header, protocol.Errorf(protocol.CodeCorruptBatch, "%v", err)
	}
	it := recordIterators.Get().(*protocol.RecordIterator)
	defer recordIterators.Put(it)
	if err := it.ResetVerified(batch); err != nil {
		return header, protocol.Errorf(protocol.CodeCorruptBatch, "%v", err)
	}
	count := 0
	for it.NextPlain() {
		rec := it.Record()
		size := len(rec.Key) + len(rec.Value)
		for _, h := range rec.Headers {
			size += len(h.Key) + len(h.Value)
		}
		if size > b.cfg.MaxRecordBytes {
			return header, &protocol.Error{Code: protocol.CodeRecordTooLarge, Limit: uint64(b.cfg.MaxRecordBytes),
				Message: fmt.Sprintf("record at position %d is %d bytes, over max record bytes", count, size)}
		}
		count++
	}
	switch {
	case it.Err() != nil:
		return header, protocol.Errorf(protocol.CodeCorruptBatch, "%v", it.Err())
	case count != int(header.RecordCount):
		return header, protocol.Errorf(protocol.CodeCorruptBatch, "header says %d records, batch holds %d", header.RecordCount, count)
	}
	return header, nil
}

// recordIterators keeps the iterators validateBatch decodes with (and
// their decompression buffers).
var recordIterators = sync.Pool{New: func() any { return new(protocol.RecordIterator) }}

func (b *Broker) handleListOffsets(msg *nats.Msg) {
	req, err := protocol.DecodeListOffsetsRequest(msg.Data)
	var reply protocol.ListOffsetsReply
	if err != nil {
		reply.Err = asAPIError(err)
	} else {
		reply = b.listOffsets(req)
	}
	_ = msg.Respond(protocol.AppendListOffsetsReply(nil, &reply))
}

func (b *Broker) listOffsets(req protocol.ListOffsetsRequest) protocol.ListOffsetsReply {
	r, apiErr := b.replicaFor(req.Topic, req.Partition)
	if apiErr != nil {
		return protocol.ListOffsetsReply{Err: apiErr}
	}
	if apiErr := b.leaderCheck(r); apiErr != nil {
		return protocol.ListOffsetsReply{Err: apiErr}
	}
	b.awaitCommitted(r)
	appliedIndex, highWatermark, _ := r.state.visible()
	reply := protocol.ListOffsetsReply{HighWatermark: highWatermark, LogStartOffset: r.log.FirstOffset()}
	switch {
	case req.Timestamp == protocol.OffsetLatest:
		reply.Offset = highWatermark
	case req.Timestamp == protocol.OffsetEarliest:
		reply.Offset = reply.LogStartOffset
	case req.Timestamp < 0:
		reply.Err = protocol.Errorf(protocol.CodeMalformedRequest, "timestamp %d: use -1 (latest), -2 (earliest) or unix milliseconds", req.Timestamp)
	default:
		offset, err := offsetForTimestamp(r, req.Timestamp, reply.LogStartOffset, highWatermark, appliedIndex)
		if err != nil {
			reply.Err = readError(err, fmt.Sprintf("offset for timestamp %d in %s/%d", req.Timestamp, req.Topic, req.Partition))
		}
		reply.Offset = offset
	}
	return reply
}

// offsetForTimestamp returns the base offset of the first committed batch
// whose max timestamp (or append time) is at or after ts, or the high
// watermark when there is none. It scans batch headers from the log start.
func offsetForTimestamp(r *partitionReplica, ts int64, logStart, highWatermark, appliedIndex uint64) (uint64, error) {
	errFound := errors.New("found")
	var buf []byte
	offset := logStart
	for offset < highWatermark {
		var next uint64
		var err error
		buf, next, err = r.log.ReadBatches(buf[:0], offset, appliedIndex, 1<<20)
		if err != nil {
			return highWatermark, err
		}
		if next == offset {
			break
		}
		found := uint64(0)
		err = protocol.SplitBatches(buf, func(_ []byte, h protocol.BatchHeader) error {
			if h.MaxTimestamp >= ts || h.AppendTime >= ts {
				found = h.BaseOffset
				return errFound
			}
			return nil
		})
		if errors.Is(err, errFound) {
			return max(found, logStart), nil
		}
		if err != nil {
			return highWatermark, err
		}
		offset = next
	}
	return highWatermark, nil
}

// handlePublish serves the plain publish subject: the payload becomes one
// record; the reply is JSON {"partition":P,"offset":O}.
func (b *Broker) handlePublish(msg *nats.Msg) {
	reply := b.publish(msg)
	b.respondJSON(msg, reply)
}

func (b *Broker) publish(msg *nats.Msg) protocol.PublishReply {
	topic, _ := protocol.TopicFromProduceSubject(b.prefix, msg.Subject)
	fail := func(e *protocol.Error) protocol.PublishReply { return protocol.PublishReply{Error: e} }
	// A broker that just started waits for the metadata rather than failing
	// a client that cannot retry by itself.
	wait := time.NewTimer(b.cfg.ProduceTimeout)
	defer wait.Stop()
	select {
	case <-b.metadataKnown:
	case <-wait.C:
		return fail(protocol.Errorf(protocol.CodeNotReady, "broker %d has no cluster metadata yet", b.cfg.ID))
	case <-b.stop:
		return fail(protocol.Errorf(protocol.CodeShuttingDown, "broker %d is shutting down", b.cfg.ID))
	}
	m := b.currentMetadata()
	t := m.Topics[topic]
	if t == nil {
		return fail(protocol.Errorf(protocol.CodeUnknownTopic, "topic %q does not exist; create it with: raftmq topic create %s", topic, topic))
	}
	// A key header, even an empty one, is a key (hashed to a partition,
	// stored as the record's key), as an empty non-nil key is for the SDK;
	// no header is no key.
	var key []byte
	if values := msg.Header.Values(protocol.HeaderKey); len(values) > 0 {
		key = append([]byte{}, values[0]...)
	}
	var partition uint32
	switch {
	case msg.Header != nil && msg.Header.Get(protocol.HeaderPartition) != "":
		p, err := strconv.ParseUint(msg.Header.Get(protocol.HeaderPartition), 10, 32)
		if err != nil || int(p) >= len(t.Partitions) {
			return fail(protocol.Errorf(protocol.CodeBadPartition, "header %s=%q: topic %q has partitions 0..%d",
				protocol.HeaderPartition, msg.Header.Get(protocol.HeaderPartition), topic, len(t.Partitions)-1))
		}
		partition = uint32(p)
	case key != nil:
		partition = uint32(protocol.PartitionForKey(key, len(t.Partitions)))
	default:
		partition = uint32(b.roundRobin.Add(1) % uint64(len(t.Partitions)))
	}
	if size := len(key) + len(msg.Data); size > b.cfg.MaxRecordBytes {
		return fail(&protocol.Error{Code: protocol.CodeRecordTooLarge, Limit: uint64(b.cfg.MaxRecordBytes),
			Message: fmt.Sprintf("record of %d bytes exceeds max record bytes", size)})
	}
	var builder protocol.BatchBuilder
	if err := builder.Add(protocol.Record{Timestamp: time.Now().UnixMilli(), Key: key, Value: msg.Data}); err != nil {
		return fail(protocol.Errorf(protocol.CodeInvalidArgument, "%v", err))
	}
	batch, err := builder.Build(protocol.CodecNone)
	if err != nil {
		return fail(protocol.Errorf(protocol.CodeInvalidArgument, "%v", err))
	}
	req := protocol.ProduceRequest{Topic: topic, Partition: partition, Batch: batch, Timeout: b.cfg.ProduceTimeout}
	reply := b.produceAnywhere(req)
	if reply.Err != nil {
		return fail(reply.Err)
	}
	return protocol.PublishReply{Partition: partition, Offset: reply.BaseOffset}
}

// produceAnywhere sends a produce request to the partition leader, wherever
// it is, following not-leader answers and retrying retriable errors until
// the request's timeout. It pauses, backing off, before it asks a broker
// it already asked since the last pause (or when no broker is named), so
// brokers whose stale views name each other as the leader are not asked
// in a tight loop until the deadline. Once an attempt's outcome is unknown
// (CodeTimeout: its leader may have written the record), every later
// failure is answered CodeTimeout as well, since that attempt may have
// committed the record (produceFailed).
func (b *Broker) produceAnywhere(req protocol.ProduceRequest) protocol.ProduceReply {
	deadline := time.Now().Add(req.Timeout)
	encoded := protocol.AppendProduceRequest(nil, &req)
	target := b.produceTarget(b.leaderOf(req.Topic, req.Partition))
	var last protocol.ProduceReply
	var attempts produceAttempts
	askedSincePause := map[uint64]bool{}
	for pauses := 0; time.Now().Before(deadline); {
		askedSincePause[target] = true
		attempts.add(target)
		last = b.produceAt(target, req, encoded, deadline)
		if last.Err == nil {
			return last
		}
		if last.Err.Code == protocol.CodeTimeout && attempts.unknownOutcome == nil {
			attempts.unknownOutcome = last.Err
		}
		if !last.Err.Retriable() {
			break
		}
		next := b.leaderOf(req.Topic, req.Partition)
		if last.Err.Code == protocol.CodeNotLeader && last.Err.Leader != 0 {
			next = last.Err.Leader
		}
		if next == 0 || askedSincePause[b.produceTarget(next)] {
			// No better idea where the leader is: wait for an election
			// or fresher views, but not past the deadline or the
			// broker's shutdown.
			pauses++
			clear(askedSincePause)
			pause := min(time.Duration(pauses)*50*time.Millisecond, 500*time.Millisecond, time.Until(deadline))
			timer := time.NewTimer(max(pause, 0))
			select {
			case <-timer.C:
			case <-b.stop:
				timer.Stop()
				last = protocol.ProduceReply{Err: protocol.Errorf(protocol.CodeShuttingDown, "broker %d is shutting down", b.cfg.ID)}
				return produceFailed(req, last, attempts)
			}
		}
		target = b.produceTarget(next)
	}
	return produceFailed(req, last, attempts)
}

// produceTarget is the broker produceAnywhere asks when leader is the best
// known leader: this one when none is known.
func (b *Broker) produceTarget(leader uint64) uint64 {
	if leader == 0 {
		return b.cfg.ID
	}
	return leader
}

// produceAt makes one produce attempt at broker target: here, or forwarded
// to target's produce subject, waiting for its answer until deadline.
func (b *Broker) produceAt(target uint64, req protocol.ProduceRequest, encoded []byte, deadline time.Time) protocol.ProduceReply {
	if target == b.cfg.ID {
		result := make(chan protocol.ProduceReply, 1)
		local := req
		local.Batch = append([]byte(nil), req.Batch...)
		b.produce(local, time.Now(), func(r protocol.ProduceReply) { result <- r })
		return <-result
	}
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	msg, err := b.nc.RequestWithContext(ctx, protocol.SubjectBrokerProduce(b.prefix, target), encoded)
	if err != nil {
		return protocol.ProduceReply{Err: protocol.Errorf(protocol.CodeTimeout, "broker %d: %v", target, err)}
	}
	reply, err := protocol.DecodeProduceReply(msg.Data)
	if err != nil {
		return protocol.ProduceReply{Err: asAPIError(err)}
	}
	return reply
}

// produceAttempts is what produceAnywhere's attempts have found so far.
type produceAttempts struct {
	count   int
	brokers []uint64 // the brokers asked, each once, in the order first asked
	// unknownOutcome is the first attempt's error whose outcome is unknown.
	unknownOutcome *protocol.Error
}

func (a *produceAttempts) add(broker uint64) {
	a.count++
	if !slices.Contains(a.brokers, broker) {
		a.brokers = append(a.brokers, broker)
	}
}

// produceFailed is produceAnywhere's answer when no attempt succeeded: last
// is the last attempt's reply (no error when there was none). After an
// attempt whose outcome is unknown the answer is CodeTimeout, "it may have
// been written", whatever the later attempts said: a not_leader or
// not_ready would read as "not written" though the earlier attempt may
// have committed it. A retriable error, the last one when time ran out,
// says how many attempts were made at which brokers.
func produceFailed(req protocol.ProduceRequest, last protocol.ProduceReply, attempts produceAttempts) protocol.ProduceReply {
	what := fmt.Sprintf("produce to %s/%d", req.Topic, req.Partition)
	tried := fmt.Sprintf("%d attempts at brokers %v", attempts.count, attempts.brokers)
	switch {
	case attempts.unknownOutcome != nil && (last.Err == nil || last.Err.Code != protocol.CodeTimeout):
		lastMessage := "none"
		if last.Err != nil {
			lastMessage = fmt.Sprintf("%s: %s", last.Err.Code, last.Err.Message)
		}
		return protocol.ProduceReply{Err: protocol.Errorf(protocol.CodeTimeout,
			"%s: an earlier attempt's outcome is unknown (%s), so it may have been written (%s); the last attempt: %s",
			what, attempts.unknownOutcome.Message, tried, lastMessage)}
	case last.Err == nil:
		return protocol.ProduceReply{Err: protocol.Errorf(protocol.CodeTimeout, "%s timed out", what)}
	case last.Err.Retriable():
		e := *last.Err
		e.Message = fmt.Sprintf("%s: not accepted after %s; the last: %s", what, tried, last.Err.Message)
		return protocol.ProduceReply{Err: &e}
	}
	return last
}

// leaderOf is the best known leader of a partition: this broker's replica's
// view, else the brokers' status reports; 0 when unknown.
func (b *Broker) leaderOf(topic string, partition uint32) uint64 {
	b.mu.RLock()
	defer b.mu.RUnlock()
	if r := b.partitions[topicPartition{topic, partition}]; r != nil {
		if leader := r.group.Status().Leader; leader != 0 {
			return leader
		}
		return b.knownLeaderLocked(r.groupID)
	}
	if t := b.metadata.Topics[topic]; t != nil && int(partition) < len(t.Partitions) {
		return b.knownLeaderLocked(t.Partitions[partition].GroupID)
	}
	return 0
}
