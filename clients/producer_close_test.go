package clients

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/raftmq/raftmq/protocol"
)

// TestCloseReportsAcknowledgedRecordsWaitingBehindAnEarlierOne: batch 2
// is acknowledged while batch 1, sent before it, still waits for its
// outcome (its retry is unanswered), so batch 2's callback waits for
// batch 1's. When Close's context ends, only batch 1 is unacknowledged:
// it fails with ErrClosed and batch 2 reports its acknowledgement. Before,
// Close reported batch 2 as ErrClosed too.
func TestCloseReportsAcknowledgedRecordsWaitingBehindAnEarlierOne(t *testing.T) {
	f := startFakeCluster(t)
	const prefix = "closeack"
	partition := serveHandAnsweredPartition(f, prefix)
	_, client := connectUnderPrefix(t, f, prefix, WithRequestTimeout(10*time.Second))
	producer, err := client.NewProducer(WithLinger(0), WithPartitioner(ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	firstDone, secondDone := make(chan error, 1), make(chan error, 1)
	producer.Produce(testContext(t), &Record{Topic: "t", Value: []byte("one")}, func(_ *Record, err error) { firstDone <- err })
	first := partition.next(t)
	second := &Record{Topic: "t", Value: []byte("two")}
	producer.Produce(testContext(t), second, func(_ *Record, err error) { secondDone <- err })
	answerProduce(partition.next(t), protocol.ProduceReply{BaseOffset: 1})
	// Replies reach the partition producer in the order they were sent:
	// once batch 1 is retried, batch 2's acknowledgement was handled.
	answerProduce(first, protocol.ProduceReply{Err: protocol.Errorf(protocol.CodeNotReady, "electing")})
	_ = partition.next(t) // batch 1's retry, left unanswered
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := producer.Close(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Close: %v, want the context's deadline", err)
	}
	if err := awaitOutcome(t, firstDone, "batch 1"); !errors.Is(err, ErrClosed) {
		t.Fatalf("unacknowledged record: %v, want ErrClosed", err)
	}
	if err := awaitOutcome(t, secondDone, "batch 2"); err != nil || second.Offset != 1 {
		t.Fatalf("record the broker acknowledged at offset 1: offset %d, %v", second.Offset, err)
	}
}

// TestASecondCloseWaitsForTheFirst: a Close called while another Close
// waits for the last record's acknowledgement returns once that Close has
// (or its own context ends), not at once: code that closes from two places
// (a deferred Close and a shutdown hook) must not go on as if every record
// had its outcome. Before, the second Close returned nil at once.
func TestASecondCloseWaitsForTheFirst(t *testing.T) {
	f := startFakeCluster(t)
	const prefix = "closetwice"
	partition := serveHandAnsweredPartition(f, prefix)
	_, client := connectUnderPrefix(t, f, prefix, WithRequestTimeout(10*time.Second))
	producer, err := client.NewProducer(WithLinger(0), WithPartitioner(ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	producer.Produce(testContext(t), &Record{Topic: "t", Value: []byte("one")}, func(_ *Record, err error) { done <- err })
	request := partition.next(t) // unanswered for now
	firstClosed := make(chan error, 1)
	go func() { firstClosed <- producer.Close(testContext(t)) }()
	waitUntil(t, "the first Close to begin", func() bool {
		producer.mu.Lock()
		defer producer.mu.Unlock()
		return producer.closed
	})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := producer.Close(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a second Close while the record is unacknowledged: %v, want its context's deadline", err)
	}
	answerProduce(request, protocol.ProduceReply{BaseOffset: 0})
	if err := awaitOutcome(t, done, "the record"); err != nil {
		t.Fatal(err)
	}
	if err := awaitOutcome(t, firstClosed, "the first Close"); err != nil {
		t.Fatal(err)
	}
	if err := producer.Close(context.Background()); err != nil {
		t.Fatalf("a Close after the first returned: %v", err)
	}
}
