package clients

import (
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/raftmq/raftmq/protocol"
)

// TestGroupCloseKeepsHeartbeatingWhileItCommits: Close commits the
// member's positions before it leaves; a commit slower than the session
// timeout (a partition leader election under way) must not get the member
// expired meanwhile, its partitions moved and its commit fenced by their
// next owner's claim. Here the leader answers the commit after 1.5 session
// timeouts; the coordinator must keep hearing the member. Before, Close
// stopped the heartbeats first, and none went out while it committed.
func TestGroupCloseKeepsHeartbeatingWhileItCommits(t *testing.T) {
	const prefix = "groupcloseheartbeat"
	const sessionTimeout = time.Second
	fake := startFakeCluster(t)
	fake.serveQuietPartition(prefix)
	assignment := protocol.HeartbeatReply{Version: protocol.APIVersion, Assigned: []protocol.GroupPartition{{Topic: "t", Partition: 0, Epoch: 1}},
		Revoke: []protocol.GroupPartition{}, HeartbeatIntervalMs: 100}
	var mu sync.Mutex
	var heartbeats []time.Time
	fake.serveGroupMember(prefix, assignment, func(protocol.HeartbeatRequest) bool {
		mu.Lock()
		defer mu.Unlock()
		heartbeats = append(heartbeats, time.Now())
		return true
	})
	fake.subscribe(protocol.SubjectBrokerCommitted(prefix, 1), func(m *nats.Msg) {
		// No committed offset: the member commits its reset position.
		fake.respondJSON(m, protocol.OffsetFetchReply{Version: protocol.APIVersion, Partitions: []protocol.CommittedOffset{
			{Topic: "t", Partition: 0, LogStartOffset: 10, HighWatermark: 30}}})
	})
	var commitArrived, commitAnswered time.Time
	fake.subscribe(protocol.SubjectBrokerCommit(prefix, 1), func(m *nats.Msg) {
		var req protocol.OffsetCommitRequest
		_ = json.Unmarshal(m.Data, &req)
		mu.Lock()
		commitArrived = time.Now()
		mu.Unlock()
		time.AfterFunc(sessionTimeout*3/2, func() { // a leader election
			mu.Lock()
			commitAnswered = time.Now()
			mu.Unlock()
			reply := protocol.OffsetCommitReply{Version: protocol.APIVersion}
			for _, o := range req.Offsets {
				reply.Results = append(reply.Results, protocol.PartitionResult{Topic: o.Topic, Partition: o.Partition})
			}
			fake.respondJSON(m, reply)
		})
	})
	ctx, client := connectUnderPrefix(t, fake, prefix, WithRequestTimeout(5*time.Second))
	member, err := client.NewGroupConsumer(ctx, "g", []string{"t"}, WithAutoCommitInterval(0), WithSessionTimeout(sessionTimeout))
	if err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "t/0 assigned", func() bool { return len(member.Assigned()) == 1 })
	if err := member.Close(ctx); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if commitArrived.IsZero() || commitAnswered.IsZero() {
		t.Fatal("Close committed nothing")
	}
	last, maxGap := commitArrived, time.Duration(0)
	for _, at := range append(heartbeats, commitAnswered) {
		if at.After(commitArrived) && !at.After(commitAnswered) {
			maxGap, last = max(maxGap, at.Sub(last)), at
		}
	}
	if maxGap >= sessionTimeout {
		t.Fatalf("the coordinator heard nothing from the member for %v while Close committed (session timeout %v, heartbeat interval 100ms)",
			maxGap.Round(time.Millisecond), sessionTimeout)
	}
}
