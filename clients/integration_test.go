package clients_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/raftmq/raftmq/clients"
)

// ack is where the cluster said a record landed.
type ack struct {
	partition uint32
	offset    uint64
}

// TestProduceThroughLeaderFailover stops the leader of a partition while a
// producer keeps sending, restarts it, and checks that every acknowledged
// record is stored at the offset its acknowledgement named.
func TestProduceThroughLeaderFailover(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	client := connectDev(ctx, t)
	topic := fmt.Sprintf("failover-%d", time.Now().UnixNano())
	if _, err := client.CreateTopic(ctx, topic, clients.WithPartitions(2), clients.WithReplicas(3)); err != nil {
		t.Fatal(err)
	}
	producer, err := client.NewProducer(clients.WithLinger(time.Millisecond), clients.WithBatchMaxBytes(4096))
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Close(ctx)

	var mu sync.Mutex
	acks := map[string]ack{}
	var failures []error
	next := 0
	produce := func(n int) {
		for range n {
			value := fmt.Sprintf("record-%05d", next)
			next++
			producer.Produce(ctx, &clients.Record{Topic: topic, Value: []byte(value)}, func(r *clients.Record, err error) {
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					failures = append(failures, err)
					return
				}
				acks[string(r.Value)] = ack{r.Partition, r.Offset}
			})
		}
	}
	flush := func() {
		if err := producer.Flush(ctx); err != nil {
			t.Fatal(err)
		}
	}

	produce(300)
	flush()
	info, err := client.DescribeTopic(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	leader := info.Partitions[0].Leader
	if leader == 0 {
		t.Fatal("partition 0 has no leader")
	}
	stopped := make(chan error, 1)
	go func() { stopped <- devCluster.StopBroker(ctx, leader) }()
	produce(300) // while the leader stops
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}
	produce(300) // without it
	flush()
	if err := devCluster.StartBroker(ctx, leader); err != nil {
		t.Fatal(err)
	}
	produce(300) // after its restart
	flush()

	mu.Lock()
	defer mu.Unlock()
	if len(failures) > 0 {
		t.Fatalf("%d records failed, first: %v", len(failures), failures[0])
	}
	if len(acks) != next {
		t.Fatalf("%d acknowledgements for %d records", len(acks), next)
	}
	stored := consumeAll(ctx, t, client, topic, info)
	for value, a := range acks {
		if got := stored[a]; got != value {
			t.Errorf("%s acknowledged at %d/%d, which holds %q", value, a.partition, a.offset, got)
		}
	}
}

// consumeAll reads every partition of a topic up to its high watermark.
func consumeAll(ctx context.Context, t *testing.T, client *clients.Client, topic string, info clients.TopicInfo) map[ack]string {
	t.Helper()
	consumer, err := client.NewConsumer()
	if err != nil {
		t.Fatal(err)
	}
	defer consumer.Close()
	remaining := 0
	for _, p := range info.Partitions {
		offsets, err := client.ListOffsets(ctx, topic, p.Partition, clients.Latest())
		if err != nil {
			t.Fatal(err)
		}
		remaining += int(offsets.HighWatermark)
	}
	if err := consumer.Assign(ctx, topic, clients.Earliest()); err != nil {
		t.Fatal(err)
	}
	stored := map[ack]string{}
	for remaining > 0 {
		records, err := consumer.Poll(ctx)
		if err != nil {
			t.Fatalf("poll with %d records to go: %v", remaining, err)
		}
		for _, r := range records {
			key := ack{r.Partition, r.Offset}
			if _, dup := stored[key]; dup {
				t.Errorf("offset %d/%d delivered twice", r.Partition, r.Offset)
			}
			stored[key] = string(r.Value)
		}
		remaining -= len(records)
	}
	return stored
}
