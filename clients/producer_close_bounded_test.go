package clients

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/raftmq/raftmq/protocol"
)

// TestCloseReturnsWhenItsContextEndsDuringAMetadataRefresh: Close waits
// at most until its context ends, then stops the producer. Here the
// record's batch is about to be retried after a metadata refresh that no
// broker answers (partitioned brokers), with a 10 s request timeout; Close
// with a 100 ms context must return about then, the record failing with
// ErrClosed. Before, Close waited for the partition producer, which waited
// out the whole request timeout of the refresh.
func TestCloseReturnsWhenItsContextEndsDuringAMetadataRefresh(t *testing.T) {
	const prefix = "closerefresh"
	fake := startFakeCluster(t)
	var metadataRequests atomic.Int32
	fake.subscribe(protocol.SubjectAdmin(prefix, protocol.AdminMetadata), func(m *nats.Msg) {
		if metadataRequests.Add(1) > 1 {
			return // the brokers stop answering
		}
		fake.respondJSON(m, protocol.MetadataReply{Version: 1, ControllerLeader: 1, Brokers: []protocol.BrokerInfo{{ID: 1, Alive: true}},
			Topics: []protocol.TopicInfo{{Name: "t", Replicas: 1, Partitions: []protocol.PartitionInfo{{Partition: 0, Leader: 1, Replicas: []uint64{1}}}}}})
	})
	produced := make(chan *nats.Msg, 4)
	fake.subscribe(protocol.SubjectBrokerProduce(prefix, 1), func(m *nats.Msg) { produced <- m })
	_, client := connectUnderPrefix(t, fake, prefix, WithRequestTimeout(10*time.Second), WithRetryBackoff(time.Millisecond, 10*time.Millisecond))
	producer, err := client.NewProducer(WithLinger(0))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	producer.Produce(testContext(t), &Record{Topic: "t", Value: []byte("one")}, func(_ *Record, err error) { done <- err })
	select {
	case m := <-produced:
		answerProduce(m, protocol.ProduceReply{Err: protocol.Errorf(protocol.CodeNotReady, "electing")})
	case <-time.After(5 * time.Second):
		t.Fatal("no produce request")
	}
	waitUntil(t, "the retry's metadata refresh", func() bool { return metadataRequests.Load() >= 2 })
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := producer.Close(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Close: %v, want its context's deadline", err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("Close with a 100 ms context took %v (request timeout 10 s)", took.Round(time.Millisecond))
	}
	if err := awaitOutcome(t, done, "the record"); !errors.Is(err, ErrClosed) {
		t.Fatalf("record unacknowledged at Close: %v, want ErrClosed", err)
	}
}
