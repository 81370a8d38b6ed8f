package broker

import (
	"context"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/raftmq/raftmq/protocol"
	"github.com/raftmq/raftmq/transport"
)

// inProcessAddr is what a NATS connection through an in-memory pipe
// reports as its server address (net.Pipe's address).
const inProcessAddr = "pipe"

// TestEmbeddedBrokerConnectsInProcess checks that a broker with its own
// embedded server reaches it through the in-process pipe, not TCP, even
// when Connect names URLs, and that clients still reach the broker over
// TCP at its ClientURL.
func TestEmbeddedBrokerConnectsInProcess(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cfg := DefaultConfig()
	fastTimings(&cfg)
	cfg.DataDir = t.TempDir()
	cfg.NATS.Embedded = &transport.EmbeddedConfig{ClientListen: "127.0.0.1:0"}
	cfg.NATS.Connect.URLs = []string{"nats://127.0.0.1:1"} // ignored with Embedded
	cfg.Registerer = prometheus.NewRegistry()
	b, err := Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close(context.Background())
	if addr := b.nc.ConnectedAddr(); addr != inProcessAddr {
		t.Fatalf("broker connected to its embedded server at %q, want the in-process pipe", addr)
	}
	if b.ClientURL() == "" || b.nc.ConnectedUrl() != b.ClientURL() {
		t.Fatalf("broker reports server %q, embedded server listens at %q", b.nc.ConnectedUrl(), b.ClientURL())
	}
	waitFor(ctx, t, "broker ready", b.Ready)
	client := newTCPClient(t, b.ClientURL())
	topic := client.createTopic("pipe", 1, 1)
	if topic.Partitions[0].Leader != 1 {
		t.Fatalf("topic %+v", topic)
	}
	reply, err := client.produceTo(1, &protocol.ProduceRequest{Topic: "pipe", Partition: 0, Batch: buildBatch(t, "over tcp")})
	if err != nil || reply.Err != nil {
		t.Fatalf("produce over TCP: %+v %v", reply, err)
	}
}

// TestDevClusterBrokersConnectInProcess checks the development cluster's
// brokers reach their servers in-process, again after StopBroker and
// StartBroker (the server outlives the broker), and over TCP with
// BrokersOverTCP; in both shapes records produced before and after the
// restart are all there.
func TestDevClusterBrokersConnectInProcess(t *testing.T) {
	for _, overTCP := range []bool{false, true} {
		name := "in-process"
		if overTCP {
			name = "tcp"
		}
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			cluster, err := StartDev(ctx, DevConfig{
				Nodes: 3, DataDir: t.TempDir(), ClientListen: "127.0.0.1:0",
				Registerer: prometheus.NewRegistry(), Configure: fastTimings, BrokersOverTCP: overTCP,
			})
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
			checkAddrs := func(when string) {
				t.Helper()
				for id := uint64(1); id <= 3; id++ {
					addr := cluster.Broker(id).nc.ConnectedAddr()
					if overTCP {
						if host, _, err := net.SplitHostPort(addr); err != nil || host != "127.0.0.1" {
							t.Fatalf("%s: broker %d connected at %q, want TCP loopback", when, id, addr)
						}
					} else if addr != inProcessAddr {
						t.Fatalf("%s: broker %d connected at %q, want the in-process pipe", when, id, addr)
					}
				}
			}
			checkAddrs("start")
			client := newTCPClient(t, joinURLs(cluster.ClientURLs()))
			client.createTopic("restart", 1, 3)
			leaders := &leaderClient{testClient: client, leader: 1, nodes: 3}
			if _, err := leaders.produce(ctx, "restart", 0, buildBatch(t, "before")); err != nil {
				t.Fatal(err)
			}
			if err := cluster.StopBroker(ctx, 2); err != nil {
				t.Fatal(err)
			}
			if err := cluster.StartBroker(ctx, 2); err != nil {
				t.Fatal(err)
			}
			if err := cluster.WaitReady(ctx); err != nil {
				t.Fatal(err)
			}
			checkAddrs("after restart")
			if _, err := leaders.produce(ctx, "restart", 0, buildBatch(t, "after")); err != nil {
				t.Fatal(err)
			}
			got := leaders.readAll(ctx, t, "restart", 0)
			if len(got) != 2 || got[0].value != "before" || got[1].value != "after" {
				t.Fatalf("records %+v, want before and after", got)
			}
		})
	}
}

// newTCPClient connects a test client over TCP, as users do.
func newTCPClient(t *testing.T, urls string) *testClient {
	t.Helper()
	nc, err := nats.Connect(urls, nats.MaxReconnects(-1), nats.ReconnectWait(20*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	if host, _, err := net.SplitHostPort(nc.ConnectedAddr()); err != nil || host != "127.0.0.1" {
		t.Fatalf("test client connected at %q, want TCP loopback", nc.ConnectedAddr())
	}
	return &testClient{t: t, nc: nc, prefix: protocol.DefaultSubjectPrefix}
}

// TestClientsCannotReachRaftTraffic: the development cluster's brokers
// replicate through their servers' peer account, so a client (TCP, no
// credentials) subscribed to every peer subject sees none of the Raft
// traffic that replicates its records, and a message it publishes to a
// broker's peer subject never reaches that broker's transport.
func TestClientsCannotReachRaftTraffic(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cluster, client := startTestCluster(t, 3) // the client connects over TCP
	sniff, err := client.nc.SubscribeSync(protocol.DefaultSubjectPrefix + ".peer.>")
	if err != nil {
		t.Fatal(err)
	}
	if err := client.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	received := func() uint64 {
		var n uint64
		for id := uint64(1); id <= 3; id++ {
			n += cluster.Broker(id).peers.Stats().FramesReceived
		}
		return n
	}
	before := received()
	client.createTopic("private", 1, 3)
	leaders := &leaderClient{testClient: client, leader: 1, nodes: 3}
	if _, err := leaders.produce(ctx, "private", 0, buildBatch(t, "secret")); err != nil {
		t.Fatal(err)
	}
	if received() == before {
		t.Fatal("no Raft frames counted while creating a topic and producing")
	}
	if msg, err := sniff.NextMsg(100 * time.Millisecond); err == nil {
		t.Fatalf("a client saw peer traffic on %s (%d bytes)", msg.Subject, len(msg.Data))
	}
	if err := sniff.Unsubscribe(); err != nil {
		t.Fatal(err)
	}
	for id := uint64(1); id <= 3; id++ {
		if err := client.nc.Publish(transport.PeerSubject(protocol.DefaultSubjectPrefix, id), []byte{0xEE, 0xEE}); err != nil {
			t.Fatal(err)
		}
	}
	if err := client.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	// A second record replicates after the client's messages, on the same
	// servers.
	if _, err := leaders.produce(ctx, "private", 0, buildBatch(t, "after")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	for id := uint64(1); id <= 3; id++ {
		if errs := cluster.Broker(id).peers.Stats().DecodeErrors; errs != 0 {
			t.Fatalf("broker %d's transport counted %d undecodable messages: a client's message reached its peer subject", id, errs)
		}
	}
}

// TestBrokerReplicatingInAnotherAccountIsLogged: a broker that joins the
// development cluster over TCP runs its Raft traffic in the global account,
// out of reach of the others, which replicate in the peer account; each of
// them logs it once, at error level (its status reports, in the global
// account, are how they learn of it; theirs never reach it), while a
// cluster of brokers alike logs nothing.
func TestBrokerReplicatingInAnotherAccountIsLogged(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	recorder := newLogRecorder()
	logger := slog.New(recorder)
	cluster, _ := startTestClusterWith(t, 3, func(cfg *Config) {
		fastTimings(cfg)
		cfg.Logger = logger
	})
	logged := func() []slog.Level { return recorder.logged(otherAccountMessage) }
	cluster.mu.Lock()
	rounds := 5 * cluster.configs[1].StatusInterval
	cluster.mu.Unlock()
	// A few status rounds among brokers alike.
	time.Sleep(rounds)
	if got := logged(); len(got) != 0 {
		t.Fatalf("brokers alike logged %d account mismatches", len(got))
	}
	startExtraBroker(t, ctx, cluster, 4, false)
	// Brokers 1-3 each log broker 4.
	for attempt := 0; len(logged()) < 3; attempt++ {
		if ctx.Err() != nil {
			t.Fatalf("%d account mismatches logged, want 3", len(logged()))
		}
		waitBackoff(ctx, attempt)
	}
	time.Sleep(rounds)
	got := logged()
	if len(got) != 3 {
		t.Fatalf("%d account mismatches logged, want one by each of brokers 1-3", len(got))
	}
	for _, level := range got {
		if level != slog.LevelError {
			t.Fatalf("account mismatch logged at %v, want error", level)
		}
	}
}

// TestClientsCannotForgeBrokerGossip: the metadata broadcast and the status
// reports travel in the peer account, so a client publishing on those
// subjects changes nothing. Before, a client's metadata with the highest
// version and no topics made every broker drop every partition and delete
// its data, and the real metadata could never replace it; a client's
// status report could mark a broker as stopping.
func TestClientsCannotForgeBrokerGossip(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cluster, client := startTestCluster(t, 3)
	client.createTopic("kept", 1, 3)
	leaders := &leaderClient{testClient: client, leader: 1, nodes: 3}
	if _, err := leaders.produce(ctx, "kept", 0, buildBatch(t, "before")); err != nil {
		t.Fatal(err)
	}
	version := cluster.Broker(1).currentMetadata().Version
	forged := map[string][]byte{
		protocol.SubjectClusterMetadata(protocol.DefaultSubjectPrefix): []byte(`{"version":18446744073709551615,"next_group_id":18446744073709551615,"topics":{}}`),
		protocol.SubjectClusterStatus(protocol.DefaultSubjectPrefix):   []byte(`{"v":1,"id":2,"ready":false,"stopping":true,"partitions":[]}`),
	}
	for round := 0; round < 3; round++ {
		for subject, data := range forged {
			if err := client.nc.Publish(subject, data); err != nil {
				t.Fatal(err)
			}
		}
		if err := client.nc.Flush(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	for id := uint64(1); id <= 3; id++ {
		b := cluster.Broker(id)
		m := b.currentMetadata()
		if m.Version != version {
			t.Fatalf("broker %d adopted metadata version %d, want %d", id, m.Version, version)
		}
		if _, ok := m.Topics["kept"]; !ok {
			t.Fatalf("broker %d lost topic kept: %+v", id, m.Topics)
		}
		if b.stoppingBrokers()[2] {
			t.Fatalf("broker %d believes a client's report that broker 2 is stopping", id)
		}
	}
	if _, err := leaders.produce(ctx, "kept", 0, buildBatch(t, "after")); err != nil {
		t.Fatal(err)
	}
	got := leaders.readAll(ctx, t, "kept", 0)
	if len(got) != 2 || got[0].value != "before" || got[1].value != "after" {
		t.Fatalf("records %+v, want before and after", got)
	}
}
