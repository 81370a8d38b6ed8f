package broker

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/raftmq/raftmq/protocol"
)

func buildIdempotentBatch(t testing.TB, producerID int64, epoch int16, baseSequence int32, values ...string) []byte {
	t.Helper()
	var builder protocol.BatchBuilder
	builder.SetProducer(producerID, epoch, baseSequence)
	for i, v := range values {
		if err := builder.Add(protocol.Record{Timestamp: int64(1000 + i), Value: []byte(v)}); err != nil {
			t.Fatal(err)
		}
	}
	batch, err := builder.Build(protocol.CodecNone)
	if err != nil {
		t.Fatal(err)
	}
	return append([]byte(nil), batch...)
}

// TestIdempotentRetryAfterLeaderStopWritesOnce replays batches the old
// leader committed at the new leader: they are answered with their original
// offsets and the log holds each record once.
func TestIdempotentRetryAfterLeaderStopWritesOnce(t *testing.T) {
	cluster, client := startTestCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	client.createTopic("once", 1, 3)
	producer := &leaderClient{testClient: client, leader: 1, nodes: 3}
	const id = 77
	first := buildIdempotentBatch(t, id, 0, 0, "a0", "a1")
	second := buildIdempotentBatch(t, id, 0, 2, "b2")
	mustProduce := func(batch []byte, want uint64) {
		t.Helper()
		offset, err := producer.produce(ctx, "once", 0, batch)
		if err != nil || offset != want {
			t.Fatalf("produce: offset %d, %v; want offset %d", offset, err, want)
		}
	}
	mustProduce(first, 0)
	mustProduce(second, 2)
	mustProduce(first, 0) // a retry at the same leader

	leader := currentLeader(t, client, "once")
	if err := cluster.StopBroker(ctx, leader); err != nil {
		t.Fatalf("stop leader %d: %v", leader, err)
	}
	producer.leader = leader%3 + 1
	mustProduce(second, 2) // the new leader remembers what the old one applied
	mustProduce(first, 0)
	mustProduce(buildIdempotentBatch(t, id, 0, 3, "c3"), 3)

	// A gap is refused, retriably.
	gap := protocol.ProduceRequest{Topic: "once", Batch: buildIdempotentBatch(t, id, 0, 10, "x")}
	reply, err := client.produceTo(producer.leader, &gap)
	for attempt := 0; ctx.Err() == nil && (err != nil || reply.Err != nil &&
		(reply.Err.Code == protocol.CodeNotLeader || reply.Err.Code == protocol.CodeNotReady)); attempt++ {
		// Leadership moved again (a loaded machine): ask the new leader
		// (the stopped broker answers nothing: try the next).
		if err == nil && reply.Err.Leader != 0 {
			producer.leader = reply.Err.Leader
		} else {
			producer.leader = producer.leader%3 + 1
		}
		waitBackoff(ctx, attempt)
		reply, err = client.produceTo(producer.leader, &gap)
	}
	if err != nil || reply.Err == nil || reply.Err.Code != protocol.CodeOutOfOrderSequence || !reply.Err.Retriable() {
		t.Fatalf("batch after a gap: %+v, %v; want retriable out_of_order_sequence", reply, err)
	}
	// Five more batches push the first out of the remembered window.
	for i := range 5 {
		mustProduce(buildIdempotentBatch(t, id, 0, int32(4+i), fmt.Sprintf("d%d", 4+i)), uint64(4+i))
	}
	if _, err := producer.produce(ctx, "once", 0, first); !errors.Is(err, protocol.CodeDuplicateSequence) {
		t.Fatalf("retry older than the window: %v, want duplicate_sequence", err)
	}

	if err := cluster.StartBroker(ctx, leader); err != nil {
		t.Fatalf("restart broker %d: %v", leader, err)
	}
	want := []string{"a0", "a1", "b2", "c3", "d4", "d5", "d6", "d7", "d8"}
	var got []fetchedRecord
	for got = producer.readAll(ctx, t, "once", 0); len(got) < len(want) && ctx.Err() == nil; got = producer.readAll(ctx, t, "once", 0) {
		waitBackoff(ctx, 3)
	}
	if len(got) != len(want) {
		t.Fatalf("log holds %d records, want %d: %v", len(got), len(want), got)
	}
	for i, r := range got {
		if r.offset != uint64(i) || r.value != want[i] {
			t.Fatalf("record %d = %+v, want %q at offset %d (log %v)", i, r, want[i], i, got)
		}
	}
}

// TestNonIdempotentRetryIsWrittenAgain pins the contrast: a batch without a
// producer id is appended on every attempt.
func TestNonIdempotentRetryIsWrittenAgain(t *testing.T) {
	_, client := startTestCluster(t, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	client.createTopic("twice", 1, 1)
	producer := &leaderClient{testClient: client, leader: 1, nodes: 1}
	batch := buildBatch(t, "v")
	for want := range uint64(2) {
		if offset, err := producer.produce(ctx, "twice", 0, batch); err != nil || offset != want {
			t.Fatalf("attempt %d: offset %d, %v", want, offset, err)
		}
	}
}
