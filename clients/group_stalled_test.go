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

// TestGroupRestartsAPartitionWhoseFetcherStopped: a fetch that fails with a
// non-retriable error (here the leader's storage_error) stops the
// partition's fetcher, and Poll reports it. A GroupConsumer has no Seek and
// keeps owning the partition, so before, no one read it again until the
// group rebalanced. Now the member starts the fetcher again at its
// position on its next heartbeat round, and Poll goes on with the records.
func TestGroupRestartsAPartitionWhoseFetcherStopped(t *testing.T) {
	const prefix = "groupstalled"
	fake := startFakeCluster(t)
	serveGroupOfOnePartition(fake, prefix) // t/0, committed offset 10
	fake.serveOnePartitionMetadata(prefix)
	fake.subscribe(protocol.SubjectBrokerOffsets(prefix, 1), func(m *nats.Msg) {
		_ = m.Respond(protocol.AppendListOffsetsReply(nil, &protocol.ListOffsetsReply{Offset: 100, HighWatermark: 100}))
	})
	var fetches atomic.Int32
	fake.subscribe(protocol.SubjectBrokerFetch(prefix, 1), func(m *nats.Msg) {
		req, _ := protocol.DecodeFetchRequest(m.Data)
		reply := protocol.FetchReply{HighWatermark: 100, NextOffset: req.Offset}
		if fetches.Add(1) == 1 {
			reply.Err = protocol.Errorf(protocol.CodeStorage, "read failed")
		} else {
			reply.Batches, reply.NextOffset = oneRecordBatch(req.Offset), req.Offset+1
		}
		_ = m.Respond(protocol.AppendFetchReply(nil, &reply))
	})
	ctx, client := connectUnderPrefix(t, fake, prefix)
	member, err := client.NewGroupConsumer(ctx, "g", []string{"t"}, WithAutoCommitInterval(0), WithCommitOnClose(false))
	if err != nil {
		t.Fatal(err)
	}
	defer member.Close(ctx)

	reported := false
	deadline := time.Now().Add(3 * time.Second) // the heartbeat interval is 100 ms
	for time.Now().Before(deadline) {
		pollCtx, pollCancel := context.WithTimeout(ctx, 200*time.Millisecond)
		records, err := member.Poll(pollCtx)
		pollCancel()
		var partitionErr *PartitionError
		switch {
		case errors.As(err, &partitionErr):
			if !errors.Is(err, protocol.CodeStorage) {
				t.Fatalf("Poll: %v, want the fetch's storage_error", err)
			}
			reported = true
		case err != nil && !errors.Is(err, context.DeadlineExceeded):
			t.Fatalf("Poll: %v", err)
		}
		if len(records) > 0 {
			if !reported {
				t.Fatal("records before the failed fetch was reported")
			}
			if records[0].Offset != 10 {
				t.Fatalf("went on at offset %d, want 10 (the committed offset; nothing was returned before)", records[0].Offset)
			}
			return
		}
	}
	t.Fatalf("no record for 3s after the fetch failed (reported by Poll: %v, fetches: %d, assigned: %v)", reported, fetches.Load(), member.Assigned())
}
