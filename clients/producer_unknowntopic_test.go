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
