package clients

import (
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/raftmq/raftmq/protocol"
)

// TestGroupHeartbeatsContinueWhileAnAssignmentIsClaimed: claiming newly
// assigned partitions at their leaders (and the application's callbacks)
// can take longer than the session timeout on a loaded cluster. The member
// must keep heartbeating meanwhile: a member that went silent was expired,
// joined again, was assigned the partitions again and went silent again
// claiming them, round after round. The heartbeats sent during the claim
// list the partition being claimed (were it left out, the coordinator
// could move it to another member while this one starts consuming it), and
// the partition is owned once the claim is answered.
func TestGroupHeartbeatsContinueWhileAnAssignmentIsClaimed(t *testing.T) {
	const interval = 100 * time.Millisecond
	const prefix = "claimtest"
	fake := startFakeCluster(t)
	assignment := protocol.HeartbeatReply{Version: protocol.APIVersion, Assigned: []protocol.GroupPartition{{Topic: "t", Partition: 0, Epoch: 1}},
		Revoke: []protocol.GroupPartition{}, HeartbeatIntervalMs: interval.Milliseconds()}
	var mu sync.Mutex
	var claiming bool
	var duringClaim []protocol.HeartbeatRequest
	fake.serveGroupMember(prefix, assignment, func(req protocol.HeartbeatRequest) bool {
		mu.Lock()
		if claiming {
			duringClaim = append(duringClaim, req)
		}
		mu.Unlock()
		return true
	})
	// The leader holds the claim until released.
	release := make(chan struct{})
	fake.subscribe(protocol.SubjectBrokerCommitted(prefix, 1), func(m *nats.Msg) {
		mu.Lock()
		claiming = true
		mu.Unlock()
		go func() {
			<-release
			mu.Lock()
			claiming = false
			mu.Unlock()
			fake.respondJSON(m, protocol.OffsetFetchReply{Version: protocol.APIVersion,
				Partitions: []protocol.CommittedOffset{{Topic: "t", Partition: 0, Committed: true, Offset: 10, HighWatermark: 30}}})
		}()
	})
	fake.serveQuietPartition(prefix)
	ctx, client := connectUnderPrefix(t, fake, prefix, WithRequestTimeout(10*time.Second))
	member, err := client.NewGroupConsumer(ctx, "g", []string{"t"}, WithSessionTimeout(3*interval),
		WithAutoCommitInterval(0), WithCommitOnClose(false))
	if err != nil {
		t.Fatal(err)
	}
	defer member.Close(ctx)
	waitUntil := func(what string, cond func() bool) {
		t.Helper()
		for !cond() {
			select {
			case <-ctx.Done():
				t.Fatalf("waiting for %s", what)
			case <-time.After(5 * time.Millisecond):
			}
		}
	}
	// Five heartbeats while the claim is held: more than a session timeout
	// (three intervals) of them, with nothing owned yet.
	waitUntil("heartbeats during the claim", func() bool { mu.Lock(); defer mu.Unlock(); return len(duringClaim) >= 5 })
	if owned := member.Assigned(); len(owned) != 0 {
		t.Fatalf("owns %v before the claim was answered", owned)
	}
	close(release)
	waitUntil("t/0 owned", func() bool { return len(member.Assigned()) == 1 })
	mu.Lock()
	defer mu.Unlock()
	for i, req := range duringClaim {
		// The partition being claimed is listed: the coordinator must not
		// move it while the member may start consuming it.
		if len(req.Owned) != 1 || req.Owned[0] != (protocol.GroupPartition{Topic: "t", Partition: 0, Epoch: 1}) {
			t.Errorf("heartbeat %d during the claim lists %v as owned, want t/0 at epoch 1", i, req.Owned)
		}
		if i > 0 && req.Seq <= duringClaim[i-1].Seq {
			t.Errorf("heartbeat %d during the claim numbered %d after %d", i, req.Seq, duringClaim[i-1].Seq)
		}
	}
}
