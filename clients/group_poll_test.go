package clients

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/raftmq/raftmq/protocol"
)

// serveGroupOfOnePartition plays, under prefix, a coordinator that assigns
// the member t/0 at epoch 1 and a leader that holds the group's committed
// offset 10 for it; the caller serves metadata, offsets and fetches.
func serveGroupOfOnePartition(fake *fakeCluster, prefix string) {
	assignment := protocol.HeartbeatReply{Version: protocol.APIVersion, Assigned: []protocol.GroupPartition{{Topic: "t", Partition: 0, Epoch: 1}},
		Revoke: []protocol.GroupPartition{}, HeartbeatIntervalMs: 100}
	fake.serveGroupMember(prefix, assignment, func(protocol.HeartbeatRequest) bool { return true })
	fake.subscribe(protocol.SubjectBrokerCommitted(prefix, 1), func(m *nats.Msg) {
		fake.respondJSON(m, protocol.OffsetFetchReply{Version: protocol.APIVersion, Partitions: []protocol.CommittedOffset{
			{Topic: "t", Partition: 0, Committed: true, Offset: 10, HighWatermark: 100}}})
	})
}

// oneRecordBatch returns a batch of one record stamped at offset, as a
// leader's fetch reply carries it.
func oneRecordBatch(offset uint64) []byte {
	var b protocol.BatchBuilder
	_ = b.Add(protocol.Record{Timestamp: time.Now().UnixMilli(), Value: []byte("v")})
	batch, _ := b.Build(protocol.CodecNone)
	protocol.StampBatch(batch, offset, time.Now().UnixMilli())
	return batch
}

// TestGroupResetsOutOfRangeOffsetToPolicy: when retention deletes the
// records at a member's fetch offset (the fate of a lagging consumer), the
// member goes on at the reset policy's offset, as Kafka's
// auto.offset.reset. It keeps owning the partition, so had its fetcher
// stopped, the partition would stall for good: the coordinator never moves
// it, and a GroupConsumer has no Seek.
func TestGroupResetsOutOfRangeOffsetToPolicy(t *testing.T) {
	const prefix = "groupreset"
	const logStart = 50 // retention moved the log start here after the claim
	fake := startFakeCluster(t)
	serveGroupOfOnePartition(fake, prefix)
	fake.serveOnePartitionMetadata(prefix)
	fake.subscribe(protocol.SubjectBrokerOffsets(prefix, 1), func(m *nats.Msg) {
		req, _ := protocol.DecodeListOffsetsRequest(m.Data)
		offset := uint64(100)
		if req.Timestamp == protocol.OffsetEarliest {
			offset = logStart
		}
		_ = m.Respond(protocol.AppendListOffsetsReply(nil, &protocol.ListOffsetsReply{Offset: offset, LogStartOffset: logStart, HighWatermark: 100}))
	})
	fake.subscribe(protocol.SubjectBrokerFetch(prefix, 1), func(m *nats.Msg) {
		req, _ := protocol.DecodeFetchRequest(m.Data)
		reply := protocol.FetchReply{HighWatermark: 100, LogStartOffset: logStart, NextOffset: req.Offset}
		if req.Offset < logStart || req.Offset >= 100 {
			reply.Err = &protocol.Error{Code: protocol.CodeOffsetOutOfRange, Low: logStart, High: 100}
		} else {
			reply.Batches, reply.NextOffset = oneRecordBatch(req.Offset), req.Offset+1
		}
		_ = m.Respond(protocol.AppendFetchReply(nil, &reply))
	})
	ctx, client := connectUnderPrefix(t, fake, prefix)
	member, err := client.NewGroupConsumer(ctx, "g", []string{"t"}, WithResetPolicy(Earliest()), WithAutoCommitInterval(0), WithCommitOnClose(false))
	if err != nil {
		t.Fatal(err)
	}
	defer member.Close(ctx)

	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		pollCtx, pollCancel := context.WithTimeout(ctx, 200*time.Millisecond)
		records, err := member.Poll(pollCtx)
		pollCancel()
		if err != nil && !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Poll: %v", err)
		}
		if len(records) > 0 {
			if records[0].Offset != logStart {
				t.Fatalf("went on at offset %d, want the log start %d (reset policy Earliest)", records[0].Offset, logStart)
			}
			return
		}
	}
	t.Fatalf("no record for 3s after the log start moved past the fetch offset (assigned: %v)", member.Assigned())
}

// TestGroupCloseWakesPendingPoll: a Poll waiting for records returns
// ErrClosed when another goroutine closes the member.
func TestGroupCloseWakesPendingPoll(t *testing.T) {
	const prefix = "groupclose"
	fake := startFakeCluster(t)
	serveGroupOfOnePartition(fake, prefix)
	fake.serveQuietPartition(prefix) // fetches go unanswered
	ctx, client := connectUnderPrefix(t, fake, prefix)
	member, err := client.NewGroupConsumer(ctx, "g", []string{"t"}, WithAutoCommitInterval(0), WithCommitOnClose(false))
	if err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "t/0 is assigned", func() bool { return len(member.Assigned()) == 1 })
	polled := make(chan error, 1)
	go func() {
		_, err := member.Poll(context.Background())
		polled <- err
	}()
	time.Sleep(100 * time.Millisecond) // Poll is waiting
	if err := member.Close(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-polled:
		if !errors.Is(err, ErrClosed) {
			t.Fatalf("Poll pending at Close returned %v, want ErrClosed", err)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("Poll still waiting 3s after Close")
	}
}
