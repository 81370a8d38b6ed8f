package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/raftmq/raftmq/clients"
	"github.com/raftmq/raftmq/protocol"
)

// ConsumerFetch is raftmq's consumer kind: the SDK consumer, long-polling
// fetches that return raw batches from the partition leader's log.
const ConsumerFetch = "fetch"

// RaftmqConfig configures the raftmq target.
type RaftmqConfig struct {
	// URLs of an existing cluster's NATS system; empty starts an in-process
	// cluster of Workload.Brokers brokers in Dir.
	URLs []string
	// Dir holds the in-process brokers' data; it must be on the disk being
	// measured.
	Dir string
	// Workload supplies brokers, acks, fsync, linger, batch size and
	// compression.
	Workload Workload
	// Connect adds to every client connection (credentials, TLS for an
	// existing cluster).
	Connect []clients.ClientOption
	// KeepTopics leaves the topic of the last run on an existing cluster
	// when the target closes; by default Close deletes it (each run's
	// Prepare deletes the one before). An in-process cluster goes with
	// its topics.
	KeepTopics bool
	// Log receives a line when Close fails to delete a topic; nil
	// discards it.
	Log io.Writer
}

// RaftmqSpec is the TargetSpec of raftmq as cfg says; Start fills cfg.Dir.
func RaftmqSpec(cfg RaftmqConfig) TargetSpec {
	return TargetSpec{Name: "raftmq", Start: func(ctx context.Context, dir string) (Target, error) {
		cfg.Dir = dir
		return StartRaftmq(ctx, cfg)
	}}
}

// StartRaftmq starts an in-process raftmq cluster (or connects to
// cfg.URLs) and returns it as a Target.
func StartRaftmq(ctx context.Context, cfg RaftmqConfig) (Target, error) {
	w := cfg.Workload
	codec, err := parseCodec(w.Compression)
	if err != nil {
		return nil, err
	}
	acks, err := protocol.ParseAcks(w.Acks)
	if err != nil {
		return nil, err
	}
	t := &raftmqTarget{urls: strings.Join(cfg.URLs, ","), connect: cfg.Connect, codec: codec, acks: acks, fsync: w.Fsync,
		keepTopics: cfg.KeepTopics, log: cfg.Log, consumerClients: map[int]*clients.Client{}}
	if t.log == nil {
		t.log = io.Discard
	}
	if len(cfg.URLs) == 0 {
		cluster, err := startRaftmqCluster(ctx, cfg.Dir, w)
		if err != nil {
			return nil, err
		}
		t.cluster = cluster
		t.urls = strings.Join(cluster.urls(), ",")
	}
	if t.admin, err = clients.Connect(ctx, t.urls, t.connect...); err != nil {
		t.Close()
		return nil, fmt.Errorf("bench: connect to raftmq: %w", err)
	}
	return t, nil
}

func parseCodec(name string) (protocol.Codec, error) {
	switch name {
	case "none", "":
		return protocol.CodecNone, nil
	case "s2":
		return protocol.CodecS2, nil
	case "zstd":
		return protocol.CodecZstd, nil
	}
	return 0, fmt.Errorf("bench: compression %q, want none, s2 or zstd", name)
}

// raftmqCluster is a running set of brokers; see cluster_raftmq.go.
type raftmqCluster interface {
	urls() []string
	close() error
}

type raftmqTarget struct {
	cluster raftmqCluster
	urls    string
	connect []clients.ClientOption // RaftmqConfig.Connect
	codec   protocol.Codec
	acks    protocol.Acks
	fsync   string
	admin   *clients.Client
	// keepTopics and log are RaftmqConfig's.
	keepTopics bool
	log        io.Writer

	mu              sync.Mutex
	workload        Workload
	run             int
	topic           string
	consumerClients map[int]*clients.Client
}

func (t *raftmqTarget) Info() TargetInfo {
	info := TargetInfo{
		System:   "raftmq",
		Setting:  "acks=" + t.acks.String() + ",fsync=" + t.fsync,
		Settings: map[string]string{"acks": t.acks.String(), "fsync": t.fsync},
		Versions: map[string]string{},
	}
	switch {
	case t.acks == protocol.AcksLeader:
		info.Durability = "acked when the leader appended it, before fsync or replication (unsafe)"
	default:
		info.Durability = "acked after a majority of replicas fsynced it"
	}
	if t.cluster == nil {
		info.Durability += " [external cluster: acks as asked]"
	}
	return info
}

func (t *raftmqTarget) ConsumerKinds() []string { return []string{ConsumerFetch} }

func (t *raftmqTarget) Prepare(ctx context.Context, w Workload) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.topic != "" {
		if err := t.admin.DeleteTopic(ctx, t.topic); err != nil && !errors.Is(err, protocol.CodeUnknownTopic) {
			return fmt.Errorf("delete topic %s: %w", t.topic, err)
		}
	}
	t.run++
	t.workload = w
	t.topic = "raftmq-bench-" + strconv.FormatInt(time.Now().UnixNano(), 36) + "-" + strconv.Itoa(t.run)
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	for {
		_, err := t.admin.CreateTopic(ctx, t.topic, clients.WithPartitions(w.Partitions), clients.WithReplicas(w.Replicas))
		if err == nil {
			return t.awaitPreferredLeaders(ctx)
		}
		select {
		case <-time.After(100 * time.Millisecond):
		case <-ctx.Done():
			return fmt.Errorf("create topic %s: %w", t.topic, err)
		}
	}
}

func (t *raftmqTarget) NewProducer(ctx context.Context, id int, onAck AckFunc) (Producer, error) {
	return t.newProducer(ctx, onAck, nil)
}

// newProducerWithAcks implements batchAckTarget: the SDK reports each
// acknowledged batch in one callback (clients.WithBatchCallback), which
// reaches the harness's accounting in one call (producerState.onAcks).
func (t *raftmqTarget) newProducerWithAcks(ctx context.Context, id int, ps *producerState) (Producer, error) {
	return t.newProducer(ctx, ps.onAck, ps)
}

// newProducer returns a producer reporting to onAck per record, or to
// ps.onAcks per batch when ps is not nil.
func (t *raftmqTarget) newProducer(ctx context.Context, onAck AckFunc, ps *producerState) (Producer, error) {
	client, err := clients.Connect(ctx, t.urls, t.connect...)
	if err != nil {
		return nil, err
	}
	w := t.workload
	p := &raftmqProducer{ctx: ctx, client: client, topic: t.topic}
	opts := []clients.ProducerOption{
		clients.WithLinger(w.Linger),
		clients.WithCompression(t.codec),
		clients.WithAcks(t.acks),
		clients.WithPartitioner(clients.ManualPartitioner()),
		clients.WithMaxBufferedRecords(w.window()),
	}
	if w.BatchBytes > 0 {
		opts = append(opts, clients.WithBatchMaxBytes(w.BatchBytes))
	}
	if w.MaxInFlight > 0 {
		opts = append(opts, clients.WithMaxInFlight(w.MaxInFlight))
	}
	if ps != nil {
		p.base = ps.clock.base
		p.dated = true
		opts = append(opts, clients.WithBatchCallback(func(recs []*clients.Record, err error) {
			ps.onAcks(len(recs), func(i int) []byte { return recs[i].Value }, err)
			p.recycle(recs...)
		}))
	} else {
		p.done = func(rec *clients.Record, err error) {
			onAck(rec.Value, err)
			p.recycle(rec)
		}
	}
	producer, err := client.NewProducer(opts...)
	if err != nil {
		client.Close()
		return nil, err
	}
	p.producer = producer
	return p, nil
}

type raftmqProducer struct {
	ctx      context.Context
	client   *clients.Client
	producer *clients.Producer
	topic    string
	// done is the per-record callback; nil when the SDK reports batches
	// (WithBatchCallback).
	done clients.ProduceCallback
	// base is the harness clock's base when dated: sendAt dates each
	// record with the harness's reading instead of the SDK's own.
	base  time.Time
	dated bool
	// The SDK records are recycled (an allocation per record is a visible
	// cost at a million records a second): completed records return to
	// free under mu, and the sending goroutine takes them all at once
	// into spare, so the lock is taken per batch of records, not per
	// record (a sync.Pool's Get and Put cost 2-3% of a 100 B publish's
	// CPU). The records in both never exceed the window.
	spare []*clients.Record // sending goroutine only
	mu    sync.Mutex
	free  []*clients.Record
}

func (p *raftmqProducer) Send(partition int, payload []byte) error {
	return p.send(partition, payload, time.Time{})
}

// sendAt implements clockedProducer.
func (p *raftmqProducer) sendAt(partition int, payload []byte, now int64) error {
	var timestamp time.Time
	if p.dated {
		timestamp = p.base.Add(time.Duration(now))
	}
	return p.send(partition, payload, timestamp)
}

// send produces payload with timestamp (zero: the SDK dates it).
func (p *raftmqProducer) send(partition int, payload []byte, timestamp time.Time) error {
	if len(p.spare) == 0 {
		p.mu.Lock()
		p.spare, p.free = p.free, p.spare
		p.mu.Unlock()
	}
	var rec *clients.Record
	if n := len(p.spare); n > 0 {
		rec = p.spare[n-1]
		p.spare = p.spare[:n-1]
	} else {
		rec = new(clients.Record)
	}
	*rec = clients.Record{Topic: p.topic, Partition: uint32(partition), Value: payload, Timestamp: timestamp}
	p.producer.Produce(p.ctx, rec, p.done)
	return nil
}

// recycle takes back records whose callback ran: the SDK keeps no
// reference to them. They keep their old payloads until reused, which
// nothing reads.
func (p *raftmqProducer) recycle(recs ...*clients.Record) {
	p.mu.Lock()
	p.free = append(p.free, recs...)
	p.mu.Unlock()
}

func (p *raftmqProducer) Flush(ctx context.Context) error { return p.producer.Flush(ctx) }

func (p *raftmqProducer) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return errors.Join(p.producer.Close(ctx), p.client.Close())
}

func (t *raftmqTarget) consumerClient(ctx context.Context, consumer int) (*clients.Client, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if client := t.consumerClients[consumer]; client != nil {
		return client, nil
	}
	client, err := clients.Connect(ctx, t.urls, t.connect...)
	if err != nil {
		return nil, err
	}
	t.consumerClients[consumer] = client
	return client, nil
}

func (t *raftmqTarget) NewReader(ctx context.Context, kind string, consumer, partition int) (Reader, error) {
	if kind != ConsumerFetch {
		return nil, fmt.Errorf("bench: raftmq has no consumer kind %q", kind)
	}
	client, err := t.consumerClient(ctx, consumer)
	if err != nil {
		return nil, err
	}
	c, err := client.NewConsumer(clients.WithFetchMaxWait(100 * time.Millisecond))
	if err != nil {
		return nil, err
	}
	t.mu.Lock()
	topic := t.topic
	t.mu.Unlock()
	if err := c.Assign(ctx, topic, clients.Earliest(), uint32(partition)); err != nil {
		c.Close()
		return nil, err
	}
	return &raftmqReader{consumer: c}, nil
}

type raftmqReader struct{ consumer *clients.Consumer }

func (r *raftmqReader) Read(ctx context.Context, fn func([]byte) bool) error {
	// PollEach lends each record without allocating or copying it; fn
	// does not keep the payload.
	for stopped := false; !stopped; {
		_, err := r.consumer.PollEach(ctx, func(rec *clients.Record) bool {
			stopped = !fn(rec.Value)
			return !stopped
		})
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func (r *raftmqReader) Close() error { return r.consumer.Close() }

func (t *raftmqTarget) Close() error {
	var errs []error
	t.mu.Lock()
	for _, client := range t.consumerClients {
		errs = append(errs, client.Close())
	}
	t.consumerClients = map[int]*clients.Client{}
	topic := t.topic
	t.mu.Unlock()
	if t.admin != nil {
		if topic != "" && t.cluster == nil && !t.keepTopics {
			t.deleteTopic(topic)
		}
		errs = append(errs, t.admin.Close())
	}
	if t.cluster != nil {
		errs = append(errs, t.cluster.close())
	}
	return errors.Join(errs...)
}

// deleteTopic deletes the last run's topic from an existing cluster, best
// effort: a failure is logged, not returned, as the figures stand.
func (t *raftmqTarget) deleteTopic(topic string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := t.admin.DeleteTopic(ctx, topic); err != nil && !errors.Is(err, protocol.CodeUnknownTopic) {
		fmt.Fprintf(t.log, "raftmq bench: could not delete topic %s (delete it with: raftmq topic delete %s): %v\n", topic, topic, err)
	}
}

// awaitPreferredLeaders waits until every partition of the new topic is led
// by its preferred leader (its first replica). The preferred replica
// campaigns first, so it usually wins the first election at once; when it
// does not (it started its replica late), the brokers hand leadership to
// the preferred one a few status intervals later, and that transfer, in the
// middle of a run, refuses produce requests for up to an election timeout
// (measured: p99 over one second on a 10-second run). Waiting here keeps
// the transfer out of the figures. A cluster that does not settle in time
// (a preferred replica down) runs anyway.
func (t *raftmqTarget) awaitPreferredLeaders(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, preferredLeaderWait)
	defer cancel()
	settled := 0 // consecutive polls that found every preferred leader leading
	for {
		info, err := t.admin.DescribeTopic(ctx, t.topic)
		if err == nil && preferredLeadersLead(info) {
			if settled++; settled == 2 {
				return nil
			}
		} else {
			settled = 0
		}
		select {
		case <-time.After(100 * time.Millisecond):
		case <-ctx.Done():
			return nil
		}
	}
}

// preferredLeaderWait bounds awaitPreferredLeaders: the brokers check for
// misplaced leaders every five status intervals (five seconds by default).
const preferredLeaderWait = 15 * time.Second

// preferredLeadersLead reports whether every partition has a leader and it
// is the partition's first replica.
func preferredLeadersLead(info clients.TopicInfo) bool {
	if len(info.Partitions) == 0 {
		return false
	}
	for _, p := range info.Partitions {
		if len(p.Replicas) == 0 || p.Leader != p.Replicas[0] {
			return false
		}
	}
	return true
}
