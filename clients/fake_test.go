package clients

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/raftmq/raftmq/protocol"
)

// fakeCluster answers the client API on an embedded NATS server like a
// cluster of brokers would, from memory, so SDK tests can steer leaders and
// inject errors. It is not a broker: no Raft, no durability.
type fakeCluster struct {
	t       *testing.T
	server  *server.Server
	conn    *nats.Conn
	brokers []uint64

	mu      sync.Mutex
	changed chan struct{} // closed and replaced on every append
	topics  map[string]*fakeTopic
	// produceErrors are returned, in order, by the next produce requests.
	produceErrors []*protocol.Error
	// dropProduce makes the next produce requests go unanswered (a timeout).
	dropProduce int
	produceSeen int
	// refuseBatch, when set, answers a batch it returns an error for
	// with that error, storing nothing (a broker's sequence check).
	refuseBatch func(protocol.BatchHeader) *protocol.Error
	// produceGate, when set, holds every produce request until it is
	// closed (holdProduce); produceArrived counts requests that reached it.
	produceGate    chan struct{}
	produceArrived int
	// compressedReplies counts the JSON replies sent compressed, to
	// requests that accept it (as a broker does for large ones).
	compressedReplies atomic.Int64
}

type fakeTopic struct {
	partitions []*fakePartition
}

type fakePartition struct {
	leader  uint64
	batches [][]byte // stamped
	next    uint64
}

// watchFetches returns, decoded, the fetch requests that broker 1 (default
// subject prefix) receives from now on, beside the fake's own handler.
func (f *fakeCluster) watchFetches(t *testing.T) <-chan protocol.FetchRequest {
	t.Helper()
	requests := make(chan protocol.FetchRequest, 100)
	f.subscribe(protocol.SubjectBrokerFetch(protocol.DefaultSubjectPrefix, 1), func(m *nats.Msg) {
		if request, err := protocol.DecodeFetchRequest(m.Data); err == nil {
			requests <- request
		}
	})
	if err := f.conn.Flush(); err != nil {
		t.Fatal(err)
	}
	return requests
}

func startFakeCluster(t *testing.T, brokers ...uint64) *fakeCluster {
	t.Helper()
	if len(brokers) == 0 {
		brokers = []uint64{1}
	}
	srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("NATS server not ready")
	}
	conn, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeCluster{t: t, server: srv, conn: conn, brokers: brokers,
		changed: make(chan struct{}), topics: make(map[string]*fakeTopic)}
	prefix := protocol.DefaultSubjectPrefix
	f.subscribe(protocol.SubjectAdmin(prefix, ">"), f.handleAdmin)
	for _, id := range brokers {
		f.subscribe(protocol.SubjectBrokerProduce(prefix, id), func(m *nats.Msg) {
			f.awaitProduceGate()
			f.handleProduce(id, m)
		})
		f.subscribe(protocol.SubjectBrokerFetch(prefix, id), func(m *nats.Msg) { go f.handleFetch(id, m) })
		f.subscribe(protocol.SubjectBrokerOffsets(prefix, id), func(m *nats.Msg) { f.handleOffsets(id, m) })
	}
	if err := conn.Flush(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn.Close()
		srv.Shutdown()
		srv.WaitForShutdown()
	})
	return f
}

func (f *fakeCluster) url() string { return f.server.ClientURL() }

// holdProduce makes produce requests wait, in arrival order, until release
// is called; arrived reports how many have reached the gate so far.
func (f *fakeCluster) holdProduce() (arrived func() int, release func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	gate := make(chan struct{})
	f.produceGate = gate
	f.produceArrived = 0 // not the requests before the gate
	arrived = func() int {
		f.mu.Lock()
		defer f.mu.Unlock()
		return f.produceArrived
	}
	release = sync.OnceFunc(func() {
		f.mu.Lock()
		f.produceGate = nil
		f.mu.Unlock()
		close(gate)
	})
	f.t.Cleanup(release)
	return arrived, release
}

func (f *fakeCluster) awaitProduceGate() {
	f.mu.Lock()
	f.produceArrived++
	gate := f.produceGate
	f.mu.Unlock()
	if gate != nil {
		<-gate
	}
}

func (f *fakeCluster) createTopic(name string, partitions int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	topic := &fakeTopic{}
	for i := range partitions {
		topic.partitions = append(topic.partitions, &fakePartition{leader: f.brokers[i%len(f.brokers)]})
	}
	f.topics[name] = topic
}

func (f *fakeCluster) setLeader(topic string, partition int, leader uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.topics[topic].partitions[partition].leader = leader
}

func (f *fakeCluster) failProduce(errs ...*protocol.Error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.produceErrors = append(f.produceErrors, errs...)
}

// values returns the values stored in a partition, in offset order.
func (f *fakeCluster) values(topic string, partition int) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var values []string
	for _, batch := range f.topics[topic].partitions[partition].batches {
		err := protocol.DecodeRecords(batch, func(r protocol.Record) error {
			values = append(values, string(r.Value))
			return nil
		})
		if err != nil {
			f.t.Errorf("stored batch: %v", err)
		}
	}
	return values
}

func (f *fakeCluster) topicInfoLocked(name string) protocol.TopicInfo {
	info := protocol.TopicInfo{Name: name, Replicas: len(f.brokers)}
	for i, p := range f.topics[name].partitions {
		info.Partitions = append(info.Partitions, protocol.PartitionInfo{
			Partition: uint32(i), Leader: p.leader, Replicas: f.brokers, HighWatermark: p.next, CommitIndex: uint64(len(p.batches)),
		})
	}
	return info
}

// subscribe handles subject on the fake's connection.
func (f *fakeCluster) subscribe(subject string, handler nats.MsgHandler) {
	if _, err := f.conn.Subscribe(subject, handler); err != nil {
		f.t.Fatal(err)
	}
}

// serveQuietPartition answers, under prefix, metadata for topic "t" with
// one partition led by broker 1 and list-offsets at offset 10 (high
// watermark 30); its fetches go unanswered, for tests that play Poll
// themselves.
func (f *fakeCluster) serveQuietPartition(prefix string) {
	f.subscribe(protocol.SubjectBrokerOffsets(prefix, 1), func(m *nats.Msg) {
		_ = m.Respond(protocol.AppendListOffsetsReply(nil, &protocol.ListOffsetsReply{Offset: 10, HighWatermark: 30}))
	})
	f.subscribe(protocol.SubjectBrokerFetch(prefix, 1), func(*nats.Msg) {})
	f.serveOnePartitionMetadata(prefix)
}

// serveOnePartitionMetadata answers metadata requests under prefix with
// one topic, t, of one partition led by broker 1.
func (f *fakeCluster) serveOnePartitionMetadata(prefix string) {
	f.subscribe(protocol.SubjectAdmin(prefix, protocol.AdminMetadata), func(m *nats.Msg) {
		f.respondJSON(m, protocol.MetadataReply{Version: 1, ControllerLeader: 1, Brokers: []protocol.BrokerInfo{{ID: 1, Alive: true}},
			Topics: []protocol.TopicInfo{{Name: "t", Replicas: 1, Partitions: []protocol.PartitionInfo{{Partition: 0, Leader: 1, Replicas: []uint64{1}}}}}})
	})
}

// serveGroupMember plays a group coordinator on prefix's admin subjects:
// join, leave and every heartbeat are answered with reply, except a
// heartbeat for which onHeartbeat returns false (left unanswered).
// Heartbeats are handled one at a time.
func (f *fakeCluster) serveGroupMember(prefix string, reply protocol.HeartbeatReply, onHeartbeat func(protocol.HeartbeatRequest) bool) {
	f.subscribe(protocol.SubjectAdmin(prefix, protocol.AdminGroupJoin), func(m *nats.Msg) { f.respondJSON(m, reply) })
	f.subscribe(protocol.SubjectAdmin(prefix, protocol.AdminGroupHeartbeat), func(m *nats.Msg) {
		var req protocol.HeartbeatRequest
		if err := json.Unmarshal(m.Data, &req); err != nil {
			f.t.Error(err)
			return
		}
		if onHeartbeat(req) {
			f.respondJSON(m, reply)
		}
	})
	f.subscribe(protocol.SubjectAdmin(prefix, protocol.AdminGroupLeave), func(m *nats.Msg) {
		f.respondJSON(m, protocol.DeleteGroupReply{Version: protocol.APIVersion})
	})
}

func (f *fakeCluster) respondJSON(m *nats.Msg, v any) {
	data, err := json.Marshal(v)
	if err != nil {
		f.t.Error(err)
		return
	}
	reply := &nats.Msg{Data: data}
	if m.Header.Get(protocol.HeaderAcceptEncoding) == protocol.EncodingZstd {
		// Whatever its size, where compressing makes it smaller.
		if payload, encoding := protocol.EncodePayload(data, 0); encoding != "" {
			reply.Data, reply.Header = payload, nats.Header{protocol.HeaderEncoding: []string{encoding}}
			f.compressedReplies.Add(1)
		}
	}
	_ = m.RespondMsg(reply)
}

func (f *fakeCluster) handleAdmin(m *nats.Msg) {
	op := strings.TrimPrefix(m.Subject, protocol.SubjectAdmin(protocol.DefaultSubjectPrefix, ""))
	f.mu.Lock()
	defer f.mu.Unlock()
	switch op {
	case protocol.AdminMetadata, protocol.AdminClusterStatus:
		var request protocol.MetadataRequest
		_ = json.Unmarshal(m.Data, &request)
		reply := protocol.MetadataReply{Version: 1, ControllerLeader: f.brokers[0]}
		for _, id := range f.brokers {
			reply.Brokers = append(reply.Brokers, protocol.BrokerInfo{ID: id, Alive: true})
		}
		for name := range f.topics {
			if len(request.Topics) == 0 || request.Topics[0] == name {
				reply.Topics = append(reply.Topics, f.topicInfoLocked(name))
			}
		}
		f.respondJSON(m, reply)
	case protocol.AdminCreateTopic:
		var request protocol.CreateTopicRequest
		_ = json.Unmarshal(m.Data, &request)
		if f.topics[request.Name] != nil {
			f.respondJSON(m, protocol.TopicReply{Error: protocol.Errorf(protocol.CodeTopicExists, "topic %q exists", request.Name)})
			return
		}
		f.mu.Unlock()
		f.createTopic(request.Name, max(request.Partitions, 1))
		f.mu.Lock()
		info := f.topicInfoLocked(request.Name)
		f.respondJSON(m, protocol.TopicReply{Topic: &info})
	case protocol.AdminListTopics:
		reply := protocol.ListTopicsReply{Topics: []protocol.TopicInfo{}}
		for name := range f.topics {
			reply.Topics = append(reply.Topics, f.topicInfoLocked(name))
		}
		f.respondJSON(m, reply)
	case protocol.AdminDescribeTopic, protocol.AdminDeleteTopic:
		var request protocol.TopicRequest
		_ = json.Unmarshal(m.Data, &request)
		if f.topics[request.Name] == nil {
			f.respondJSON(m, protocol.TopicReply{Error: protocol.Errorf(protocol.CodeUnknownTopic, "topic %q", request.Name)})
			return
		}
		if op == protocol.AdminDeleteTopic {
			delete(f.topics, request.Name)
			f.respondJSON(m, protocol.DeleteTopicReply{})
			return
		}
		info := f.topicInfoLocked(request.Name)
		f.respondJSON(m, protocol.TopicReply{Topic: &info})
	default:
		f.respondJSON(m, protocol.TopicReply{Error: protocol.Errorf(protocol.CodeMalformedRequest, "op %q", op)})
	}
}

// partitionLocked finds a partition and checks that broker leads it.
func (f *fakeCluster) partitionLocked(broker uint64, topic string, partition uint32) (*fakePartition, *protocol.Error) {
	t := f.topics[topic]
	if t == nil {
		return nil, protocol.Errorf(protocol.CodeUnknownTopic, "topic %q", topic)
	}
	if int(partition) >= len(t.partitions) {
		return nil, protocol.Errorf(protocol.CodeBadPartition, "partition %d", partition)
	}
	p := t.partitions[partition]
	if p.leader != broker {
		return nil, &protocol.Error{Code: protocol.CodeNotLeader, Leader: p.leader}
	}
	return p, nil
}

func (f *fakeCluster) handleProduce(broker uint64, m *nats.Msg) {
	request, err := protocol.DecodeProduceRequest(m.Data)
	if err != nil {
		f.t.Errorf("produce request: %v", err)
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.produceSeen++
	reply := protocol.ProduceReply{}
	if f.dropProduce > 0 {
		f.dropProduce--
		return
	}
	if len(f.produceErrors) > 0 {
		reply.Err = f.produceErrors[0]
		f.produceErrors = f.produceErrors[1:]
		_ = m.Respond(protocol.AppendProduceReply(nil, &reply))
		return
	}
	p, apiErr := f.partitionLocked(broker, request.Topic, request.Partition)
	if apiErr == nil {
		header, err := protocol.VerifyBatch(request.Batch)
		if err != nil {
			apiErr = protocol.Errorf(protocol.CodeCorruptBatch, "%v", err)
		} else if f.refuseBatch != nil && f.refuseBatch(header) != nil {
			apiErr = f.refuseBatch(header)
		} else if stored, ok := p.duplicateOf(header); ok {
			// An idempotent retry of a batch already stored (its first
			// attempt was answered late, after the producer's request
			// timeout): answered with the original offset, as the broker
			// does, and not stored again.
			reply.BaseOffset, reply.AppendTime = stored.BaseOffset, stored.AppendTime
		} else {
			batch := append([]byte(nil), request.Batch...)
			reply.BaseOffset, reply.AppendTime = p.next, time.Now().UnixMilli()
			protocol.StampBatch(batch, p.next, reply.AppendTime)
			p.batches = append(p.batches, batch)
			p.next += uint64(header.RecordCount)
			close(f.changed)
			f.changed = make(chan struct{})
		}
	}
	reply.Err = apiErr
	_ = m.Respond(protocol.AppendProduceReply(nil, &reply))
}

// duplicateOf returns the header of the stored batch an idempotent batch
// repeats (same producer id, epoch and base sequence), if any.
func (p *fakePartition) duplicateOf(h protocol.BatchHeader) (protocol.BatchHeader, bool) {
	if h.ProducerID <= 0 {
		return protocol.BatchHeader{}, false
	}
	for _, batch := range p.batches {
		stored, err := protocol.ReadBatchHeader(batch)
		if err == nil && stored.ProducerID == h.ProducerID && stored.ProducerEpoch == h.ProducerEpoch && stored.BaseSequence == h.BaseSequence {
			return stored, true
		}
	}
	return protocol.BatchHeader{}, false
}

func (f *fakeCluster) handleFetch(broker uint64, m *nats.Msg) {
	request, err := protocol.DecodeFetchRequest(m.Data)
	if err != nil {
		f.t.Errorf("fetch request: %v", err)
		return
	}
	deadline := time.NewTimer(request.MaxWait)
	defer deadline.Stop()
	for sent := 1; ; {
		f.mu.Lock()
		p, apiErr := f.partitionLocked(broker, request.Topic, request.Partition)
		reply := protocol.FetchReply{Err: apiErr, NextOffset: request.Offset}
		if apiErr == nil {
			reply.HighWatermark = p.next
			if request.Offset > p.next {
				reply.Err = &protocol.Error{Code: protocol.CodeOffsetOutOfRange, Low: 0, High: p.next}
			}
			for _, batch := range p.batches {
				h, _ := protocol.ReadBatchHeader(batch)
				if h.LastOffset() >= request.Offset && len(reply.Batches) < int(request.MaxBytes) {
					reply.Batches = append(reply.Batches, batch...)
					reply.NextOffset = h.LastOffset() + 1
				}
			}
		}
		changed := f.changed
		f.mu.Unlock()
		if reply.Err != nil || len(reply.Batches) > 0 {
			_ = m.Respond(protocol.AppendFetchReply(nil, &reply))
			if !protocol.FetchStreamContinues(&reply, sent, request.MaxReplies) {
				return
			}
			// A stream, as the broker sends it: the next reply at once.
			sent++
			request.Offset = reply.NextOffset
			continue
		}
		select {
		case <-changed:
		case <-deadline.C:
			_ = m.Respond(protocol.AppendFetchReply(nil, &reply))
			return
		}
	}
}

func (f *fakeCluster) handleOffsets(broker uint64, m *nats.Msg) {
	request, err := protocol.DecodeListOffsetsRequest(m.Data)
	if err != nil {
		f.t.Errorf("list offsets request: %v", err)
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	p, apiErr := f.partitionLocked(broker, request.Topic, request.Partition)
	reply := protocol.ListOffsetsReply{Err: apiErr}
	if apiErr == nil {
		reply.HighWatermark = p.next
		switch request.Timestamp {
		case protocol.OffsetEarliest:
			reply.Offset = 0
		case protocol.OffsetLatest:
			reply.Offset = p.next
		default:
			reply.Offset = p.next
			for _, batch := range p.batches {
				h, _ := protocol.ReadBatchHeader(batch)
				if h.MaxTimestamp >= request.Timestamp {
					reply.Offset = h.BaseOffset
					break
				}
			}
		}
	}
	_ = m.Respond(protocol.AppendListOffsetsReply(nil, &reply))
}

// connectUnderPrefix connects a client using subject prefix to the fake's
// server, once the server has every subscription made so far (else "no
// responders"), with a 20 s context for the test; both end with the test.
func connectUnderPrefix(t *testing.T, fake *fakeCluster, prefix string, opts ...ClientOption) (context.Context, *Client) {
	t.Helper()
	if err := fake.conn.Flush(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	client, err := Connect(ctx, fake.url(), append([]ClientOption{WithSubjectPrefix(prefix)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Close() })
	return ctx, client
}

// newWarmProducer returns a producer through client that has sent one
// record, "warm", to topic orders (so the topic's metadata is loaded and
// its partitions have no batch in flight); it is closed with the test.
func newWarmProducer(t *testing.T, client *Client, opts ...ProducerOption) *Producer {
	t.Helper()
	producer, err := client.NewProducer(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = producer.Close(ctx)
	})
	if err := producer.ProduceSync(testContext(t), &Record{Topic: "orders", Value: []byte("warm")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	return producer
}

// newTestClient connects a client to the fake cluster with short timeouts.
func newTestClient(t *testing.T, f *fakeCluster, opts ...ClientOption) *Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	opts = append([]ClientOption{WithRetryBackoff(time.Millisecond, 10*time.Millisecond), WithUnknownTopicWait(100 * time.Millisecond)}, opts...)
	client, err := Connect(ctx, f.url(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Close() })
	return client
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func valuesOf(records []*Record) []string {
	out := make([]string, len(records))
	for i, r := range records {
		out[i] = string(r.Value)
	}
	return out
}

func numbered(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s-%d", prefix, i)
	}
	return out
}
