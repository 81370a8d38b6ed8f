package clients

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/raftmq/raftmq/protocol"
)

// TestConsumerStreamsFetches checks that a fetch request asks for a stream
// of replies and that the next request leaves from where the stream's last
// reply ended.
func TestConsumerStreamsFetches(t *testing.T) {
	f := startFakeCluster(t)
	f.createTopic("orders", 1)
	client := newTestClient(t, f)
	value := strings.Repeat("x", 100)
	for range 4 { // more than two replies of about 1 KiB to 3 KiB can hold
		produceValues(t, client, "orders", 0, slices.Repeat([]string{value}, 20))
	}
	requests := f.watchFetches(t)
	// One batch per reply, two replies per request: the first request
	// brings two batches, not all of them.
	consumer, err := client.NewConsumer(WithFetchMaxBytes(1024), WithFetchReplies(2))
	if err != nil {
		t.Fatal(err)
	}
	defer consumer.Close()
	ctx := testContext(t)
	if err := consumer.Assign(ctx, "orders", Earliest()); err != nil {
		t.Fatal(err)
	}
	// Nobody polls: the fetcher holds the stream's two replies and asks for
	// nothing more until Poll takes them.
	if got := pollValues(t, consumer, 80)[0]; len(got) != 80 {
		t.Errorf("%d records, want 80", len(got))
	}
	var seen []protocol.FetchRequest
	for len(seen) < 2 {
		select {
		case request := <-requests:
			seen = append(seen, request)
		case <-ctx.Done():
			t.Fatalf("fetches requested: %+v, want 2", seen)
		}
	}
	f.mu.Lock()
	var ends []uint64 // offsets after each stored batch
	for _, batch := range f.topics["orders"].partitions[0].batches {
		h, _ := protocol.ReadBatchHeader(batch)
		ends = append(ends, h.LastOffset()+1)
	}
	f.mu.Unlock()
	// The second request starts where the first one's second reply ended:
	// at the end of a batch, past the first reply's, before the last.
	if seen[0].Offset != 0 || seen[0].MaxReplies != 2 || seen[1].MaxReplies != 2 ||
		!slices.Contains(ends, seen[1].Offset) || seen[1].Offset <= ends[0] || seen[1].Offset >= 80 {
		t.Fatalf("fetches %+v; want 2 replies from 0, then 2 from the end of the second reply (batches end at %v)", seen, ends)
	}
}

// TestFetchStreamDropsRepliesToOtherRequests sends replies to a request the
// fetcher gave up on, and to no request at all, into its inbox: the
// fetcher drops them and goes on with the current request's replies.
func TestFetchStreamDropsRepliesToOtherRequests(t *testing.T) {
	f := startFakeCluster(t)
	f.createTopic("orders", 1)
	client := newTestClient(t, f)
	produceValues(t, client, "orders", 0, numbered("v", 5))
	stream, err := newFetchStream(client, topicPartition{"orders", 0}, consumerConfig{fetchMaxBytes: 1 << 20, fetchReplies: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer stream.close()
	ctx := testContext(t)
	stale := protocol.AppendFetchReply(nil, &protocol.FetchReply{Err: &protocol.Error{Code: protocol.CodeUnknownTopic}})
	for _, subject := range []string{stream.inbox + "0", stream.inbox + "x", stream.inbox + "7"} {
		if err := f.conn.Publish(subject, stale); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.conn.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := stream.send(ctx, 2); err != nil { // request 1
		t.Fatal(err)
	}
	for {
		select {
		case msg := <-stream.replies:
			reply, more, ok, err := stream.receive(msg)
			if !ok {
				continue // one of the stale ones
			}
			if err != nil || more {
				t.Fatalf("reply %+v, more %v, %v", reply, more, err)
			}
			if reply.NextOffset != 5 || reply.HighWatermark != 5 || len(reply.Batches) == 0 {
				t.Fatalf("reply %+v", reply)
			}
			return
		case <-stream.expired:
			t.Fatal("no reply in time")
		case <-ctx.Done():
			t.Fatal(ctx.Err())
		}
	}
}

// TestConsumerFetchesAgainWhenAReplyUnderstatesItsEnd checks the request
// sent before a reply is verified: it starts at the reply's next offset,
// and when the reply's batches end later than that, the fetcher asks
// again from their end; no record comes twice and none is missed.
func TestConsumerFetchesAgainWhenAReplyUnderstatesItsEnd(t *testing.T) {
	const prefix = "understated"
	f := startFakeCluster(t)
	f.serveQuietPartition(prefix) // list-offsets: offset 10, high watermark 30
	requests := make(chan uint64, 100)
	f.subscribe(protocol.SubjectBrokerFetch(prefix, 1), func(m *nats.Msg) {
		request, err := protocol.DecodeFetchRequest(m.Data)
		if err != nil {
			t.Errorf("fetch request: %v", err)
			return
		}
		requests <- request.Offset
		if request.Offset >= 30 {
			return // nothing more: left unanswered
		}
		// The batch of ten holding the offset; the first reply says it
		// ends at 15.
		base := request.Offset - request.Offset%10
		reply := protocol.FetchReply{HighWatermark: 30, NextOffset: base + 10, Batches: appendStampedBatch(t, nil, base, 10)}
		if request.Offset == 10 {
			reply.NextOffset = 15
		}
		_ = m.Respond(protocol.AppendFetchReply(nil, &reply))
	})
	client := newTestClient(t, f, WithSubjectPrefix(prefix))
	consumer, err := client.NewConsumer()
	if err != nil {
		t.Fatal(err)
	}
	defer consumer.Close()
	if err := consumer.Assign(testContext(t), "t", Earliest(), 0); err != nil {
		t.Fatal(err)
	}
	var want []string
	for offset := 10; offset < 30; offset++ {
		want = append(want, fmt.Sprintf("value-%04d", offset))
	}
	if got := pollValues(t, consumer, 20)[0]; !slices.Equal(got, want) {
		t.Fatalf("records %v, want %v", got, want)
	}
	ctx := testContext(t)
	var offsets []uint64
	for len(offsets) < 3 { // three were sent to get the records above
		select {
		case offset := <-requests:
			offsets = append(offsets, offset)
		case <-ctx.Done():
			t.Fatalf("fetches at %v, want 3", offsets)
		}
	}
	if !slices.Equal(offsets, []uint64{10, 15, 20}) {
		t.Fatalf("fetches at %v, want 10, then 15 (the reply's next offset), then 20 (where its batch ends)", offsets)
	}
}
