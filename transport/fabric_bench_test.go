package transport

import (
	"context"
	"encoding/binary"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// BenchmarkFabric measures what the NATS fabric alone costs on the path a
// replicated publish takes through a raftmq cluster, with no Raft, no
// storage and no record encoding: the ceiling the messaging leaves for
// everything else on this machine.
//
// Three embedded servers are routed into one cluster, as in the dev
// cluster and the benchmark harness's in-process cluster. Nodes 1-3 reach
// their own server in-process (a pipe) and talk through Transports. A
// client connected to server 1 over TCP loopback publishes requests of the
// sub-benchmark's size with a reply subject, up to 8 in flight (the SDK
// keeps a few batches in flight per partition). Node 1 (the leader) copies
// each request into a frame, as Raft's encoding of an AppendEntries does,
// and sends it to nodes 2 and 3 (the followers), which answer with a
// 16-byte frame; node 1 replies to the client at the first answer (a
// quorum of two with itself). So every payload byte crosses the client's
// socket once and the route twice, as a batch of records does.
//
// MB/s counts the client's payload; cpu-ns/B is the process's user and
// system CPU (client, three servers, three nodes) per payload byte. On the
// 2-core VM, 2026-11-23, load 1.3-2.2 from other work: 60 KiB 10.3, 256 KiB
// 10.7, 900 KiB 6.3-7.9 cpu-ns/B (128-254 MB/s): nats-server's copy of
// each large message out of its read buffer, the clients' copy into a new
// payload, the pipe and the loopback socket, and the zeroing and page
// faults of all that fresh memory. raftmq's batches carry 110 bytes per
// 100-byte record, so the fabric alone costs about 0.7-0.9 us of CPU per
// record, a third to half of what the whole replicated publish costs. The
// harness measures the same path with raftmq's batching in the same run:
// raftmq bench produce --vs nats-fabric.
func BenchmarkFabric(b *testing.B) {
	for _, size := range []int{60 << 10, 256 << 10, 900 << 10} {
		b.Run(fmt.Sprintf("%dKiB", size>>10), func(b *testing.B) { benchmarkFabric(b, size) })
	}
}

func benchmarkFabric(b *testing.B, size int) {
	const inFlight = 8
	servers := startRoutedServers(b, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	nodes := make([]*Transport, 3)
	conns := make([]*nats.Conn, 3)
	for i, srv := range servers {
		nc, err := Connect(ConnectConfig{URLs: []string{srv.ClientURL()}, InProcess: srv})
		if err != nil {
			b.Fatal(err)
		}
		defer nc.Close()
		conns[i] = nc
		if nodes[i], err = New(nc, Config{NodeID: uint64(i + 1)}); err != nil {
			b.Fatal(err)
		}
		defer nodes[i].Close()
	}

	// Interest in the nodes' subjects spreads over the routes
	// asynchronously: ping both followers until both have answered.
	answered := make(chan uint64, 16)
	nodes[0].SetHandler(func(from uint64, _ []byte) {
		select {
		case answered <- from:
		default:
		}
	})
	for _, i := range []int{1, 2} {
		node := nodes[i]
		node.SetHandler(func(from uint64, frame []byte) { _ = node.Send(from, frame) })
	}
	for seen := map[uint64]bool{}; len(seen) < 2; {
		_ = nodes[0].Send(2, []byte("ping"))
		_ = nodes[0].Send(3, []byte("ping"))
		select {
		case from := <-answered:
			seen[from] = true
		case <-time.After(20 * time.Millisecond):
		case <-ctx.Done():
			b.Fatal("no answer over the routes")
		}
	}

	// Node 1: the leader. pending maps a request's sequence number to its
	// reply subject until the first follower answers.
	var (
		mu      sync.Mutex
		pending = map[uint64]string{}
		seq     uint64
	)
	leaderFrames := sync.Pool{New: func() any { return new([]byte) }}
	sub, err := conns[0].Subscribe("fabric.produce", func(m *nats.Msg) {
		mu.Lock()
		seq++
		n := seq
		pending[n] = m.Reply
		mu.Unlock()
		fp := leaderFrames.Get().(*[]byte)
		frame := binary.BigEndian.AppendUint64((*fp)[:0], n)
		frame = append(frame, m.Data...)
		_ = nodes[0].Send(2, frame)
		_ = nodes[0].Send(3, frame)
		*fp = frame
		leaderFrames.Put(fp)
	})
	if err != nil {
		b.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := conns[0].Flush(); err != nil {
		b.Fatal(err)
	}
	nodes[0].SetHandler(func(_ uint64, frame []byte) {
		if len(frame) < 8 {
			return // a late ping
		}
		n := binary.BigEndian.Uint64(frame)
		mu.Lock()
		reply, ok := pending[n]
		delete(pending, n)
		mu.Unlock()
		if ok {
			_ = conns[0].Publish(reply, frame[:8])
		}
	})
	for _, i := range []int{1, 2} {
		node := nodes[i]
		node.SetHandler(func(from uint64, frame []byte) {
			if len(frame) < 8 {
				return // a late ping
			}
			var ack [16]byte
			copy(ack[:8], frame[:8])
			_ = node.Send(from, ack[:])
		})
	}

	client, err := Connect(ConnectConfig{URLs: []string{servers[0].ClientURL()}})
	if err != nil {
		b.Fatal(err)
	}
	defer client.Close()
	inbox := nats.NewInbox()
	var acked atomic.Int64
	window := make(chan struct{}, inFlight)
	replySub, err := client.Subscribe(inbox, func(*nats.Msg) {
		acked.Add(1)
		<-window
	})
	if err != nil {
		b.Fatal(err)
	}
	defer replySub.Unsubscribe()
	if err := client.Flush(); err != nil {
		b.Fatal(err)
	}
	payload := make([]byte, size)
	for i := range payload {
		payload[i] = byte(i)
	}
	publish := func() {
		window <- struct{}{}
		if err := client.PublishRequest("fabric.produce", inbox, payload); err != nil {
			b.Fatal(err)
		}
	}
	waitAcked := func(want int64) {
		deadline := time.Now().Add(30 * time.Second)
		for acked.Load() < want {
			if time.Now().After(deadline) {
				b.Fatalf("%d of %d requests answered after 30 s", acked.Load(), want)
			}
			time.Sleep(100 * time.Microsecond)
		}
	}
	// Warm the buffers and the heap with a few hundred MB.
	var sent int64
	for range (256 << 20) / size {
		publish()
		sent++
	}
	waitAcked(sent)

	b.SetBytes(int64(size))
	b.ReportAllocs()
	cpu := processCPU()
	b.ResetTimer()
	for range b.N {
		publish()
		sent++
	}
	waitAcked(sent)
	b.StopTimer()
	b.ReportMetric(float64(processCPU()-cpu)/float64(int64(b.N)*int64(size)), "cpu-ns/B")
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
