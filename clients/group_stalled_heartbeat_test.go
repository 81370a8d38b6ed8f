package clients

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/raftmq/raftmq/protocol"
)

// TestGroupRestartOfAStoppedPartitionKeepsHeartbeating: restarting a
// partition whose fetcher stopped on an error happens on the member's
// heartbeat goroutine, so it must not wait on the partition's leader.
// Here the leader stops answering after the claim (it died after its
// storage error, say). Before, the restart was a Seek, a list-offsets
// request retried until the request timeout (3 s here; 10 s, the session
// timeout, by default), and no heartbeat went out meanwhile: the
// coordinator would expire a working member and move all its partitions
// (found in review).
func TestGroupRestartOfAStoppedPartitionKeepsHeartbeating(t *testing.T) {
	const prefix = "groupstalledhb"
	const sessionTimeout = time.Second
	fake := startFakeCluster(t)
	fake.serveOnePartitionMetadata(prefix)
	assignment := protocol.HeartbeatReply{Version: protocol.APIVersion, Assigned: []protocol.GroupPartition{{Topic: "t", Partition: 0, Epoch: 1}},
		Revoke: []protocol.GroupPartition{}, HeartbeatIntervalMs: 100}
	var mu sync.Mutex
	var last time.Time
	var maxGap time.Duration
	fake.serveGroupMember(prefix, assignment, func(protocol.HeartbeatRequest) bool {
		mu.Lock()
		defer mu.Unlock()
		now := time.Now()
		if !last.IsZero() && now.Sub(last) > maxGap {
			maxGap = now.Sub(last)
		}
		last = now
		return true
	})
	fake.subscribe(protocol.SubjectBrokerCommitted(prefix, 1), func(m *nats.Msg) {
		fake.respondJSON(m, protocol.OffsetFetchReply{Version: protocol.APIVersion, Partitions: []protocol.CommittedOffset{
			{Topic: "t", Partition: 0, Committed: true, Offset: 10, HighWatermark: 100}}})
	})
	var listOffsets atomic.Int32
	fake.subscribe(protocol.SubjectBrokerOffsets(prefix, 1), func(m *nats.Msg) {
		if listOffsets.Add(1) == 1 { // the claim's start; the leader goes silent after
			_ = m.Respond(protocol.AppendListOffsetsReply(nil, &protocol.ListOffsetsReply{Offset: 10, HighWatermark: 100}))
		}
	})
	fake.subscribe(protocol.SubjectBrokerFetch(prefix, 1), func(m *nats.Msg) {
		_ = m.Respond(protocol.AppendFetchReply(nil, &protocol.FetchReply{HighWatermark: 100, NextOffset: 10,
			Err: protocol.Errorf(protocol.CodeStorage, "read failed")}))
	})
	ctx, client := connectUnderPrefix(t, fake, prefix, WithRequestTimeout(3*sessionTimeout), WithRetryBackoff(10*time.Millisecond, 50*time.Millisecond))
	member, err := client.NewGroupConsumer(ctx, "g", []string{"t"}, WithAutoCommitInterval(0), WithCommitOnClose(false), WithSessionTimeout(sessionTimeout))
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		closeCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = member.Close(closeCtx)
	}()
	// Poll until the storage error is reported (the partition is stalled).
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		pollCtx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		_, err := member.Poll(pollCtx)
		cancel()
		if errors.Is(err, protocol.CodeStorage) {
			break
		}
	}
	time.Sleep(2 * sessionTimeout) // rounds of restarts, each failing at the silent leader
	mu.Lock()
	gap := max(maxGap, time.Since(last))
	mu.Unlock()
	if gap >= sessionTimeout {
		t.Fatalf("no heartbeat for %v (session timeout %v, heartbeat interval 100ms, %d list-offsets requests): the restart held up the heartbeats", gap.Round(time.Millisecond), sessionTimeout, listOffsets.Load())
	}
}
