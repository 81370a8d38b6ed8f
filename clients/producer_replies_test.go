package clients

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/raftmq/raftmq/protocol"
)

// TestSlowCallbackDoesNotHoldUpOtherProducersReplies: one partition
// producer's run is held in a slow callback while more replies of its
// attempts arrive than WithMaxInFlight: those of the batches abandoned
// after a batch failed for good (they left the window with their attempts
// on their way) and those of the new epoch's batches. Another producer of
// the client still gets its acknowledgement meanwhile. Before, the
// client's one reply-delivery goroutine blocked on the busy partition's
// full reply channel, so every other partition and producer of the
// client waited for the slow callback.
func TestSlowCallbackDoesNotHoldUpOtherProducersReplies(t *testing.T) {
	f := startFakeCluster(t)
	const prefix = "slowcallback"
	partition := serveHandAnsweredPartition(f, prefix)
	_, client := connectUnderPrefix(t, f, prefix, WithRequestTimeout(10*time.Second))
	newProducer := func() *Producer {
		producer, err := client.NewProducer(WithLinger(0), WithPartitioner(ManualPartitioner()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = producer.Close(testContext(t)) })
		return producer
	}
	busy, other := newProducer(), newProducer()
	release := make(chan struct{})
	releaseOnce := sync.OnceFunc(func() { close(release) })
	t.Cleanup(releaseOnce) // before the producers close

	// produce sends one record of busy as a batch of its own and returns
	// its request, which the broker holds until answered.
	produce := func(value string, done ProduceCallback) *nats.Msg {
		busy.Produce(testContext(t), &Record{Topic: "t", Value: []byte(value)}, done)
		return partition.next(t)
	}
	ignore := func(*Record, error) {}
	var abandoned []*nats.Msg
	refused := produce("refused", ignore)
	for i := range maxIdempotentInFlight - 1 {
		abandoned = append(abandoned, produce(fmt.Sprintf("abandoned-%d", i), ignore))
	}
	answerProduce(refused, protocol.ProduceReply{Err: protocol.Errorf(protocol.CodeRecordTooLarge, "too large")})
	inCallback := make(chan struct{})
	slow := produce("slow", func(*Record, error) {
		close(inCallback)
		<-release
	})
	var after []*nats.Msg
	for i := range maxIdempotentInFlight - 1 {
		after = append(after, produce(fmt.Sprintf("after-%d", i), ignore))
	}
	answerProduce(slow, protocol.ProduceReply{BaseOffset: 0})
	select {
	case <-inCallback:
	case <-time.After(5 * time.Second):
		t.Fatal("the slow callback did not start")
	}
	// 2*maxIdempotentInFlight-2 replies for the busy partition, while its
	// run waits for the callback.
	for i, request := range append(abandoned, after...) {
		answerProduce(request, protocol.ProduceReply{BaseOffset: uint64(1 + i)})
	}

	otherDone := make(chan error, 1)
	other.Produce(testContext(t), &Record{Topic: "t", Value: []byte("other")}, func(_ *Record, err error) { otherDone <- err })
	answerProduce(partition.next(t), protocol.ProduceReply{BaseOffset: 100})
	if err := awaitOutcome(t, otherDone, "the other producer's record while a callback of the first is slow"); err != nil {
		t.Fatal(err)
	}
	releaseOnce()
}
