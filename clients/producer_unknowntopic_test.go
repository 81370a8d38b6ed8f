package clients

import (
	"errors"
	"testing"
	"time"

	"github.com/raftmq/raftmq/protocol"
)

// TestRecordsOfADeletedTopicFailAfterTheUnknownTopicWait: a record whose
// topic was deleted after the producer cached its metadata is retried for
// WithUnknownTopicWait (100 ms here), as the option promises for
// producing, and then fails with unknown_topic; so does the next one.
// Before, each was retried until its delivery timeout.
func TestRecordsOfADeletedTopicFailAfterTheUnknownTopicWait(t *testing.T) {
	f := startFakeCluster(t)
	f.createTopic("orders", 1)
	const deliveryTimeout = 10 * time.Second
	producer := newWarmProducer(t, newTestClient(t, f), WithDeliveryTimeout(deliveryTimeout))
	f.mu.Lock()
	delete(f.topics, "orders")
	f.mu.Unlock()
	for _, value := range []string{"a", "b"} {
		start := time.Now()
		err := producer.ProduceSync(testContext(t), &Record{Topic: "orders", Value: []byte(value)}).FirstErr()
		if took := time.Since(start); !errors.Is(err, protocol.CodeUnknownTopic) || took >= deliveryTimeout/2 {
			t.Fatalf("record %q: %v after %v, want unknown_topic after about the unknown-topic wait (100ms; delivery timeout %v)",
				value, err, took.Round(time.Millisecond), deliveryTimeout)
		}
	}
}

// TestTopicCreatedAgainWaitsAnewForTheUnknownTopicWait: once a run of
// unknown_topic answers has failed a partition's records, a later run,
// after a pause longer than any retry's, gets the whole unknown-topic wait
// again. A topic deleted and created again under its name, still
// spreading to the brokers, then costs a retry, not the record. Before,
// the run's start was kept until an acknowledgement, so the first
// unknown_topic answer to the new topic failed its record at once.
func TestTopicCreatedAgainWaitsAnewForTheUnknownTopicWait(t *testing.T) {
	f := startFakeCluster(t)
	f.createTopic("orders", 1)
	producer := newWarmProducer(t, newTestClient(t, f), WithDeliveryTimeout(10*time.Second))
	f.mu.Lock()
	delete(f.topics, "orders")
	f.mu.Unlock()
	if err := producer.ProduceSync(testContext(t), &Record{Topic: "orders", Value: []byte("a")}).FirstErr(); !errors.Is(err, protocol.CodeUnknownTopic) {
		t.Fatalf("record of the deleted topic: %v, want unknown_topic", err)
	}
	// Longer than the unknown-topic wait (100ms) and the longest backoff
	// (10ms) together.
	time.Sleep(300 * time.Millisecond)
	f.createTopic("orders", 1)
	f.mu.Lock()
	f.produceErrors = []*protocol.Error{protocol.Errorf(protocol.CodeUnknownTopic, "topic %q", "orders")}
	f.mu.Unlock()
	if err := producer.ProduceSync(testContext(t), &Record{Topic: "orders", Value: []byte("b")}).FirstErr(); err != nil {
		t.Fatalf("record of the topic created again, answered unknown_topic once: %v, want it written", err)
	}
}
