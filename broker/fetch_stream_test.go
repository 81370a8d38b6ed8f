package broker

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/raftmq/raftmq/protocol"
)

// fetchStream sends req to broker with its own reply subject and collects
// the stream of replies until one ends it (protocol.FetchStreamContinues).
// Then it sends a one-reply request for an offset past the end through the
// same subscription and checks that its reply is the next message: no reply
// of the stream came after the one that ended it.
func (c *testClient) fetchStream(ctx context.Context, broker uint64, req protocol.FetchRequest) ([]protocol.FetchReply, error) {
	inbox := c.nc.NewInbox()
	sub, err := c.nc.SubscribeSync(inbox + ".*")
	if err != nil {
		return nil, err
	}
	defer sub.Unsubscribe()
	subject := protocol.SubjectBrokerFetch(c.prefix, broker)
	if err := c.nc.PublishRequest(subject, inbox+".stream", protocol.AppendFetchRequest(nil, &req)); err != nil {
		return nil, err
	}
	next := func(want string) (protocol.FetchReply, error) {
		msg, err := sub.NextMsgWithContext(ctx)
		if err != nil {
			return protocol.FetchReply{}, err
		}
		if msg.Subject != inbox+"."+want {
			return protocol.FetchReply{}, fmt.Errorf("reply on %s, want one to %q", msg.Subject, want)
		}
		return protocol.DecodeFetchReply(msg.Data)
	}
	var replies []protocol.FetchReply
	for {
		reply, err := next("stream")
		if err != nil {
			return replies, err
		}
		replies = append(replies, reply)
		if !protocol.FetchStreamContinues(&reply, len(replies), req.MaxReplies) {
			break
		}
	}
	end := protocol.FetchRequest{Topic: req.Topic, Partition: req.Partition, Offset: 1 << 40}
	if err := c.nc.PublishRequest(subject, inbox+".end", protocol.AppendFetchRequest(nil, &end)); err != nil {
		return replies, err
	}
	if _, err := next("end"); err != nil {
		return replies, fmt.Errorf("after the stream's last reply: %w", err)
	}
	return replies, nil
}

func TestFetchStreamRepliesUntilHighWatermark(t *testing.T) {
	_, client := startTestCluster(t, 1)
	client.createTopic("stream", 1, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c := &leaderClient{testClient: client, leader: 1, nodes: 1, acks: protocol.AcksQuorum}
	const batches, perBatch = 10, 50
	for b := range batches {
		values := make([]string, perBatch)
		for i := range values {
			values[i] = fmt.Sprintf("record-%04d", b*perBatch+i)
		}
		if _, err := c.produce(ctx, "stream", 0, buildBatch(t, values...)); err != nil {
			t.Fatal(err)
		}
	}
	// A reply holds one batch (at least one, whatever MaxBytes says).
	for _, tc := range []struct {
		offset      uint64
		maxReplies  uint8
		wantReplies int
	}{
		{0, 4, 4},   // the fourth reply is the last one asked for
		{420, 4, 2}, // the batches at 400 and 450: the second reaches the high watermark
		{130, 1, 1}, // one reply asked for
		{0, 0, 1},
	} {
		t.Run(fmt.Sprintf("from %d, %d replies", tc.offset, tc.maxReplies), func(t *testing.T) {
			replies, err := client.fetchStream(ctx, c.leader, protocol.FetchRequest{Topic: "stream", Offset: tc.offset, MaxBytes: 1, MaxReplies: tc.maxReplies})
			if err != nil {
				t.Fatal(err)
			}
			if len(replies) != tc.wantReplies {
				t.Fatalf("%d replies, want %d", len(replies), tc.wantReplies)
			}
			expected := tc.offset - tc.offset%perBatch // the batch holding the offset
			for i, reply := range replies {
				if reply.Err != nil {
					t.Fatalf("reply %d: %v", i, reply.Err)
				}
				records := decodeFetched(t, reply.Batches)
				for _, r := range records {
					if r.offset != expected || r.value != fmt.Sprintf("record-%04d", expected) {
						t.Fatalf("reply %d: record %+v, want offset %d", i, r, expected)
					}
					expected++
				}
				if reply.NextOffset != expected || reply.HighWatermark != batches*perBatch {
					t.Fatalf("reply %d: next offset %d (want %d), high watermark %d", i, reply.NextOffset, expected, reply.HighWatermark)
				}
			}
		})
	}
}

// The first reply of a stream long-polls as a single fetch does.
func TestFetchStreamFirstReplyLongPolls(t *testing.T) {
	_, client := startTestCluster(t, 1)
	client.createTopic("stream-poll", 1, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c := &leaderClient{testClient: client, leader: 1, nodes: 1, acks: protocol.AcksQuorum}
	if _, err := c.produce(ctx, "stream-poll", 0, buildBatch(t, "first")); err != nil {
		t.Fatal(err)
	}
	inbox := nats.NewInbox()
	sub, err := client.nc.SubscribeSync(inbox)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	req := protocol.FetchRequest{Topic: "stream-poll", Offset: 1, MaxWait: 30 * time.Second, MaxReplies: 4}
	if err := client.nc.PublishRequest(protocol.SubjectBrokerFetch(client.prefix, c.leader), inbox, protocol.AppendFetchRequest(nil, &req)); err != nil {
		t.Fatal(err)
	}
	if err := client.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	// Produced while the fetch waits (or before it arrives: either way the
	// reply holds the record).
	if _, err := c.produce(ctx, "stream-poll", 0, buildBatch(t, "second")); err != nil {
		t.Fatal(err)
	}
	msg, err := sub.NextMsgWithContext(ctx)
	if err != nil {
		t.Fatal(err)
	}
	reply, err := protocol.DecodeFetchReply(msg.Data)
	if err != nil || reply.Err != nil {
		t.Fatalf("reply %+v, %v", reply, err)
	}
	if records := decodeFetched(t, reply.Batches); len(records) != 1 || records[0].value != "second" || reply.NextOffset != 2 {
		t.Fatalf("records %+v, next offset %d", records, reply.NextOffset)
	}
	if protocol.FetchStreamContinues(&reply, 1, req.MaxReplies) {
		t.Fatal("a reply at the high watermark continues the stream")
	}
}
