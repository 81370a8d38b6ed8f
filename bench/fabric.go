package bench

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/raftmq/raftmq/protocol"
	"github.com/raftmq/raftmq/transport"
)

// SystemFabric is the NATS fabric baseline: NATS alone carrying raftmq's
// record batches along the path a replicated publish takes, with no Raft
// and no storage. It is a ceiling for this machine, not a queue.
const SystemFabric = "nats-fabric"

// fabricSetting is the fabric's setting label: it stores nothing.
const fabricSetting = "no-storage"

// fabricSubject is the leader stand-in's produce subject prefix; the
// partition number follows.
const fabricSubject = "raftmq-bench.fabric.produce."

// FabricConfig configures the fabric baseline.
type FabricConfig struct {
	// Workload supplies the servers (Brokers), replicas, linger, batch size
	// and batches in flight.
	Workload Workload
}

// StartFabric starts Workload.Brokers embedded NATS servers routed into one
// cluster, as the in-process raftmq cluster does, and a node on each,
// connected in-process and talking through raftmq's peer transport. Node 1
// stands in for every partition's leader: it answers a produce request
// once Replicas/2 of nodes 2..Replicas (its followers) have acknowledged a
// copy of the request, so, with itself, a majority holds it in memory. The
// producers batch records with raftmq's batch encoding, linger and window
// and publish each batch as a request over TCP loopback, as the SDK does.
// So every record byte crosses the same sockets, servers and clients as in
// raftmq, and nothing else is done to it: no Raft, no disk, no fsync, no
// record offsets.
func StartFabric(ctx context.Context, cfg FabricConfig) (Target, error) {
	w := cfg.Workload
	t := &fabricTarget{workload: w}
	ok := false
	defer func() {
		if !ok {
			t.Close()
		}
	}()
	servers := max(w.Brokers, 1)
	for i := range servers {
		scfg := transport.EmbeddedConfig{
			ServerName:    fmt.Sprintf("raftmq-fabric-%d", i+1),
			ClientListen:  "127.0.0.1:0",
			ClusterListen: "127.0.0.1:0",
		}
		if i > 0 {
			scfg.Routes = []string{t.servers[0].ClusterURL()}
		}
		if servers == 1 {
			scfg.ClusterListen = ""
		}
		srv, err := transport.StartEmbedded(scfg)
		if err != nil {
			return nil, fmt.Errorf("bench: fabric NATS server %d: %w", i+1, err)
		}
		t.servers = append(t.servers, srv)
	}
	for _, srv := range t.servers {
		if err := srv.WaitForRoutes(ctx, servers-1); err != nil {
			return nil, fmt.Errorf("bench: fabric NATS cluster: %w", err)
		}
	}
	replicas := min(max(w.Replicas, 1), servers)
	for i := range replicas {
		nc, err := transport.Connect(transport.ConnectConfig{
			URLs: []string{t.servers[i].ClientURL()}, InProcess: t.servers[i],
			Name: fmt.Sprintf("fabric-node-%d", i+1),
		})
		if err != nil {
			return nil, fmt.Errorf("bench: fabric node %d: %w", i+1, err)
		}
		t.conns = append(t.conns, nc)
		node, err := transport.New(nc, transport.Config{NodeID: uint64(i + 1), ClusterName: "raftmq-fabric"})
		if err != nil {
			return nil, fmt.Errorf("bench: fabric node %d: %w", i+1, err)
		}
		t.nodes = append(t.nodes, node)
	}
	t.leader = newFabricLeader(t.conns[0], t.nodes[0], replicas)
	for _, node := range t.nodes[1:] {
		node.SetHandler(func(from uint64, frame []byte) {
			// A follower acknowledges with the request's sequence
			// number; pings come back whole.
			if len(frame) > 8 {
				frame = frame[:8]
			}
			_ = node.Send(from, frame)
		})
	}
	if err := t.leader.start(ctx); err != nil {
		return nil, err
	}
	ok = true
	return t, nil
}

type fabricTarget struct {
	workload Workload
	servers  []*transport.EmbeddedServer
	conns    []*nats.Conn
	nodes    []*transport.Transport
	leader   *fabricLeader
}

func (t *fabricTarget) Info() TargetInfo {
	return TargetInfo{
		System:     SystemFabric,
		Setting:    fabricSetting,
		Durability: "none: NATS alone carrying raftmq's batches to a majority's memory, no Raft, no disk (a ceiling for this machine, not a queue)",
		Settings:   map[string]string{"storage": "none", "replicas": strconv.Itoa(len(t.nodes))},
		Versions:   map[string]string{"nats-server": server.VERSION},
	}
}

// ConsumerKinds is empty: the fabric stores nothing to consume.
func (t *fabricTarget) ConsumerKinds() []string { return nil }

func (t *fabricTarget) Prepare(ctx context.Context, w Workload) error {
	if w.Kind != KindProduce {
		return fmt.Errorf("bench: %s measures publishing only, not %s", SystemFabric, w.Kind)
	}
	t.workload = w
	return nil
}

func (t *fabricTarget) NewProducer(ctx context.Context, id int, onAck AckFunc) (Producer, error) {
	nc, err := transport.Connect(transport.ConnectConfig{URLs: []string{t.servers[0].ClientURL()}, Name: fmt.Sprintf("fabric-producer-%d", id)})
	if err != nil {
		return nil, err
	}
	return newFabricProducer(nc, t.workload, onAck)
}

var (
	_ batchAckTarget  = (*fabricTarget)(nil)
	_ batchAckTarget  = (*diskTarget)(nil)
	_ clockedProducer = (*fabricProducer)(nil)
)

// newProducerWithAcks implements batchAckTarget: the fabric learns a
// batch's outcome at once, and reports it so.
func (t *fabricTarget) newProducerWithAcks(ctx context.Context, id int, ps *producerState) (Producer, error) {
	p, err := t.NewProducer(ctx, id, ps.onAck)
	return reportingBatches(p, err, ps)
}

// reportingBatches makes p, a batching producer just made (unless err),
// report to ps per batch (fabricProducer.withAcks).
func reportingBatches(p Producer, err error, ps *producerState) (Producer, error) {
	if err != nil {
		return nil, err
	}
	return p.(*fabricProducer).withAcks(ps), nil
}

func (t *fabricTarget) NewReader(context.Context, string, int, int) (Reader, error) {
	return nil, fmt.Errorf("bench: %s has nothing to consume", SystemFabric)
}

func (t *fabricTarget) Close() error {
	var errs []error
	if t.leader != nil {
		errs = append(errs, t.leader.close())
	}
	for _, node := range t.nodes {
		errs = append(errs, node.Close())
	}
	for _, nc := range t.conns {
		nc.Close()
	}
	for _, srv := range t.servers {
		srv.Shutdown()
	}
	return errors.Join(errs...)
}

// fabricLeader is node 1: it copies each produce request into a frame,
// sends it to every follower and replies once a majority (with itself) has
// it.
type fabricLeader struct {
	nc        *nats.Conn
	node      *transport.Transport
	followers int
	need      int // follower acknowledgements for a majority
	sub       *nats.Subscription
	pongs     chan uint64

	mu      sync.Mutex
	seq     uint64
	pending map[uint64]*fabricRequest
	frame   []byte
}

type fabricRequest struct {
	reply string
	acks  int
}

func newFabricLeader(nc *nats.Conn, node *transport.Transport, replicas int) *fabricLeader {
	return &fabricLeader{
		nc: nc, node: node, followers: replicas - 1, need: replicas / 2,
		pending: map[uint64]*fabricRequest{}, pongs: make(chan uint64, 64),
	}
}

func (l *fabricLeader) start(ctx context.Context) error {
	l.node.SetHandler(l.onAck)
	// Interest in the followers' subjects spreads over the routes
	// asynchronously: ping every follower until each has answered.
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	for seen := map[uint64]bool{}; len(seen) < l.followers; {
		for to := 2; to <= l.followers+1; to++ {
			_ = l.node.Send(uint64(to), []byte("ping"))
		}
		select {
		case from := <-l.pongs:
			seen[from] = true
		case <-time.After(20 * time.Millisecond):
		case <-ctx.Done():
			return fmt.Errorf("bench: fabric: followers do not answer over the routes: %w", ctx.Err())
		}
	}
	sub, err := l.nc.Subscribe(fabricSubject+"*", l.onRequest)
	if err != nil {
		return err
	}
	l.sub = sub
	return l.nc.Flush()
}

func (l *fabricLeader) onRequest(m *nats.Msg) {
	if l.followers == 0 {
		_ = m.Respond(nil)
		return
	}
	l.mu.Lock()
	l.seq++
	n := l.seq
	l.pending[n] = &fabricRequest{reply: m.Reply}
	l.frame = binary.BigEndian.AppendUint64(l.frame[:0], n)
	l.frame = append(l.frame, m.Data...)
	frame := l.frame
	l.mu.Unlock()
	// Send copies the frame; only this goroutine (the subscription's)
	// reuses it.
	for to := 2; to <= l.followers+1; to++ {
		_ = l.node.Send(uint64(to), frame)
	}
}

func (l *fabricLeader) onAck(from uint64, frame []byte) {
	if len(frame) != 8 {
		select {
		case l.pongs <- from:
		default:
		}
		return
	}
	n := binary.BigEndian.Uint64(frame)
	l.mu.Lock()
	req := l.pending[n]
	if req == nil {
		l.mu.Unlock()
		return
	}
	req.acks++
	if req.acks < l.need {
		l.mu.Unlock()
		return
	}
	delete(l.pending, n)
	l.mu.Unlock()
	_ = l.nc.Publish(req.reply, nil)
}

func (l *fabricLeader) close() error {
	if l.sub != nil {
		return l.sub.Unsubscribe()
	}
	return nil
}

// fabricProducer batches records per partition as the SDK does: a batch
// goes out at once when its partition has nothing in flight, when it is
// full, or after the linger; at most maxInFlight batches per partition are
// in flight, and Send blocks while a full batch waits for a slot. The
// fabric publishes each batch as a NATS request; the disk baseline hands
// it to its writers (publish).
type fabricProducer struct {
	nc    *nats.Conn // nil when publish is not NATS (the disk baseline)
	sub   *nats.Subscription
	inbox string
	// publish hands a built batch, batch id of partition, to the system,
	// with mu held; the bytes are valid only during the call. Its outcome
	// comes back through complete.
	publish func(partition int, id uint64, batch []byte) error
	onAck   AckFunc
	// acks, when set (withAcks), takes a completed batch's outcomes in
	// one call instead of onAck per record, as the raftmq SDK's batch
	// callback does, so the baselines cost the harness what raftmq does.
	acks func(n int, payload func(i int) []byte, err error)
	// base is the harness clock's base when dated: sendAt dates records
	// with the harness's reading instead of a clock read of its own.
	base     time.Time
	dated    bool
	linger   time.Duration
	maxBytes int
	maxIn    int

	mu     sync.Mutex
	cond   *sync.Cond
	parts  map[int]*fabricPartition
	flying map[uint64]*fabricBatch
	// acking counts completed batches whose records' AckFunc calls are
	// under way (outside mu): Flush waits for them too.
	acking int
	nextID uint64
	err    error
}

type fabricPartition struct {
	id       int
	builder  protocol.BatchBuilder
	payloads [][]byte
	inFlight int
	timer    *time.Timer
}

type fabricBatch struct {
	part     *fabricPartition
	payloads [][]byte
}

func newFabricProducer(nc *nats.Conn, w Workload, onAck AckFunc) (*fabricProducer, error) {
	// A batch must fit in one NATS message with its request framing, and
	// the leader's copy in one peer-transport frame.
	p := newBatchingProducer(w, onAck, int(nc.MaxPayload())-64<<10)
	p.nc, p.inbox = nc, nats.NewInbox()
	p.publish = func(partition int, id uint64, batch []byte) error {
		return nc.PublishRequest(fabricSubject+strconv.Itoa(partition), p.inbox+"."+strconv.FormatUint(id, 10), batch)
	}
	sub, err := nc.Subscribe(p.inbox+".*", p.onReply)
	if err != nil {
		nc.Close()
		return nil, err
	}
	p.sub = sub
	return p, nil
}

// newBatchingProducer returns a producer with w's linger, batch bytes (at
// most maxBatchBytes) and batches in flight, without publish.
func newBatchingProducer(w Workload, onAck AckFunc, maxBatchBytes int) *fabricProducer {
	p := &fabricProducer{
		onAck: onAck, linger: w.Linger, maxBytes: w.BatchBytes, maxIn: w.MaxInFlight,
		parts: map[int]*fabricPartition{}, flying: map[uint64]*fabricBatch{},
	}
	p.cond = sync.NewCond(&p.mu)
	if p.maxBytes <= 0 {
		p.maxBytes = 1 << 20
	}
	p.maxBytes = min(p.maxBytes, maxBatchBytes)
	if p.maxIn <= 0 {
		p.maxIn = 5 // the SDK's default
	}
	return p
}

// withAcks makes p report to ps's accounting per batch (onAcks) and date
// records with ps's clock readings (sendAt); see batchAckTarget.
func (p *fabricProducer) withAcks(ps *producerState) *fabricProducer {
	p.acks, p.base, p.dated = ps.onAcks, ps.clock.base, true
	return p
}

func (p *fabricProducer) Send(partition int, payload []byte) error {
	return p.send(partition, payload, time.Now().UnixMilli())
}

// sendAt implements clockedProducer.
func (p *fabricProducer) sendAt(partition int, payload []byte, now int64) error {
	if !p.dated {
		return p.Send(partition, payload)
	}
	return p.send(partition, payload, p.base.Add(time.Duration(now)).UnixMilli())
}

// send adds payload, timestamped at timestamp (Unix milliseconds), to
// partition's batch.
func (p *fabricProducer) send(partition int, payload []byte, timestamp int64) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err != nil {
		return p.err
	}
	part := p.parts[partition]
	if part == nil {
		part = &fabricPartition{id: partition}
		p.parts[partition] = part
	}
	// A full batch waits for a slot before this record starts the next.
	for part.builder.Len() > 0 && part.builder.UncompressedSize()+len(payload)+16 > p.maxBytes {
		if part.inFlight < p.maxIn {
			p.sendLocked(part)
			break
		}
		p.cond.Wait()
		if p.err != nil {
			return p.err
		}
	}
	if err := part.builder.Add(protocol.Record{Timestamp: timestamp, Value: payload}); err != nil {
		return err
	}
	part.payloads = append(part.payloads, payload)
	switch {
	case part.inFlight == 0:
		p.sendLocked(part)
	case part.timer == nil && p.linger > 0:
		part.timer = time.AfterFunc(p.linger, func() { p.lingerDone(part) })
	case p.linger == 0 && part.inFlight < p.maxIn:
		p.sendLocked(part)
	}
	return nil
}

func (p *fabricProducer) lingerDone(part *fabricPartition) {
	p.mu.Lock()
	defer p.mu.Unlock()
	part.timer = nil
	if part.builder.Len() > 0 && part.inFlight < p.maxIn {
		p.sendLocked(part)
	}
}

// sendLocked publishes part's batch; the caller checked the window.
func (p *fabricProducer) sendLocked(part *fabricPartition) {
	if part.timer != nil {
		part.timer.Stop()
		part.timer = nil
	}
	batch, err := part.builder.Build(protocol.CodecNone)
	if err != nil {
		p.failLocked(err)
		return
	}
	p.nextID++
	id := p.nextID
	p.flying[id] = &fabricBatch{part: part, payloads: part.payloads}
	part.payloads = nil
	part.inFlight++
	err = p.publish(part.id, id, batch)
	part.builder.Reset()
	if err != nil {
		p.failLocked(err)
	}
}

func (p *fabricProducer) failLocked(err error) {
	if p.err == nil {
		p.err = err
	}
	p.cond.Broadcast()
}

func (p *fabricProducer) onReply(m *nats.Msg) {
	id, err := strconv.ParseUint(m.Subject[strings.LastIndexByte(m.Subject, '.')+1:], 10, 64)
	if err != nil {
		return
	}
	p.complete(id, nil)
}

// complete ends batch id: its records are acknowledged with err.
func (p *fabricProducer) complete(id uint64, err error) {
	p.mu.Lock()
	b := p.flying[id]
	if b == nil {
		p.mu.Unlock()
		return
	}
	delete(p.flying, id)
	b.part.inFlight--
	// The next batch goes out as soon as a slot is free if it is full or
	// its linger passed (no timer running).
	if part := b.part; part.builder.Len() > 0 && (part.timer == nil || part.builder.UncompressedSize() >= p.maxBytes/2) {
		p.sendLocked(part)
	}
	p.acking++
	p.cond.Broadcast()
	p.mu.Unlock()
	if p.acks != nil {
		payloads := b.payloads
		p.acks(len(payloads), func(i int) []byte { return payloads[i] }, err)
	} else {
		for _, payload := range b.payloads {
			p.onAck(payload, err)
		}
	}
	p.mu.Lock()
	p.acking--
	p.cond.Broadcast()
	p.mu.Unlock()
}

func (p *fabricProducer) Flush(ctx context.Context) error {
	stop := context.AfterFunc(ctx, func() {
		p.mu.Lock()
		p.cond.Broadcast()
		p.mu.Unlock()
	})
	defer stop()
	p.mu.Lock()
	defer p.mu.Unlock()
	for p.busyLocked() && p.err == nil && ctx.Err() == nil {
		for _, part := range p.parts {
			if part.builder.Len() > 0 && part.inFlight < p.maxIn {
				p.sendLocked(part)
			}
		}
		if p.busyLocked() {
			p.cond.Wait()
		}
	}
	if p.err != nil {
		return p.err
	}
	return ctx.Err()
}

// busyLocked reports whether a batch is being built or in flight, or its
// records' acknowledgements are being delivered.
func (p *fabricProducer) busyLocked() bool {
	if len(p.flying) > 0 || p.acking > 0 {
		return true
	}
	for _, part := range p.parts {
		if part.builder.Len() > 0 {
			return true
		}
	}
	return false
}

func (p *fabricProducer) Close() error {
	p.mu.Lock()
	for _, part := range p.parts {
		if part.timer != nil {
			part.timer.Stop()
		}
	}
	p.mu.Unlock()
	if p.nc == nil {
		return nil
	}
	err := p.sub.Unsubscribe()
	p.nc.Close()
	return err
}
