package clients

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/raftmq/raftmq/protocol"
)

// TestProducerLingersOnlyWhileABatchIsInFlight checks the linger rule of
// WithLinger: a partition with nothing in flight sends its first record at
// once (the linger here is an hour), records produced while that batch
// awaits its reply gather into one batch, and that batch leaves as soon as
// the reply arrives, without a Flush.
func TestProducerLingersOnlyWhileABatchIsInFlight(t *testing.T) {
	f := startFakeCluster(t)
	f.createTopic("orders", 1)
	client := newTestClient(t, f, WithRequestTimeout(time.Minute))
	producer, err := client.NewProducer(WithLinger(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Close(testContext(t))
	arrived, release := f.holdProduce()

	acked := make(chan error, 11)
	done := func(_ *Record, err error) { acked <- err }
	producer.Produce(testContext(t), &Record{Topic: "orders", Value: []byte("first")}, done)
	waitUntil(t, "the first record's batch reaches the broker without lingering", func() bool { return arrived() == 1 })

	for _, v := range numbered("later", 10) {
		producer.Produce(testContext(t), &Record{Topic: "orders", Value: []byte(v)}, done)
	}
	release()
	timeout := time.After(30 * time.Second)
	for range 11 {
		select {
		case err := <-acked:
			if err != nil {
				t.Fatal(err)
			}
		case <-timeout:
			t.Fatal("records produced while a batch was in flight were not sent when it completed")
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	batches := f.topics["orders"].partitions[0].batches
	if len(batches) != 2 {
		t.Fatalf("%d batches, want 2: the first record alone, then the 10 that lingered behind it", len(batches))
	}
	if h, err := protocol.ReadBatchHeader(batches[1]); err != nil || h.RecordCount != 10 {
		t.Errorf("second batch: header %+v, err %v; want 10 records", h, err)
	}
}

// waitUntil polls cond until it holds, failing the test after a generous
// bound.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestProduceWaitsForBufferedBytes checks WithMaxBufferedBytes: a record
// that does not fit beside the unacknowledged ones waits (here its context
// is already cancelled, so it fails at once), and a record larger than
// the bound goes once the buffer is empty.
func TestProduceWaitsForBufferedBytes(t *testing.T) {
	f := startFakeCluster(t)
	f.createTopic("orders", 1)
	client := newTestClient(t, f, WithRequestTimeout(time.Minute))
	producer, err := client.NewProducer(WithMaxBufferedBytes(250), WithLinger(0))
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Close(testContext(t))
	_, release := f.holdProduce()

	acked := make(chan error, 10)
	done := func(_ *Record, err error) { acked <- err }
	hundred := []byte(strings.Repeat("x", 100))
	for range 2 {
		producer.Produce(testContext(t), &Record{Topic: "orders", Value: hundred}, done)
	}
	cancelled, cancel := context.WithCancel(testContext(t))
	cancel()
	producer.Produce(cancelled, &Record{Topic: "orders", Key: []byte("k"), Value: hundred}, done)
	select {
	case err := <-acked:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("third 100-byte record beside 200 buffered bytes (bound 250): %v, want its context's error", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("third 100-byte record beside 200 buffered bytes (bound 250) was buffered, not refused")
	}
	release()
	if err := producer.Flush(testContext(t)); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := <-acked; err != nil {
			t.Fatal(err)
		}
	}
	large := []byte(strings.Repeat("y", 1000))
	if err := producer.ProduceSync(testContext(t), &Record{Topic: "orders", Value: large}).FirstErr(); err != nil {
		t.Fatalf("a record larger than the bound, alone in the buffer: %v", err)
	}
	if got := f.values("orders", 0); len(got) != 3 || got[2] != string(large) {
		t.Fatalf("partition holds %d values, want the two small records and the large one", len(got))
	}
}
