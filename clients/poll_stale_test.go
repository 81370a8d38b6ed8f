package clients

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestPollWaitsPastAResultItsPartitionDropped: a Poll whose one result
// comes from a fetcher that Unassign (or Seek) stops before Poll takes it
// in drops that result and goes on waiting, as documented (until records
// are available or ctx ends), rather than returning no records and no
// error while its ctx still runs.
func TestPollWaitsPastAResultItsPartitionDropped(t *testing.T) {
	f := startFakeCluster(t)
	f.createTopic("orders", 1)
	client := newTestClient(t, f)
	produceValues(t, client, "orders", 0, []string{"a"})
	consumer, err := client.NewConsumer(WithFetchMaxWait(10 * time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer consumer.Close()
	if err := consumer.Assign(testContext(t), "orders", Earliest()); err != nil {
		t.Fatal(err)
	}
	received := 0
	consumer.testAfterReceive = func() {
		received++
		if received == 1 {
			consumer.Unassign("orders") // between the receive and Poll's lock
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	records, err := consumer.Poll(ctx)
	if received != 1 {
		t.Fatalf("Poll received %d results, want 1", received)
	}
	if len(records) != 0 || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Poll returned %d records and %v with its ctx still running (%v); want it to wait and return %v",
			len(records), err, ctx.Err(), context.DeadlineExceeded)
	}
}

// TestPollWaitsPastResultsDroppedBeforeHandOut: a Poll whose results all
// go stale (their partition is unassigned) after it took them and before
// it handed any out goes on waiting, rather than returning no records and
// no error while its ctx still runs.
func TestPollWaitsPastResultsDroppedBeforeHandOut(t *testing.T) {
	f := startFakeCluster(t)
	f.createTopic("orders", 1)
	client := newTestClient(t, f)
	produceValues(t, client, "orders", 0, []string{"a"})
	consumer, err := client.NewConsumer(WithFetchMaxWait(10 * time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer consumer.Close()
	if err := consumer.Assign(testContext(t), "orders", Earliest()); err != nil {
		t.Fatal(err)
	}
	taken := 0
	consumer.testBeforeHandOut = func() {
		taken++
		if taken == 1 {
			consumer.Unassign("orders") // after Poll took the result, before it hands it out
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	records, err := consumer.Poll(ctx)
	if taken != 1 {
		t.Fatalf("Poll took results %d times, want 1", taken)
	}
	if len(records) != 0 || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Poll returned %d records and %v with its ctx still running (%v); want it to wait and return %v",
			len(records), err, ctx.Err(), context.DeadlineExceeded)
	}
}
