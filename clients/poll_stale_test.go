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
	// Between the receive and Poll's lock.
	pollPastUnassign(t, func(c *Consumer, hook func()) { c.testAfterReceive = hook })
}

// TestPollWaitsPastResultsDroppedBeforeHandOut: a Poll whose results all
// go stale (their partition is unassigned) after it took them and before
// it handed any out goes on waiting, rather than returning no records and
// no error while its ctx still runs.
func TestPollWaitsPastResultsDroppedBeforeHandOut(t *testing.T) {
	// After Poll took the result, before it hands it out.
	pollPastUnassign(t, func(c *Consumer, hook func()) { c.testBeforeHandOut = hook })
}

// pollPastUnassign assigns a consumer to a partition holding one record,
// installs (with install) a hook of Poll's that unassigns the partition the
// first time it runs, and checks that one Poll ran the hook once and then
// waited until its ctx ended, returning no records.
func pollPastUnassign(t *testing.T, install func(c *Consumer, hook func())) {
	t.Helper()
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
	ran := 0
	install(consumer, func() {
		ran++
		if ran == 1 {
			consumer.Unassign("orders")
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	records, err := consumer.Poll(ctx)
	if ran != 1 {
		t.Fatalf("Poll ran its hook %d times, want 1", ran)
	}
	if len(records) != 0 || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Poll returned %d records and %v with its ctx still running (%v); want it to wait and return %v",
			len(records), err, ctx.Err(), context.DeadlineExceeded)
	}
}
