package broker

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/raftmq/raftmq/protocol"
	"github.com/raftmq/raftmq/raft"
)

// fastTimings makes elections and status reports quick for tests.
func fastTimings(c *Config) {
	c.ElectionTimeout = 300 * time.Millisecond
	c.HeartbeatInterval = 50 * time.Millisecond
	c.StatusInterval = 100 * time.Millisecond
	c.ShutdownTimeout = 3 * time.Second
	c.ProduceTimeout = 3 * time.Second
	c.MaxBatchBytes = 64 << 10
	c.MaxRecordBytes = 16 << 10
}

func startTestCluster(t *testing.T, nodes int) (*DevCluster, *testClient) {
	t.Helper()
	return startTestClusterWith(t, nodes, fastTimings)
}

// startTestClusterWith is startTestCluster with configure adjusting each
// broker's Config instead of fastTimings alone.
func startTestClusterWith(t *testing.T, nodes int, configure func(*Config)) (*DevCluster, *testClient) {
	t.Helper()
	return startTestClusterWithDev(t, nodes, DevConfig{}, configure)
}

// startTestClusterWithDev is startTestClusterWith with dev's other
// settings (MaxPayload, say) taken from dev; an empty dev.DataDir is a
// new temporary directory.
func startTestClusterWithDev(t *testing.T, nodes int, dev DevConfig, configure func(*Config)) (*DevCluster, *testClient) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if dev.DataDir == "" {
		dev.DataDir = t.TempDir()
	}
	dev.Nodes, dev.ClientListen = nodes, "127.0.0.1:0"
	dev.Registerer, dev.Configure = prometheus.NewRegistry(), configure
	cluster, err := StartDev(ctx, dev)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := cluster.Close(ctx); err != nil {
			t.Errorf("close cluster: %v", err)
		}
	})
	nc, err := nats.Connect(joinURLs(cluster.ClientURLs()), nats.MaxReconnects(-1), nats.ReconnectWait(20*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return cluster, &testClient{t: t, nc: nc, prefix: protocol.DefaultSubjectPrefix}
}

// startLeadingTopic starts a one-broker cluster, configure adjusting its
// Config as in startTestClusterWith, creates topic with one partition and
// one replica, and waits (until ctx ends) for the broker's replica of it
// to lead.
func startLeadingTopic(ctx context.Context, t *testing.T, topic string, configure func(*Config)) (*DevCluster, *testClient, *partitionReplica) {
	t.Helper()
	cluster, client := startTestClusterWith(t, 1, configure)
	client.createTopic(topic, 1, 1)
	r := replicaOf(t, cluster, 1, topic)
	waitFor(ctx, t, "the replica to lead", func() bool { return r.group.Status().Role == raft.RoleLeader })
	return cluster, client, r
}

func joinURLs(urls []string) string {
	out := ""
	for i, u := range urls {
		if i > 0 {
			out += ","
		}
		out += u
	}
	return out
}

// testClient is a minimal client of the broker API (the SDK lives in
// clients/; this keeps the broker's tests independent of it).
type testClient struct {
	t      *testing.T
	nc     *nats.Conn
	prefix string
}

func (c *testClient) admin(op string, req, reply any) {
	c.t.Helper()
	data, _ := json.Marshal(req)
	msg, err := c.nc.Request(protocol.SubjectAdmin(c.prefix, op), data, 20*time.Second)
	if err != nil {
		c.t.Fatalf("admin %s: %v", op, err)
	}
	if err := json.Unmarshal(msg.Data, reply); err != nil {
		c.t.Fatalf("admin %s reply %s: %v", op, msg.Data, err)
	}
}

// createTopic creates a topic, trying again (for up to 30 s) while the
// controller has no leader, as on a loaded machine after an election:
// not_leader and not_ready mean the create was not applied.
func (c *testClient) createTopic(name string, partitions, replicas int) protocol.TopicInfo {
	c.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for attempt := 0; ; attempt++ {
		var reply protocol.TopicReply
		c.admin(protocol.AdminCreateTopic, protocol.CreateTopicRequest{Version: 1, Name: name, Partitions: partitions, Replicas: replicas}, &reply)
		switch {
		case reply.Error == nil:
			return *reply.Topic
		case (reply.Error.Code == protocol.CodeNotLeader || reply.Error.Code == protocol.CodeNotReady) && time.Now().Before(deadline):
			time.Sleep(min(time.Duration(attempt+1)*50*time.Millisecond, time.Second))
		default:
			c.t.Fatalf("create topic %s: %v", name, reply.Error)
		}
	}
}

func (c *testClient) request(subject string, data []byte) ([]byte, error) {
	msg, err := c.nc.Request(subject, data, 10*time.Second)
	if err != nil {
		return nil, err
	}
	return msg.Data, nil
}

// produceTo sends one produce request to one broker.
func (c *testClient) produceTo(broker uint64, req *protocol.ProduceRequest) (protocol.ProduceReply, error) {
	data, err := c.request(protocol.SubjectBrokerProduce(c.prefix, broker), protocol.AppendProduceRequest(nil, req))
	if err != nil {
		return protocol.ProduceReply{}, err
	}
	return protocol.DecodeProduceReply(data)
}

func (c *testClient) fetchFrom(broker uint64, req *protocol.FetchRequest) (protocol.FetchReply, error) {
	data, err := c.request(protocol.SubjectBrokerFetch(c.prefix, broker), protocol.AppendFetchRequest(nil, req))
	if err != nil {
		return protocol.FetchReply{}, err
	}
	return protocol.DecodeFetchReply(data)
}

func (c *testClient) offsetsFrom(broker uint64, req *protocol.ListOffsetsRequest) protocol.ListOffsetsReply {
	c.t.Helper()
	data, err := c.request(protocol.SubjectBrokerOffsets(c.prefix, broker), protocol.AppendListOffsetsRequest(nil, req))
	if err != nil {
		c.t.Fatal(err)
	}
	reply, err := protocol.DecodeListOffsetsReply(data)
	if err != nil {
		c.t.Fatal(err)
	}
	return reply
}

// leaderClient follows not-leader answers the way the SDK does.
type leaderClient struct {
	*testClient
	leader uint64
	nodes  int
	acks   protocol.Acks
}

// produce sends until acknowledged or a non-retriable error, up to ctx.
func (c *leaderClient) produce(ctx context.Context, topic string, partition uint32, batch []byte) (uint64, error) {
	for attempt := 0; ; attempt++ {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		req := protocol.ProduceRequest{Topic: topic, Partition: partition, Acks: c.acks, Batch: append([]byte(nil), batch...), Timeout: 2 * time.Second}
		reply, err := c.produceTo(c.leader, &req)
		switch {
		case err != nil:
			// Broker down or slow: try the next one.
			c.leader = c.leader%uint64(c.nodes) + 1
		case reply.Err == nil:
			return reply.BaseOffset, nil
		case !reply.Err.Retriable():
			return 0, reply.Err
		case reply.Err.Code == protocol.CodeNotLeader && reply.Err.Leader != 0:
			c.leader = reply.Err.Leader
		default:
			c.leader = c.leader%uint64(c.nodes) + 1
			waitBackoff(ctx, attempt)
		}
	}
}

func (c *leaderClient) fetch(ctx context.Context, req protocol.FetchRequest) (protocol.FetchReply, error) {
	for attempt := 0; ; attempt++ {
		if err := ctx.Err(); err != nil {
			return protocol.FetchReply{}, err
		}
		reply, err := c.fetchFrom(c.leader, &req)
		switch {
		case err != nil:
			c.leader = c.leader%uint64(c.nodes) + 1
		case reply.Err == nil:
			return reply, nil
		case !reply.Err.Retriable():
			return reply, reply.Err
		case reply.Err.Code == protocol.CodeNotLeader && reply.Err.Leader != 0:
			c.leader = reply.Err.Leader
		default:
			c.leader = c.leader%uint64(c.nodes) + 1
			waitBackoff(ctx, attempt)
		}
	}
}

func buildBatch(t testing.TB, values ...string) []byte {
	t.Helper()
	var builder protocol.BatchBuilder
	for i, v := range values {
		if err := builder.Add(protocol.Record{Timestamp: int64(1000 + i), Value: []byte(v)}); err != nil {
			t.Fatal(err)
		}
	}
	batch, err := builder.Build(protocol.CodecNone)
	if err != nil {
		t.Fatal(err)
	}
	return append([]byte(nil), batch...)
}

type fetchedRecord struct {
	offset uint64
	value  string
}

func decodeFetched(t testing.TB, batches []byte) []fetchedRecord {
	t.Helper()
	var out []fetchedRecord
	err := protocol.SplitBatches(batches, func(batch []byte, h protocol.BatchHeader) error {
		return protocol.DecodeRecords(batch, func(r protocol.Record) error {
			out = append(out, fetchedRecord{r.Offset, string(r.Value)})
			return nil
		})
	})
	if err != nil {
		t.Fatalf("decode fetched batches: %v", err)
	}
	return out
}

// readAll fetches a partition from offset 0 up to its high watermark.
func (c *leaderClient) readAll(ctx context.Context, t *testing.T, topic string, partition uint32) []fetchedRecord {
	t.Helper()
	var out []fetchedRecord
	offset := uint64(0)
	for {
		reply, err := c.fetch(ctx, protocol.FetchRequest{Topic: topic, Partition: partition, Offset: offset, MaxBytes: 4096})
		if err != nil {
			t.Fatalf("fetch %s/%d at %d: %v", topic, partition, offset, err)
		}
		for _, r := range decodeFetched(t, reply.Batches) {
			if r.offset >= offset {
				out = append(out, r)
			}
		}
		if reply.NextOffset >= reply.HighWatermark {
			return out
		}
		if reply.NextOffset <= offset {
			t.Fatalf("fetch at %d made no progress (hw %d)", offset, reply.HighWatermark)
		}
		offset = reply.NextOffset
	}
}

func TestProduceAndFetchInOrderAcrossPartitions(t *testing.T) {
	_, client := startTestCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	topic := client.createTopic("orders", 3, 3)
	if len(topic.Partitions) != 3 {
		t.Fatalf("topic has %d partitions", len(topic.Partitions))
	}
	leaders := map[uint64]bool{}
	for _, p := range topic.Partitions {
		if len(p.Replicas) != 3 {
			t.Fatalf("partition %d replicas %v", p.Partition, p.Replicas)
		}
		leaders[p.Replicas[0]] = true
	}
	if len(leaders) != 3 {
		t.Fatalf("preferred leaders not spread: %+v", topic.Partitions)
	}
	// Elections pick leaders at random; rebalancing hands each partition to
	// its preferred leader, so leadership ends up spread over all brokers.
	for attempt := 0; ; attempt++ {
		var described protocol.TopicReply
		client.admin(protocol.AdminDescribeTopic, protocol.TopicRequest{Name: "orders"}, &described)
		actual := map[uint64]bool{}
		for _, p := range described.Topic.Partitions {
			actual[p.Leader] = true
		}
		if len(actual) == 3 && !actual[0] {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("leaders never spread: %+v", described.Topic.Partitions)
		}
		waitBackoff(ctx, attempt)
	}
	// acks=applied: the leader's high watermark covers a batch once it is
	// acknowledged, so the reads below see everything at once.
	producer := &leaderClient{testClient: client, leader: 1, nodes: 3, acks: protocol.AcksApplied}
	const batches, perBatch = 10, 4
	for p := uint32(0); p < 3; p++ {
		for i := 0; i < batches; i++ {
			values := make([]string, perBatch)
			for j := range values {
				values[j] = fmt.Sprintf("p%d-%d", p, i*perBatch+j)
			}
			base, err := producer.produce(ctx, "orders", p, buildBatch(t, values...))
			if err != nil {
				t.Fatalf("produce: %v", err)
			}
			if base != uint64(i*perBatch) {
				t.Fatalf("partition %d batch %d got base offset %d, want %d", p, i, base, i*perBatch)
			}
		}
	}
	for p := uint32(0); p < 3; p++ {
		records := producer.readAll(ctx, t, "orders", p)
		if len(records) != batches*perBatch {
			t.Fatalf("partition %d: fetched %d records", p, len(records))
		}
		for i, r := range records {
			if r.offset != uint64(i) || r.value != fmt.Sprintf("p%d-%d", p, i) {
				t.Fatalf("partition %d record %d: %+v", p, i, r)
			}
		}
		latest := client.offsetsFrom(producer.leader, &protocol.ListOffsetsRequest{Topic: "orders", Partition: p, Timestamp: protocol.OffsetLatest})
		if latest.Err != nil && latest.Err.Code == protocol.CodeNotLeader {
			latest = client.offsetsFrom(latest.Err.Leader, &protocol.ListOffsetsRequest{Topic: "orders", Partition: p, Timestamp: protocol.OffsetLatest})
		}
		if latest.Err != nil || latest.Offset != batches*perBatch {
			t.Fatalf("latest offset of %d: %+v", p, latest)
		}
	}

	// The plain publish subject works with any NATS client.
	msg, err := client.nc.Request(protocol.SubjectProduce(client.prefix, "orders"), []byte("plain"), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var published protocol.PublishReply
	if err := json.Unmarshal(msg.Data, &published); err != nil || published.Error != nil {
		t.Fatalf("publish reply %s: %v", msg.Data, err)
	}
	if published.Offset != batches*perBatch {
		t.Fatalf("plain publish got offset %d, want %d", published.Offset, batches*perBatch)
	}
	reply, err := producer.fetch(ctx, protocol.FetchRequest{Topic: "orders", Partition: published.Partition, Offset: published.Offset})
	if err != nil {
		t.Fatal(err)
	}
	if got := decodeFetched(t, reply.Batches); len(got) != 1 || got[0].value != "plain" {
		t.Fatalf("published record fetched as %+v", got)
	}
}

func TestFetchLongPollWakesOnCommit(t *testing.T) {
	_, client := startTestCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	client.createTopic("events", 1, 3)
	producer := &leaderClient{testClient: client, leader: 1, nodes: 3, acks: protocol.AcksApplied}
	if _, err := producer.produce(ctx, "events", 0, buildBatch(t, "first")); err != nil {
		t.Fatal(err)
	}
	// Find the leader with an immediate fetch at the high watermark.
	reply, err := producer.fetch(ctx, protocol.FetchRequest{Topic: "events", Offset: 1})
	if err != nil || len(reply.Batches) != 0 || reply.HighWatermark != 1 {
		t.Fatalf("fetch at the high watermark: %+v %v", reply, err)
	}
	type result struct {
		reply   protocol.FetchReply
		err     error
		elapsed time.Duration
	}
	done := make(chan result, 1)
	const maxWait = 20 * time.Second
	leader := producer.leader
	go func() {
		start := time.Now()
		r, err := client.fetchFrom(leader, &protocol.FetchRequest{Topic: "events", Offset: 1, MaxWait: maxWait})
		// Leadership can move to the preferred replica after the topic is
		// created (or on a loaded machine): follow it.
		for err == nil && r.Err != nil && r.Err.Code == protocol.CodeNotLeader && r.Err.Leader != 0 && time.Since(start) < maxWait {
			r, err = client.fetchFrom(r.Err.Leader, &protocol.FetchRequest{Topic: "events", Offset: 1, MaxWait: maxWait})
		}
		done <- result{r, err, time.Since(start)}
	}()
	// The long poll must not answer before there is data.
	select {
	case r := <-done:
		t.Fatalf("long poll answered early with %+v", r)
	case <-time.After(200 * time.Millisecond):
	}
	if _, err := producer.produce(ctx, "events", 0, buildBatch(t, "second")); err != nil {
		t.Fatal(err)
	}
	r := <-done
	if r.err != nil || r.reply.Err != nil {
		t.Fatalf("long poll: %v %v", r.err, r.reply.Err)
	}
	if got := decodeFetched(t, r.reply.Batches); len(got) != 1 || got[0].value != "second" || got[0].offset != 1 {
		t.Fatalf("long poll returned %+v", got)
	}
	if r.elapsed >= maxWait {
		t.Fatalf("long poll waited the full %v instead of waking on commit", r.elapsed)
	}
}

func TestBadInputGetsClearErrors(t *testing.T) {
	cluster, client := startTestCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	client.createTopic("t", 2, 3)
	producer := &leaderClient{testClient: client, leader: 1, nodes: 3, acks: protocol.AcksApplied}
	if _, err := producer.produce(ctx, "t", 0, buildBatch(t, "ok")); err != nil {
		t.Fatal(err)
	}
	leader := producer.leader
	follower := leader%3 + 1

	expect := func(name string, e *protocol.Error, code protocol.ErrorCode) *protocol.Error {
		t.Helper()
		if e == nil || e.Code != code {
			t.Fatalf("%s: got %v, want %v", name, e, code)
		}
		return e
	}
	// Requests go to the partition's leader; on a loaded machine (the race
	// detector) leadership can move during the test, so a not_leader or
	// not_ready answer is followed. Every check below fails before
	// anything is appended, so a retry appends nothing either.
	send := func(req protocol.ProduceRequest) *protocol.Error {
		t.Helper()
		for attempt := 0; ; attempt++ {
			reply, err := client.produceTo(leader, &req)
			if err != nil {
				t.Fatal(err)
			}
			e := reply.Err
			if e == nil || (e.Code != protocol.CodeNotLeader && e.Code != protocol.CodeNotReady) || ctx.Err() != nil {
				return e
			}
			if e.Code == protocol.CodeNotLeader && e.Leader != 0 {
				leader = e.Leader
			}
			waitBackoff(ctx, attempt)
		}
	}
	good := buildBatch(t, "x")
	expect("unknown topic", send(protocol.ProduceRequest{Topic: "nope", Batch: good}), protocol.CodeUnknownTopic)
	expect("bad partition", send(protocol.ProduceRequest{Topic: "t", Partition: 9, Batch: good}), protocol.CodeBadPartition)
	corrupt := append([]byte(nil), good...)
	corrupt[len(corrupt)-1] ^= 0xff
	expect("corrupt batch", send(protocol.ProduceRequest{Topic: "t", Batch: corrupt}), protocol.CodeCorruptBatch)
	bigRecord := string(bytes.Repeat([]byte("z"), 20<<10))
	e := expect("record too large", send(protocol.ProduceRequest{Topic: "t", Batch: buildBatch(t, bigRecord)}), protocol.CodeRecordTooLarge)
	if e.Limit != 16<<10 {
		t.Fatalf("record too large names limit %d", e.Limit)
	}
	fine := string(bytes.Repeat([]byte("y"), 15<<10))
	e = expect("batch too large", send(protocol.ProduceRequest{Topic: "t", Batch: buildBatch(t, fine, fine, fine, fine, fine)}), protocol.CodeBatchTooLarge)
	if e.Limit != 64<<10 {
		t.Fatalf("batch too large names limit %d", e.Limit)
	}

	// A follower names the leader. The probe carries a corrupt batch, so
	// it appends nothing should the follower have become the leader (it
	// then answers corrupt_batch, and the test asks the next follower).
	for attempt := 0; ; attempt++ {
		follower = leader%3 + 1
		reply, err := client.produceTo(follower, &protocol.ProduceRequest{Topic: "t", Batch: corrupt})
		if err != nil {
			t.Fatal(err)
		}
		e := reply.Err
		if e != nil && e.Code == protocol.CodeNotLeader && e.Leader == leader {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("not-leader reply of broker %d: %v; leader is %d", follower, e, leader)
		}
		if e != nil && e.Code == protocol.CodeNotLeader && e.Leader != 0 {
			leader = e.Leader // moved: ask a follower of the new leader
		} else if e != nil && e.Code == protocol.CodeCorruptBatch {
			leader = follower
		}
		waitBackoff(ctx, attempt)
	}

	// An unknown API version is refused, not misread.
	raw := protocol.AppendFetchRequest(nil, &protocol.FetchRequest{Topic: "t"})
	raw[0] = 99
	data, err := client.request(protocol.SubjectBrokerFetch(client.prefix, leader), raw)
	if err != nil {
		t.Fatal(err)
	}
	reply, err := protocol.DecodeFetchReply(data)
	if err != nil {
		t.Fatal(err)
	}
	expect("unsupported version", reply.Err, protocol.CodeUnsupportedVersion)

	oor, err := client.fetchFrom(leader, &protocol.FetchRequest{Topic: "t", Offset: 50})
	for attempt := 0; err == nil && oor.Err != nil && oor.Err.Code == protocol.CodeNotLeader && oor.Err.Leader != 0 && ctx.Err() == nil; attempt++ {
		leader = oor.Err.Leader
		waitBackoff(ctx, attempt)
		oor, err = client.fetchFrom(leader, &protocol.FetchRequest{Topic: "t", Offset: 50})
	}
	if err != nil {
		t.Fatal(err)
	}
	if e := expect("offset out of range", oor.Err, protocol.CodeOffsetOutOfRange); e.Low != 0 || e.High != 1 {
		t.Fatalf("out of range names [%d, %d], want [0, 1]", e.Low, e.High)
	}

	var exists protocol.TopicReply
	client.admin(protocol.AdminCreateTopic, protocol.CreateTopicRequest{Name: "t", Partitions: 1}, &exists)
	expect("topic exists", exists.Error, protocol.CodeTopicExists)
	var badName protocol.TopicReply
	client.admin(protocol.AdminCreateTopic, protocol.CreateTopicRequest{Name: "bad name"}, &badName)
	expect("bad topic name", badName.Error, protocol.CodeInvalidArgument)
	var tooMany protocol.TopicReply
	client.admin(protocol.AdminCreateTopic, protocol.CreateTopicRequest{Name: "u", Replicas: 5}, &tooMany)
	expect("replicas over brokers", tooMany.Error, protocol.CodeInvalidArgument)
	var badRetention protocol.TopicReply
	client.admin(protocol.AdminCreateTopic, protocol.CreateTopicRequest{Name: "r", RetentionMs: -5}, &badRetention)
	expect("retention below -1", badRetention.Error, protocol.CodeInvalidArgument)

	var published protocol.PublishReply
	msg, err := client.nc.Request(protocol.SubjectProduce(client.prefix, "missing"), []byte("v"), 10*time.Second)
	if err != nil || json.Unmarshal(msg.Data, &published) != nil {
		t.Fatalf("publish to missing topic: %v", err)
	}
	expect("publish unknown topic", published.Error, protocol.CodeUnknownTopic)

	// Nothing above was appended: the partition still holds one record.
	records := producer.readAll(ctx, t, "t", 0)
	if len(records) != 1 || records[0].value != "ok" {
		t.Fatalf("partition holds %+v after rejected requests", records)
	}

	// A second broker on a running broker's data directory is refused.
	cfg := cluster.configs[1]
	cfg.NATS = NATSConfig{Connect: cfg.NATS.Connect}
	if _, err := Start(ctx, cfg); !errors.Is(err, ErrDataDirLocked) {
		t.Fatalf("second broker on the same data directory: %v", err)
	}
}

func TestConfigValidate(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatalf("default config invalid: %v", err)
	}
	cases := map[string]func(*Config){
		"zero id":            func(c *Config) { c.ID = 0 },
		"no data dir":        func(c *Config) { c.DataDir = "" },
		"no bootstrap":       func(c *Config) { c.Bootstrap = nil },
		"repeated bootstrap": func(c *Config) { c.Bootstrap = []uint64{1, 1} },
		"tiny batch":         func(c *Config) { c.MaxBatchBytes = 10 },
		"election too short": func(c *Config) { c.ElectionTimeout = c.HeartbeatInterval },
		"bad cluster name":   func(c *Config) { c.ClusterName = "a b" },
		"negative backoff":   func(c *Config) { c.ReplicaRestartBackoff = -time.Second },
	}
	for name, mutate := range cases {
		cfg := DefaultConfig()
		mutate(&cfg)
		if err := cfg.Validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// TestLeaderFailoverLosesNoAcknowledgedRecord stops the partition leader's
// broker while a producer keeps producing, then restarts it. Every
// acknowledged record must be in the final log at its acknowledged offset,
// offsets must be dense, and everything a concurrent consumer was served
// must match the final log (a record served before commit could later be
// replaced by another at the same offset).
func TestLeaderFailoverLosesNoAcknowledgedRecord(t *testing.T) {
	cluster, client := startTestCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	topic := client.createTopic("ledger", 1, 3)
	if topic.Partitions[0].Leader == 0 {
		t.Fatal("topic create returned before a leader was elected")
	}

	type ack struct {
		value  string
		offset uint64
	}
	var acked []ack
	progress := make(chan int, 1024)
	stopProducing := make(chan struct{})
	producerDone := make(chan error, 1)
	go func() {
		producer := &leaderClient{testClient: client, leader: 1, nodes: 3}
		for i := 0; ; i++ {
			select {
			case <-stopProducing:
				producerDone <- nil
				return
			default:
			}
			value := fmt.Sprintf("r%d", i)
			offset, err := producer.produce(ctx, "ledger", 0, buildBatch(t, value))
			if err != nil {
				producerDone <- err
				return
			}
			acked = append(acked, ack{value, offset})
			progress <- len(acked)
		}
	}()
	waitAcks := func(n int) {
		t.Helper()
		for {
			select {
			case got := <-progress:
				if got >= n {
					return
				}
			case err := <-producerDone:
				t.Fatalf("producer stopped: %v", err)
			case <-ctx.Done():
				t.Fatalf("waiting for %d acknowledgements: %v", n, ctx.Err())
			}
		}
	}

	served := map[uint64]string{}
	stopConsuming := make(chan struct{})
	consumerDone := make(chan error, 1)
	go func() {
		consumer := &leaderClient{testClient: client, leader: 2, nodes: 3}
		offset := uint64(0)
		for {
			select {
			case <-stopConsuming:
				consumerDone <- nil
				return
			default:
			}
			reply, err := consumer.fetch(ctx, protocol.FetchRequest{Topic: "ledger", Offset: offset, MaxWait: 100 * time.Millisecond})
			if err != nil {
				consumerDone <- err
				return
			}
			var records []fetchedRecord
			err = protocol.SplitBatches(reply.Batches, func(batch []byte, _ protocol.BatchHeader) error {
				return protocol.DecodeRecords(batch, func(r protocol.Record) error {
					records = append(records, fetchedRecord{r.Offset, string(r.Value)})
					return nil
				})
			})
			if err != nil {
				consumerDone <- err
				return
			}
			for _, r := range records {
				served[r.offset] = r.value
			}
			if len(reply.Batches) > 0 {
				offset = reply.NextOffset
			}
		}
	}()

	waitAcks(30)
	leader := currentLeader(t, client, "ledger")
	if err := cluster.StopBroker(ctx, leader); err != nil {
		t.Fatalf("stop leader %d: %v", leader, err)
	}
	waitAcks(60)
	if err := cluster.StartBroker(ctx, leader); err != nil {
		t.Fatalf("restart broker %d: %v", leader, err)
	}
	waitAcks(90)
	// And once more, with the restarted broker back in the cluster.
	second := currentLeader(t, client, "ledger")
	if err := cluster.StopBroker(ctx, second); err != nil {
		t.Fatalf("stop leader %d: %v", second, err)
	}
	waitAcks(120)
	if err := cluster.StartBroker(ctx, second); err != nil {
		t.Fatalf("restart broker %d: %v", second, err)
	}
	close(stopProducing)
	if err := <-producerDone; err != nil {
		t.Fatalf("producer: %v", err)
	}
	close(stopConsuming)
	if err := <-consumerDone; err != nil {
		t.Fatalf("consumer: %v", err)
	}

	last := acked[len(acked)-1].offset
	reader := &leaderClient{testClient: client, leader: 1, nodes: 3}
	var final []fetchedRecord
	for {
		final = reader.readAll(ctx, t, "ledger", 0)
		if len(final) > 0 && final[len(final)-1].offset >= last {
			break
		}
		waitBackoff(ctx, 3)
	}
	for i, r := range final {
		if r.offset != uint64(i) {
			t.Fatalf("offsets not dense: record %d has offset %d", i, r.offset)
		}
	}
	for _, a := range acked {
		if a.offset >= uint64(len(final)) || final[a.offset].value != a.value {
			t.Fatalf("acknowledged %q at offset %d is lost or moved", a.value, a.offset)
		}
	}
	for offset, value := range served {
		if offset >= uint64(len(final)) || final[offset].value != value {
			t.Fatalf("consumer was served %q at offset %d, the committed log says otherwise", value, offset)
		}
	}
	if len(served) == 0 {
		t.Fatal("the consumer saw nothing")
	}
	t.Logf("%d acknowledged, %d in the log, %d served to the concurrent consumer", len(acked), len(final), len(served))
}

// currentLeader is the leader of the topic's partition 0 as the controller
// leader's status reports name it, waiting (up to 30 s) while none is known
// (an election under way).
func currentLeader(t *testing.T, client *testClient, topic string) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for attempt := 0; ; attempt++ {
		var reply protocol.TopicReply
		client.admin(protocol.AdminDescribeTopic, protocol.TopicRequest{Name: topic}, &reply)
		if reply.Error == nil && reply.Topic != nil && reply.Topic.Partitions[0].Leader != 0 {
			return reply.Topic.Partitions[0].Leader
		}
		if ctx.Err() != nil || reply.Error != nil && !reply.Error.Retriable() {
			t.Fatalf("describe %s: %+v", topic, reply)
		}
		waitBackoff(ctx, attempt)
	}
}

func TestFullRestartKeepsTopicsAndRecords(t *testing.T) {
	cluster, client := startTestCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	client.createTopic("durable", 2, 3)
	client.createTopic("doomed", 1, 2)
	producer := &leaderClient{testClient: client, leader: 1, nodes: 3, acks: protocol.AcksApplied}
	for i := 0; i < 10; i++ {
		if _, err := producer.produce(ctx, "durable", 1, buildBatch(t, fmt.Sprintf("v%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	var deleted protocol.DeleteTopicReply
	client.admin(protocol.AdminDeleteTopic, protocol.TopicRequest{Name: "doomed"}, &deleted)
	if deleted.Error != nil {
		t.Fatalf("delete topic: %v", deleted.Error)
	}
	for id := uint64(1); id <= 3; id++ {
		if err := cluster.StopBroker(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	for id := uint64(1); id <= 3; id++ {
		if err := cluster.StartBroker(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	if err := cluster.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	var list protocol.ListTopicsReply
	client.admin(protocol.AdminListTopics, protocol.MetadataRequest{}, &list)
	if len(list.Topics) != 1 || list.Topics[0].Name != "durable" {
		t.Fatalf("topics after restart: %+v", list.Topics)
	}
	offset, err := producer.produce(ctx, "durable", 1, buildBatch(t, "after"))
	if err != nil {
		t.Fatal(err)
	}
	if offset != 10 {
		t.Fatalf("first offset after restart %d, want 10", offset)
	}
	records := producer.readAll(ctx, t, "durable", 1)
	if len(records) != 11 || records[0].value != "v0" || records[10].value != "after" {
		t.Fatalf("records after restart: %+v", records)
	}
	for id := uint64(1); id <= 3; id++ {
		dir := cluster.Broker(id).replicaDir("doomed", 0)
		if _, err := os.Stat(dir); !os.IsNotExist(err) {
			t.Fatalf("deleted topic's replica directory %s still exists (%v)", dir, err)
		}
	}
	// Each broker is reported alive once the controller has heard from it
	// since the restart: wait for that (bounded), rather than assert it at
	// one instant (under GOMAXPROCS=8 on two cores broker 3's first
	// heartbeat came after the first look).
	var status protocol.MetadataReply
	allAlive := func() bool {
		status = protocol.MetadataReply{}
		client.admin(protocol.AdminClusterStatus, protocol.MetadataRequest{}, &status)
		if status.ControllerLeader == 0 || len(status.Brokers) != 3 {
			return false
		}
		for _, b := range status.Brokers {
			if !b.Alive {
				return false
			}
		}
		return true
	}
	for !allAlive() {
		select {
		case <-ctx.Done():
			t.Fatalf("not every broker reported alive after the restart: %+v", status)
		case <-time.After(50 * time.Millisecond):
		}
	}
}
