package bench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// JetStream settings compared with raftmq.
const (
	// JetStreamLazy is nats-server's default: a write is acknowledged once a
	// quorum of replicas stored it in the operating system's page cache;
	// files are fsynced every sync_interval (2 minutes).
	JetStreamLazy = "lazy"
	// JetStreamSyncAlways is sync_interval: always: every write is fsynced
	// (on a replicated stream, the Raft log) before it counts.
	JetStreamSyncAlways = "sync_always"
)

// JetStream consumer kinds.
const (
	ConsumerOrdered = "ordered"
	ConsumerPull    = "pull"
)

// JetStreamConfig configures an in-process JetStream cluster.
type JetStreamConfig struct {
	// Servers is the number of nats-servers (1, 3, 5...).
	Servers int
	// Setting is JetStreamLazy or JetStreamSyncAlways.
	Setting string
	// Dir is where the servers keep their stores (one subdirectory each);
	// it must be on the disk being measured.
	Dir string
	// URLs, when set, selects an existing JetStream-enabled NATS system
	// instead of starting servers (Servers and Dir are then ignored and
	// Setting is only a label).
	URLs []string
}

// StartJetStream starts a JetStream cluster (or connects to cfg.URLs) and
// returns it as a Target. It waits until the JetStream meta group has a
// leader and every server is current.
func StartJetStream(ctx context.Context, cfg JetStreamConfig) (Target, error) {
	if cfg.Setting != JetStreamLazy && cfg.Setting != JetStreamSyncAlways {
		return nil, fmt.Errorf("bench: JetStream setting %q, want %q or %q", cfg.Setting, JetStreamLazy, JetStreamSyncAlways)
	}
	t := &jetStreamTarget{setting: cfg.Setting, urls: cfg.URLs, consumerConns: map[int]*nats.Conn{}}
	if len(t.urls) == 0 {
		if cfg.Servers < 1 {
			return nil, fmt.Errorf("bench: JetStream servers %d, want at least 1", cfg.Servers)
		}
		servers, err := startJetStreamServers(ctx, cfg)
		if err != nil {
			return nil, err
		}
		t.servers = servers
		for _, s := range servers {
			t.urls = append(t.urls, s.ClientURL())
		}
	}
	admin, err := nats.Connect(t.urls[0], nats.Name("raftmq-bench-admin"))
	if err != nil {
		t.Close()
		return nil, fmt.Errorf("bench: connect to JetStream: %w", err)
	}
	t.admin = admin
	if t.adminJS, err = jetstream.New(admin); err != nil {
		t.Close()
		return nil, err
	}
	return t, nil
}

func startJetStreamServers(ctx context.Context, cfg JetStreamConfig) ([]*server.Server, error) {
	routePorts := make([]int, cfg.Servers)
	var routes []string
	if cfg.Servers > 1 {
		for i := range routePorts {
			port, err := freePort()
			if err != nil {
				return nil, err
			}
			routePorts[i] = port
			routes = append(routes, "nats://127.0.0.1:"+strconv.Itoa(port))
		}
	}
	var servers []*server.Server
	stopAll := func() {
		for _, s := range servers {
			s.Shutdown()
			s.WaitForShutdown()
		}
	}
	for i := range cfg.Servers {
		name := "js-" + strconv.Itoa(i+1)
		storeDir := filepath.Join(cfg.Dir, name)
		if err := os.MkdirAll(storeDir, 0o755); err != nil {
			stopAll()
			return nil, err
		}
		opts := &server.Options{
			ServerName: name,
			Host:       "127.0.0.1",
			Port:       server.RANDOM_PORT,
			NoLog:      true,
			NoSigs:     true,
			JetStream:  true,
			StoreDir:   storeDir,
			SyncAlways: cfg.Setting == JetStreamSyncAlways,
		}
		if cfg.Servers > 1 {
			opts.Cluster = server.ClusterOpts{Name: "raftmq-bench-js", Host: "127.0.0.1", Port: routePorts[i]}
			opts.Routes = server.RoutesFromStr(joinComma(routes))
		}
		s, err := server.NewServer(opts)
		if err != nil {
			stopAll()
			return nil, fmt.Errorf("bench: nats-server %s: %w", name, err)
		}
		go s.Start()
		servers = append(servers, s)
	}
	for _, s := range servers {
		if !s.ReadyForConnections(30 * time.Second) {
			stopAll()
			return nil, errors.New("bench: nats-server did not accept connections within 30s")
		}
	}
	if err := waitJetStreamReady(ctx, servers); err != nil {
		stopAll()
		return nil, err
	}
	return servers, nil
}

func joinComma(items []string) string {
	out := ""
	for i, s := range items {
		if i > 0 {
			out += ","
		}
		out += s
	}
	return out
}

// freePort asks the kernel for a free 127.0.0.1 TCP port. (A route listener
// must know every peer's port up front; another process could take the port
// in between, which the server start then reports.)
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// waitJetStreamReady waits for a meta leader and every server current.
func waitJetStreamReady(ctx context.Context, servers []*server.Server) error {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	ticker := time.NewTicker(20 * time.Millisecond)
	defer ticker.Stop()
	for {
		leader, current := false, true
		for _, s := range servers {
			if len(servers) == 1 {
				leader = s.JetStreamEnabled()
				continue
			}
			leader = leader || s.JetStreamIsLeader()
			current = current && s.JetStreamIsCurrent()
		}
		if leader && current {
			return nil
		}
		select {
		case <-ticker.C:
		case <-ctx.Done():
			return fmt.Errorf("bench: JetStream meta group not ready: %w", ctx.Err())
		}
	}
}

type jetStreamTarget struct {
	setting string
	servers []*server.Server
	urls    []string
	admin   *nats.Conn
	adminJS jetstream.JetStream

	mu            sync.Mutex
	workload      Workload
	run           int
	streams       []string // current run's stream names, by partition
	consumerConns map[int]*nats.Conn
}

func (t *jetStreamTarget) Info() TargetInfo {
	info := TargetInfo{
		System:   "jetstream",
		Setting:  t.setting,
		Versions: map[string]string{"nats-server": server.VERSION, "nats.go": nats.Version},
		Settings: map[string]string{"storage": "file", "ack": "quorum"},
	}
	if t.setting == JetStreamSyncAlways {
		info.Settings["sync_interval"] = "always"
		info.Durability = "acked after a quorum fsynced it (sync_interval: always)"
	} else {
		info.Settings["sync_interval"] = "2m (default)"
		info.Durability = "acked when a quorum has it in the page cache; fsync every 2 min (default)"
	}
	if len(t.servers) == 0 {
		info.Durability += " [external servers: the label is what was asked, check their config]"
	}
	return info
}

func (t *jetStreamTarget) ConsumerKinds() []string { return []string{ConsumerOrdered, ConsumerPull} }

func (t *jetStreamTarget) subject(partition int) string {
	return "raftmq-bench." + strconv.Itoa(t.run) + "." + strconv.Itoa(partition)
}

func (t *jetStreamTarget) Prepare(ctx context.Context, w Workload) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, name := range t.streams {
		if err := t.adminJS.DeleteStream(ctx, name); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
			return fmt.Errorf("delete stream %s: %w", name, err)
		}
	}
	t.run++
	t.workload = w
	t.streams = t.streams[:0]
	for q := range w.Partitions {
		name := "RAFTMQ_BENCH_" + strconv.Itoa(t.run) + "_" + strconv.Itoa(q)
		cfg := jetstream.StreamConfig{
			Name:      name,
			Subjects:  []string{t.subject(q)},
			Storage:   jetstream.FileStorage,
			Replicas:  w.Replicas,
			Retention: jetstream.LimitsPolicy,
			Discard:   jetstream.DiscardOld,
		}
		if err := t.createStream(ctx, cfg); err != nil {
			return err
		}
		t.streams = append(t.streams, name)
	}
	return t.awaitStreamInterest(ctx, w.Partitions)
}

// awaitStreamInterest waits until every server a producer may connect to
// routes the streams' subjects to a stream. Interest spreads through the
// cluster after CreateStream returns; a publish sent before it arrives gets
// "no responders" and counts as failed. The probe expects an impossible last
// sequence, so the stream answers with an error and stores nothing.
func (t *jetStreamTarget) awaitStreamInterest(ctx context.Context, partitions int) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for _, url := range t.urls {
		conn, err := nats.Connect(url, nats.Name("raftmq-bench-probe"))
		if err != nil {
			return err
		}
		for q := range partitions {
			for {
				probe := nats.NewMsg(t.subject(q))
				probe.Header.Set(jetstream.ExpectedLastSeqHeader, "18446744073709551615")
				_, err := conn.RequestMsgWithContext(ctx, probe)
				if !errors.Is(err, nats.ErrNoResponders) {
					break
				}
				select {
				case <-time.After(20 * time.Millisecond):
				case <-ctx.Done():
					conn.Close()
					return fmt.Errorf("stream subject %s has no stream behind it at %s: %w", t.subject(q), url, ctx.Err())
				}
			}
		}
		conn.Close()
	}
	return nil
}

// createStream retries while the cluster is still settling (a peer not yet
// registered gives "insufficient resources").
func (t *jetStreamTarget) createStream(ctx context.Context, cfg jetstream.StreamConfig) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var first error
	for attempt := 1; ; attempt++ {
		_, err := t.adminJS.CreateStream(ctx, cfg)
		if err == nil {
			return nil
		}
		if first == nil {
			first = err
		}
		select {
		case <-time.After(100 * time.Millisecond):
		case <-ctx.Done():
			// The last error is often the deadline itself: say the first.
			return fmt.Errorf("create stream %s: %d attempts, first error %v, last: %w", cfg.Name, attempt, first, err)
		}
	}
}

func (t *jetStreamTarget) NewProducer(ctx context.Context, id int, onAck AckFunc) (Producer, error) {
	conn, err := nats.Connect(t.urls[id%len(t.urls)], nats.Name("raftmq-bench-producer-"+strconv.Itoa(id)))
	if err != nil {
		return nil, err
	}
	p := &jetStreamProducer{conn: conn, subjects: make([]string, t.workload.Partitions)}
	for q := range p.subjects {
		p.subjects[q] = t.subject(q)
	}
	p.js, err = jetstream.New(conn,
		jetstream.WithPublishAsyncMaxPending(t.workload.window()),
		jetstream.WithPublishAsyncTimeout(time.Minute),
		jetstream.WithPublishAsyncAckHandler(func(_ jetstream.JetStream, m *nats.Msg, _ *jetstream.PubAck) {
			onAck(m.Data, nil)
			p.completed.Add(1)
		}),
		jetstream.WithPublishAsyncErrHandler(func(_ jetstream.JetStream, m *nats.Msg, err error) {
			onAck(m.Data, err)
			p.completed.Add(1)
		}),
	)
	if err != nil {
		conn.Close()
		return nil, err
	}
	return p, nil
}

type jetStreamProducer struct {
	conn     *nats.Conn
	js       jetstream.JetStream
	subjects []string
	// published counts the records PublishAsync took, completed those
	// whose handler returned.
	published, completed atomic.Int64
}

func (p *jetStreamProducer) Send(partition int, payload []byte) error {
	_, err := p.js.PublishAsync(p.subjects[partition], payload)
	if err == nil {
		p.published.Add(1)
	}
	return err
}

// Flush waits until every record's handler returned: PublishAsyncComplete
// fires once the last acknowledgement is taken off the pending list,
// which is before its handler runs, and the ledger check counts on every
// outcome being in by the time Flush returns.
func (p *jetStreamProducer) Flush(ctx context.Context) error {
	select {
	case <-p.js.PublishAsyncComplete():
	case <-ctx.Done():
		return ctx.Err()
	}
	for p.completed.Load() < p.published.Load() {
		if err := sleepContext(ctx, 50*time.Microsecond); err != nil {
			return err
		}
	}
	return nil
}

func (p *jetStreamProducer) Close() error {
	p.conn.Close()
	return nil
}

func (t *jetStreamTarget) consumerConn(consumer int) (*nats.Conn, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if conn := t.consumerConns[consumer]; conn != nil && !conn.IsClosed() {
		return conn, nil
	}
	conn, err := nats.Connect(t.urls[consumer%len(t.urls)], nats.Name("raftmq-bench-consumer-"+strconv.Itoa(consumer)))
	if err != nil {
		return nil, err
	}
	t.consumerConns[consumer] = conn
	return conn, nil
}

func (t *jetStreamTarget) NewReader(ctx context.Context, kind string, consumer, partition int) (Reader, error) {
	conn, err := t.consumerConn(consumer)
	if err != nil {
		return nil, err
	}
	js, err := jetstream.New(conn)
	if err != nil {
		return nil, err
	}
	t.mu.Lock()
	streamName := t.streams[partition]
	t.mu.Unlock()
	stream, err := js.Stream(ctx, streamName)
	if err != nil {
		return nil, err
	}
	var cons jetstream.Consumer
	switch kind {
	case ConsumerOrdered:
		cons, err = stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverAllPolicy})
	case ConsumerPull:
		cons, err = stream.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
			Durable:       "raftmq-bench-pull-" + strconv.Itoa(partition),
			DeliverPolicy: jetstream.DeliverAllPolicy,
			AckPolicy:     jetstream.AckNonePolicy,
		})
	default:
		return nil, fmt.Errorf("bench: JetStream has no consumer kind %q", kind)
	}
	if err != nil {
		return nil, err
	}
	return &jetStreamReader{consumer: cons, restartOnNoResponders: kind == ConsumerPull}, nil
}

type jetStreamReader struct {
	consumer jetstream.Consumer
	// restartOnNoResponders: a pull consumer's Consume is started again
	// when its pull finds no responder (an ordered consumer recreates its
	// consumer itself).
	restartOnNoResponders bool
}

func (r *jetStreamReader) Read(ctx context.Context, fn func([]byte) bool) error {
	stopped := make(chan struct{})
	// mu orders handler calls against Read's return, after which fn must
	// not run again (a late callback would race with the caller's ledger).
	var mu sync.Mutex
	done := false
	defer func() {
		mu.Lock()
		defer mu.Unlock()
		done = true
	}()
	handle := func(m jetstream.Msg) {
		mu.Lock()
		defer mu.Unlock()
		if done {
			return
		}
		if !fn(m.Data()) {
			done = true
			close(stopped)
		}
	}
	for {
		consumeErr := make(chan error, 1)
		retry := make(chan struct{}, 1)
		cc, err := r.consumer.Consume(handle, jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			switch {
			case errors.Is(err, jetstream.ErrNoHeartbeat) || errors.Is(err, nats.ErrConnectionClosed):
				select {
				case consumeErr <- err:
				default:
				}
			case r.restartOnNoResponders && errors.Is(err, nats.ErrNoResponders):
				// A pull sent before the new consumer's leader
				// subscribed: nothing answers it and the client does
				// not pull again, so start over.
				select {
				case retry <- struct{}{}:
				default:
				}
			}
		}))
		if err != nil {
			return err
		}
		select {
		case <-stopped:
			cc.Stop()
			return nil
		case <-ctx.Done():
			cc.Stop()
			return nil
		case err := <-consumeErr:
			cc.Stop()
			return err
		case <-retry:
			cc.Stop()
		}
		select {
		case <-time.After(20 * time.Millisecond):
		case <-ctx.Done():
			return nil
		}
	}
}

func (r *jetStreamReader) Close() error { return nil }

func (t *jetStreamTarget) Close() error {
	t.mu.Lock()
	for _, conn := range t.consumerConns {
		conn.Close()
	}
	t.consumerConns = map[int]*nats.Conn{}
	t.mu.Unlock()
	if t.admin != nil {
		t.admin.Close()
	}
	for _, s := range t.servers {
		s.Shutdown()
	}
	for _, s := range t.servers {
		s.WaitForShutdown()
	}
	return nil
}
