package clients

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/raftmq/raftmq/protocol"
)

// TestDeliveryTimeoutEndsABatchWaitingForItsRetry: a batch whose attempt
// failed with a retriable error fails with that error when its delivery
// timeout passes, although its backoff is not over. Before, it waited for
// the backoff, was sent again past its deadline and reported delivered.
func TestDeliveryTimeoutEndsABatchWaitingForItsRetry(t *testing.T) {
	f := startFakeCluster(t)
	f.createTopic("orders", 1)
	const backoff = 5 * time.Second
	producer := newWarmProducer(t, newTestClient(t, f, WithRetryBackoff(backoff, backoff)), WithDeliveryTimeout(200*time.Millisecond))
	f.failProduce(protocol.Errorf(protocol.CodeNotReady, "electing"))
	start := time.Now()
	err := producer.ProduceSync(testContext(t), &Record{Topic: "orders", Value: []byte("late")}).FirstErr()
	if took := time.Since(start); !errors.Is(err, protocol.CodeNotReady) || took >= backoff/2 {
		t.Fatalf("record's outcome %v after %v, want not_ready at its delivery timeout, before the retry (backoff %v)", err, took.Round(time.Millisecond), backoff)
	}
}

// TestDeliveryTimeoutEndsABatchBeforeItsFirstAttempt: a batch whose
// delivery timeout passed while it waited behind a full window
// (WithMaxInFlight) fails when its turn comes, unsent and unwritten, and
// the partition's next batch goes on in sequence. Before, it was sent past
// its deadline.
func TestDeliveryTimeoutEndsABatchBeforeItsFirstAttempt(t *testing.T) {
	f := startFakeCluster(t)
	f.createTopic("orders", 1)
	const deliveryTimeout = 200 * time.Millisecond
	producer := newWarmProducer(t, newTestClient(t, f), WithDeliveryTimeout(deliveryTimeout), WithMaxInFlight(1), WithLinger(0))
	arrived, release := f.holdProduce()
	inFlightDone, queuedDone := make(chan error, 1), make(chan error, 1)
	producer.Produce(testContext(t), &Record{Topic: "orders", Value: []byte("in flight")}, func(_ *Record, err error) { inFlightDone <- err })
	waitUntil(t, "the first record reaches the broker", func() bool { return arrived() == 1 })
	producer.Produce(testContext(t), &Record{Topic: "orders", Value: []byte("queued")}, func(_ *Record, err error) { queuedDone <- err })
	time.Sleep(2 * deliveryTimeout) // both deadlines pass
	release()
	if err := awaitOutcome(t, inFlightDone, "the record in flight"); err != nil {
		t.Fatalf("a batch in flight keeps the outcome of its attempt: %v", err)
	}
	if err := awaitOutcome(t, queuedDone, "the queued record"); !errors.Is(err, protocol.CodeTimeout) || !strings.Contains(err.Error(), "before the batch was sent") {
		t.Fatalf("queued record past its delivery timeout: %v, want a timeout before it was sent", err)
	}
	if err := producer.ProduceSync(testContext(t), &Record{Topic: "orders", Value: []byte("next")}).FirstErr(); err != nil {
		t.Fatalf("record after the expired one: %v", err)
	}
	if got, want := f.values("orders", 0), []string{"warm", "in flight", "next"}; !slices.Equal(got, want) {
		t.Fatalf("partition holds %q, want %q", got, want)
	}
}
