package clients

import (
	"context"
	"slices"
	"testing"
	"time"
)

// TestFlushWaitsOnlyForRecordsProducedBeforeIt: Flush is called while
// records A1 and A2 are unacknowledged; during it another record, B, goes
// to a partition whose leader never answers (it is retried until its
// delivery timeout). Flush returns once A1 and A2 are acknowledged, as
// Kafka's flush does. Before, it waited for the producer's whole buffer
// to empty, B included, so under a steady load it never returned.
func TestFlushWaitsOnlyForRecordsProducedBeforeIt(t *testing.T) {
	f := startFakeCluster(t)
	f.createTopic("orders", 1)
	f.createTopic("other", 1)
	f.setLeader("other", 0, 9) // no broker 9: nobody answers
	spy := spyOnProduce(t, f)  // sees requests the fake holds
	client := newTestClient(t, f)
	producer, err := client.NewProducer(WithLinger(time.Hour), WithPartitioner(ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		_ = producer.Close(ctx) // B fails with ErrClosed
	}()
	if err := producer.ProduceSync(testContext(t), &Record{Topic: "orders", Value: []byte("warm")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	if _, err := producer.partitionCount(testContext(t), "other"); err != nil {
		t.Fatal(err)
	}
	_, release := f.holdProduce()
	completedBeforeFlush := make(chan error, 2)
	countOutcome := func(_ *Record, err error) { completedBeforeFlush <- err }
	producer.Produce(testContext(t), &Record{Topic: "orders", Value: []byte("A1")}, countOutcome) // sent at once: the partition is idle
	spy.headers(t, 2)                                                                             // warm, A1
	producer.Produce(testContext(t), &Record{Topic: "orders", Value: []byte("A2")}, countOutcome) // lingers
	flushed := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		flushed <- producer.Flush(ctx)
	}()
	spy.headers(t, 3) // Flush sent A2, so it has counted what it waits for
	producer.Produce(testContext(t), &Record{Topic: "other", Value: []byte("B")}, nil)
	release()
	if err := <-flushed; err != nil {
		t.Fatalf("Flush, A1 and A2 acknowledged and B produced during the call: %v", err)
	}
	if n := len(completedBeforeFlush); n != 2 {
		t.Fatalf("Flush returned with %d of the 2 records produced before it completed", n)
	}
}

// TestCloseWaitsForEveryRecordProduced: Close, unlike Flush, waits for
// every record, lingering ones included (no record joins after it).
func TestCloseWaitsForEveryRecordProduced(t *testing.T) {
	f := startFakeCluster(t)
	f.createTopic("orders", 1)
	client := newTestClient(t, f)
	producer, err := client.NewProducer(WithLinger(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	outcomes := make(chan error, 3)
	for _, value := range []string{"a", "b", "c"} {
		producer.Produce(testContext(t), &Record{Topic: "orders", Value: []byte(value)}, func(_ *Record, err error) { outcomes <- err })
	}
	if err := producer.Close(testContext(t)); err != nil {
		t.Fatal(err)
	}
	if len(outcomes) != 3 {
		t.Fatalf("Close returned with %d of 3 outcomes reported", len(outcomes))
	}
	for range 3 {
		if err := <-outcomes; err != nil {
			t.Fatal(err)
		}
	}
	if got := f.values("orders", 0); !slices.Equal(got, []string{"a", "b", "c"}) {
		t.Fatalf("partition holds %q", got)
	}
}
