package clients

import (
	"context"
	"testing"
	"time"

	"github.com/raftmq/raftmq/protocol"
)

// TestCloseReportsAnAcknowledgementThatArrivedBeforeTheStop: batch 2's
// acknowledgement reaches the partition producer while it runs batch 1's
// callback (a slow one), and Close's context ends meanwhile. Batch 2 was
// acknowledged before the producer stopped, so it must report its
// acknowledgement, not ErrClosed (an application would write it again).
// Before, the stop and the queued reply raced, and the stop won about
// half the time; the scenario runs ten times.
func TestCloseReportsAnAcknowledgementThatArrivedBeforeTheStop(t *testing.T) {
	f := startFakeCluster(t)
	const prefix = "closequeued"
	partition := serveHandAnsweredPartition(f, prefix)
	_, client := connectUnderPrefix(t, f, prefix, WithRequestTimeout(10*time.Second))
	for round := range 10 {
		producer, err := client.NewProducer(WithLinger(0), WithPartitioner(ManualPartitioner()))
		if err != nil {
			t.Fatal(err)
		}
		entered, release := make(chan struct{}), make(chan struct{})
		firstDone, secondDone := make(chan error, 1), make(chan error, 1)
		producer.Produce(testContext(t), &Record{Topic: "t", Value: []byte("one")}, func(_ *Record, err error) {
			close(entered)
			<-release
			firstDone <- err
		})
		first := partition.next(t)
		second := &Record{Topic: "t", Value: []byte("two")}
		producer.Produce(testContext(t), second, func(_ *Record, err error) { secondDone <- err })
		secondRequest := partition.next(t)
		answerProduce(first, protocol.ProduceReply{BaseOffset: 0})
		<-entered // batch 1's callback holds the partition producer
		answerProduce(secondRequest, protocol.ProduceReply{BaseOffset: 1})
		pp := func() *partitionProducer {
			producer.mu.Lock()
			defer producer.mu.Unlock()
			return producer.partitions[topicPartition{"t", 0}]
		}()
		waitUntil(t, "batch 2's acknowledgement queued", func() bool {
			pp.mu.Lock()
			defer pp.mu.Unlock()
			return len(pp.replies) > 0
		})
		ended, cancel := context.WithCancel(context.Background())
		cancel()
		closed := make(chan error, 1)
		go func() { closed <- producer.Close(ended) }()
		select {
		case <-producer.stop:
		case <-time.After(5 * time.Second):
			t.Fatal("Close did not stop the producer")
		}
		close(release)
		if err := awaitOutcome(t, firstDone, "batch 1"); err != nil {
			t.Fatalf("round %d: batch 1: %v", round, err)
		}
		if err := awaitOutcome(t, secondDone, "batch 2"); err != nil || second.Offset != 1 {
			t.Fatalf("round %d: record acknowledged at offset 1 before the producer stopped: offset %d, %v", round, second.Offset, err)
		}
		_ = awaitOutcome(t, closed, "Close")
	}
}
