package clients_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/raftmq/raftmq/clients"
)

// TestAcksLeaderUnsafeStillStoresInOrder: records acknowledged with the
// unsafe acks=leader setting get offsets in order and read back, like
// acks=quorum ones (on a healthy cluster, where nothing is lost).
func TestAcksLeaderUnsafeStillStoresInOrder(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	client := connectDev(ctx, t)
	topic := fmt.Sprintf("acks-leader-%d", time.Now().UnixNano())
	if _, err := client.CreateTopic(ctx, topic, clients.WithPartitions(1), clients.WithReplicas(3)); err != nil {
		t.Fatal(err)
	}
	producer, err := client.NewProducer(clients.WithAcks(clients.AcksLeaderUnsafe), clients.WithDefaultTopic(topic))
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Close(ctx)
	const count = 50
	for i := range count {
		results := producer.ProduceSync(ctx, &clients.Record{Value: fmt.Appendf(nil, "v%d", i)})
		if err := results.FirstErr(); err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
		if got := results[0].Record.Offset; got != uint64(i) {
			t.Fatalf("record %d acknowledged at offset %d", i, got)
		}
	}
	consumer, err := client.NewConsumer()
	if err != nil {
		t.Fatal(err)
	}
	defer consumer.Close()
	if err := consumer.Assign(ctx, topic, clients.Earliest(), 0); err != nil {
		t.Fatal(err)
	}
	for seen := 0; seen < count; {
		records, err := consumer.Poll(ctx)
		if err != nil {
			t.Fatalf("after %d records: %v", seen, err)
		}
		for _, r := range records {
			if want := fmt.Sprintf("v%d", seen); string(r.Value) != want || r.Offset != uint64(seen) {
				t.Fatalf("offset %d holds %q, want %q at %d", r.Offset, r.Value, want, seen)
			}
			seen++
		}
	}
}
