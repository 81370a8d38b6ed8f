package clients

import (
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
	requests := make(chan protocol.FetchRequest, 100)
	f.subscribe(protocol.SubjectBrokerFetch(protocol.DefaultSubjectPrefix, 1), func(m *nats.Msg) {
		if request, err := protocol.DecodeFetchRequest(m.Data); err == nil {
			requests <- request
		}
	})
	if err := f.conn.Flush(); err != nil {
		t.Fatal(err)
	}
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
