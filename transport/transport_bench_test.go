package transport

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

type natsMsg = nats.Msg

// BenchmarkSend measures Send through a real embedded server to a receiving
// transport, 256-byte frames. The baseline publishes each frame as its own
// NATS message with no envelope.
func BenchmarkSend(b *testing.B) {
	srv, err := StartEmbedded(EmbeddedConfig{ClientListen: "127.0.0.1:-1"})
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Shutdown()
	ncSend, err := Connect(ConnectConfig{URLs: []string{srv.ClientURL()}})
	if err != nil {
		b.Fatal(err)
	}
	defer ncSend.Close()
	ncRecv, err := Connect(ConnectConfig{URLs: []string{srv.ClientURL()}})
	if err != nil {
		b.Fatal(err)
	}
	defer ncRecv.Close()
	frame := make([]byte, 256)

	b.Run("transport", func(b *testing.B) {
		sender, err := New(ncSend, Config{NodeID: 1, MaxQueueBytes: 256 << 20})
		if err != nil {
			b.Fatal(err)
		}
		receiver, err := New(ncRecv, Config{NodeID: 2})
		if err != nil {
			b.Fatal(err)
		}
		received := make(chan struct{}, 1)
		var count int
		target := 0
		receiver.SetHandler(func(uint64, []byte) {
			count++
			if count == target {
				received <- struct{}{}
			}
		})
		b.SetBytes(int64(len(frame)))
		b.ReportAllocs()
		target = b.N
		for b.Loop() {
			if err := sender.Send(2, frame); err != nil {
				b.Fatal(err)
			}
		}
		<-received
		b.StopTimer()
		st := sender.Stats()
		b.ReportMetric(float64(st.FramesSent)/float64(max(st.MessagesSent, 1)), "frames/msg")
		sender.Close()
		receiver.Close()
	})
	b.Run("baseline/publish-per-frame", func(b *testing.B) {
		received := make(chan struct{}, 1)
		var count int
		target := b.N
		sub, err := ncRecv.Subscribe("bench.baseline", func(*natsMsg) {
			count++
			if count == target {
				received <- struct{}{}
			}
		})
		if err != nil {
			b.Fatal(err)
		}
		defer sub.Unsubscribe()
		sub.SetPendingLimits(-1, -1)
		ncRecv.Flush()
		b.SetBytes(int64(len(frame)))
		b.ReportAllocs()
		for b.Loop() {
			if err := ncSend.Publish("bench.baseline", frame); err != nil {
				b.Fatal(err)
			}
		}
		<-received
	})
}

// BenchmarkRoundTrip measures one frame's round trip between two nodes on
// two routed servers, one frame in flight, as a Raft AppendEntries and its
// response travel: node 1 sends, node 2's handler answers, node 1's handler
// receives the answer. "pipe" connects each node to its server in-process,
// as a broker reaches its own embedded server; "tcp" over loopback. cpu-us/op
// is the process's user+system CPU per round trip (both servers included).
// On the shared 2-core VM: pipe 72-76 us and tcp 144-166 us per round trip
// (four alternated runs, load 2.7-3.2). A NATS client that writes every
// message from the publishing goroutine (nats.WriteBufferSize(1), no
// hand-off to its flusher) measured 72-77 us over the pipe, no gain, as a
// pipe write is itself a hand-off to the server's reader; over TCP it
// measured 123-135 us.
func BenchmarkRoundTrip(b *testing.B) {
	for _, inProcess := range []bool{true, false} {
		name := "tcp"
		if inProcess {
			name = "pipe"
		}
		b.Run(name, func(b *testing.B) { benchmarkRoundTrip(b, inProcess) })
	}
}

func benchmarkRoundTrip(b *testing.B, inProcess bool) {
	servers := startRoutedServers(b, 2)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	nodes := make([]*Transport, 2)
	for i, srv := range servers {
		cfg := ConnectConfig{URLs: []string{srv.ClientURL()}}
		if inProcess {
			cfg.InProcess = srv
		}
		nc, err := Connect(cfg)
		if err != nil {
			b.Fatal(err)
		}
		defer nc.Close()
		if nodes[i], err = New(nc, Config{NodeID: uint64(i + 1)}); err != nil {
			b.Fatal(err)
		}
		defer nodes[i].Close()
	}
	replies := make(chan struct{}, 1)
	nodes[0].SetHandler(func(uint64, []byte) { replies <- struct{}{} })
	nodes[1].SetHandler(func(from uint64, frame []byte) { _ = nodes[1].Send(from, frame) })
	frame := make([]byte, 200) // an AppendEntries of one 100-byte record
	roundTrip := func() {
		_ = nodes[0].Send(2, frame)
		<-replies
	}
	// Interest in node 2's subject spreads over the route asynchronously;
	// send until a reply comes back.
	for warm := false; !warm; {
		_ = nodes[0].Send(2, frame)
		select {
		case <-replies:
			warm = true
		case <-time.After(10 * time.Millisecond):
		case <-ctx.Done():
			b.Fatal("no reply over the route")
		}
	}
	drain := time.After(50 * time.Millisecond)
	for drained := false; !drained; {
		select {
		case <-replies:
		case <-drain:
			drained = true
		}
	}
	b.ReportAllocs()
	cpu := processCPU()
	for b.Loop() {
		roundTrip()
	}
	b.ReportMetric(float64((processCPU()-cpu).Microseconds())/float64(b.N), "cpu-us/op")
}

// startRoutedServers starts n embedded servers on loopback, routed into
// one cluster, and waits for the routes; they shut down with b.
func startRoutedServers(b *testing.B, n int) []*EmbeddedServer {
	b.Helper()
	var servers []*EmbeddedServer
	for i := range n {
		cfg := EmbeddedConfig{ClientListen: "127.0.0.1:-1", ClusterListen: "127.0.0.1:-1"}
		if i > 0 {
			cfg.Routes = []string{servers[0].ClusterURL()}
		}
		srv, err := StartEmbedded(cfg)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(srv.Shutdown)
		servers = append(servers, srv)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, srv := range servers {
		if err := srv.WaitForRoutes(ctx, n-1); err != nil {
			b.Fatal(err)
		}
	}
	return servers
}
