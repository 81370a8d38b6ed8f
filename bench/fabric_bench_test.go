//go:build unix

package bench

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// BenchmarkFabric measures the messaging of the nats-fabric baseline
// alone, without the harness's records, batching or ledger: a plain NATS
// client on server 1 publishes requests of the sub-benchmark's size, up to
// 8 in flight (the SDK keeps a few batches in flight per partition), to
// the fabric's leader node, which copies each to its two followers over
// the peer transport and answers at a majority (see StartFabric). So every
// payload byte crosses the client's socket once and the routes twice, as a
// batch of records does in raftmq.
//
// MB/s counts the client's payload; cpu-ns/B is the process's user and
// system CPU (client, three servers, three nodes) per payload byte. On the
// 2-core VM, 2026-11-23, load 1.3-2.2 from other work: 60 KiB 10.3, 256 KiB
// 10.7, 900 KiB 6.3-7.9 cpu-ns/B (128-254 MB/s): nats-server's copy of
// each large message out of its read buffer, the clients' copy into a new
// payload, the pipe and the loopback socket, and the zeroing and page
// faults of all that fresh memory. raftmq's batches carry about 110 bytes
// per 100-byte record, so the messaging alone costs about 0.7-0.9 us of
// CPU per record.
func BenchmarkFabric(b *testing.B) {
	for _, size := range []int{60 << 10, 256 << 10, 900 << 10} {
		b.Run(fmt.Sprintf("%dKiB", size>>10), func(b *testing.B) { benchmarkFabric(b, size) })
	}
}

func benchmarkFabric(b *testing.B, size int) {
	const inFlight = 8
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	target, err := StartFabric(ctx, FabricConfig{Workload: DefaultWorkload(KindProduce)})
	if err != nil {
		b.Fatal(err)
	}
	defer target.Close()
	client, err := nats.Connect(target.(*fabricTarget).servers[0].ClientURL())
	if err != nil {
		b.Fatal(err)
	}
	defer client.Close()
	inbox := nats.NewInbox()
	var acked atomic.Int64
	window := make(chan struct{}, inFlight)
	sub, err := client.Subscribe(inbox, func(*nats.Msg) {
		acked.Add(1)
		<-window
	})
	if err != nil {
		b.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := client.Flush(); err != nil {
		b.Fatal(err)
	}
	payload := make([]byte, size)
	for i := range payload {
		payload[i] = byte(i)
	}
	var sent int64
	publish := func() {
		window <- struct{}{}
		if err := client.PublishRequest(fabricSubject+"0", inbox, payload); err != nil {
			b.Fatal(err)
		}
		sent++
	}
	waitAcked := func() {
		deadline := time.Now().Add(30 * time.Second)
		for acked.Load() < sent {
			if time.Now().After(deadline) {
				b.Fatalf("%d of %d requests answered after 30 s", acked.Load(), sent)
			}
			time.Sleep(100 * time.Microsecond)
		}
	}
	// Warm the buffers and the heap with a few hundred MB.
	for range (256 << 20) / size {
		publish()
	}
	waitAcked()

	b.SetBytes(int64(size))
	b.ReportAllocs()
	cpu := processCPU()
	b.ResetTimer()
	for range b.N {
		publish()
	}
	waitAcked()
	b.StopTimer()
	b.ReportMetric(float64(processCPU()-cpu)/float64(int64(b.N)*int64(size)), "cpu-ns/B")
}
