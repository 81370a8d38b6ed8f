package broker

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/raftmq/raftmq/clients"
	"github.com/raftmq/raftmq/protocol"
	"github.com/raftmq/raftmq/raft"
)

// TestEvictedProducerKeepsProducingAfterNewTerm: an SDK producer writes a
// record; then maxProducersPerPartition other producer ids write one
// batch each, so the partition forgets the SDK producer; then the leader
// restarts (a new term). The SDK producer's next record, sequence 1, gets
// unknown_producer; the SDK starts a new epoch and the record, and the one
// after it, are written once each, in order, well within the delivery
// timeout. The leader's in-flight table is empty once every batch applied.
// Before, the batch got out_of_order_sequence, was resent unchanged until
// the delivery timeout and failed ("may or may not have been written")
// although it was not written; and the in-flight table held all 10,001
// producer ids until the term ended (found in review).
func TestEvictedProducerKeepsProducingAfterNewTerm(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	const topic = "evicted"
	cluster, client, r := startLeadingTopic(ctx, t, topic, func(c *Config) {
		fastTimings(c)
		c.producerKeepRecent = time.Millisecond // forgotten once others appended after it
	})

	sdk, err := clients.Connect(ctx, strings.Join(cluster.ClientURLs(), ","))
	if err != nil {
		t.Fatal(err)
	}
	defer sdk.Close()
	const deliveryTimeout = 10 * time.Second
	producer, err := sdk.NewProducer(clients.WithDeliveryTimeout(deliveryTimeout))
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Close(ctx)
	if err := producer.ProduceSync(ctx, &clients.Record{Topic: topic, Value: []byte("first")}).FirstErr(); err != nil {
		t.Fatalf("first record: %v", err)
	}
	// Acknowledged at commit; the producer state follows at apply.
	var records map[int64]*producerRecord
	waitFor(ctx, t, "the SDK producer alone in the partition's producer state", func() bool {
		records, _ = r.state.consumers.producerRecords()
		return len(records) == 1
	})
	var sdkID int64
	for id := range records {
		sdkID = id
	}

	const others = maxProducersPerPartition
	batches := make([][]byte, others)
	for i := range batches {
		batches[i] = buildIdempotentBatch(t, 1<<40+int64(i), 0, 0, "x")
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	var failed atomic.Value
	for range 16 {
		wg.Go(func() {
			c := &leaderClient{testClient: client, leader: 1, nodes: 1, acks: protocol.AcksApplied}
			for {
				i := next.Add(1) - 1
				if i >= others {
					return
				}
				if _, err := c.produce(ctx, topic, 0, batches[i]); err != nil {
					failed.Store(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err, _ := failed.Load().(error); err != nil {
		t.Fatalf("other producers: %v", err)
	}
	records, _ = r.state.consumers.producerRecords()
	if _, known := records[sdkID]; known {
		t.Fatalf("producer %d still remembered (%d producers): no eviction", sdkID, len(records))
	}
	inflight := func() int {
		p := r.state.consumers.producers
		p.mu.Lock()
		defer p.mu.Unlock()
		return len(p.inflight)
	}
	boundedCtx, boundedCancel := context.WithTimeout(ctx, 10*time.Second)
	defer boundedCancel()
	waitFor(boundedCtx, t, "the in-flight table to empty once every batch applied", func() bool { return inflight() == 0 })

	if err := cluster.StopBroker(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if err := cluster.StartBroker(ctx, 1); err != nil {
		t.Fatal(err)
	}
	waitFor(ctx, t, "the restarted replica to lead and apply its term", func() bool {
		r = localReplica(cluster.Broker(1), topic)
		if r == nil {
			return false
		}
		status := r.group.Status()
		return status.Role == raft.RoleLeader && r.state.consumers.producers.appliedTermAtLeast(status.Term)
	})

	start := time.Now()
	if err := producer.ProduceSync(ctx, &clients.Record{Topic: topic, Value: []byte("second")}).FirstErr(); err != nil {
		t.Fatalf("the evicted producer's next record failed after %v: %v", time.Since(start).Round(time.Millisecond), err)
	}
	if took := time.Since(start); took > deliveryTimeout/2 {
		t.Fatalf("the evicted producer's next record took %v (delivery timeout %v)", took, deliveryTimeout)
	}
	if err := producer.ProduceSync(ctx, &clients.Record{Topic: topic, Value: []byte("third")}).FirstErr(); err != nil {
		t.Fatalf("third record: %v", err)
	}
	reader := &leaderClient{testClient: client, leader: 1, nodes: 1}
	reply, err := reader.fetch(ctx, protocol.FetchRequest{Topic: topic, Partition: 0, Offset: others + 1, MaxBytes: 4096})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, record := range decodeFetched(t, reply.Batches) {
		if record.offset > others {
			got = append(got, record.value)
		}
	}
	if strings.Join(got, ",") != "second,third" {
		t.Fatalf("after the other producers' records the log holds %q, want second, third", got)
	}
}
