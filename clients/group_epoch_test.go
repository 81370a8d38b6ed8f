package clients

import (
	"context"
	"encoding/json"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/raftmq/raftmq/protocol"
)

// TestGroupClaimsAgainAPartitionGrantedWithANewEpoch: the coordinator
// grants a partition the member keeps with a new epoch only after it freed
// it meanwhile, so another member may have claimed it and committed since.
// The member must not go on at its own position under the new epoch: it
// reports the partition lost and claims it again, which fences the other
// member at the leader and reads the group's committed offset. Before, it
// took the new epoch silently and never claimed it.
func TestGroupClaimsAgainAPartitionGrantedWithANewEpoch(t *testing.T) {
	const prefix = "groupepoch"
	fake := startFakeCluster(t)
	fake.serveQuietPartition(prefix)
	var mu sync.Mutex
	epoch := uint64(1)
	var claims []protocol.GroupPartition
	reply := func() protocol.HeartbeatReply {
		mu.Lock()
		defer mu.Unlock()
		return protocol.HeartbeatReply{Version: protocol.APIVersion, Assigned: []protocol.GroupPartition{{Topic: "t", Partition: 0, Epoch: epoch}},
			Revoke: []protocol.GroupPartition{}, HeartbeatIntervalMs: 50}
	}
	for _, op := range []string{protocol.AdminGroupJoin, protocol.AdminGroupHeartbeat} {
		fake.subscribe(protocol.SubjectAdmin(prefix, op), func(m *nats.Msg) { fake.respondJSON(m, reply()) })
	}
	fake.subscribe(protocol.SubjectAdmin(prefix, protocol.AdminGroupLeave), func(m *nats.Msg) {
		fake.respondJSON(m, protocol.DeleteGroupReply{Version: protocol.APIVersion})
	})
	fake.subscribe(protocol.SubjectBrokerCommitted(prefix, 1), func(m *nats.Msg) {
		var req protocol.OffsetFetchRequest
		_ = json.Unmarshal(m.Data, &req)
		mu.Lock()
		if req.Claim {
			claims = append(claims, req.Partitions...)
		}
		mu.Unlock()
		fake.respondJSON(m, protocol.OffsetFetchReply{Version: protocol.APIVersion, Partitions: []protocol.CommittedOffset{
			{Topic: "t", Partition: 0, Committed: true, Offset: 10, HighWatermark: 30}}})
	})
	ctx, client := connectUnderPrefix(t, fake, prefix)
	var events []string
	member, err := client.NewGroupConsumer(ctx, "g", []string{"t"}, WithAutoCommitInterval(0), WithCommitOnClose(false),
		WithOnAssigned(func(_ context.Context, ps []TopicPartition) {
			mu.Lock()
			defer mu.Unlock()
			events = append(events, "assigned "+ps[0].String())
		}),
		WithOnLost(func(_ context.Context, ps []TopicPartition) {
			mu.Lock()
			defer mu.Unlock()
			events = append(events, "lost "+ps[0].String())
		}))
	if err != nil {
		t.Fatal(err)
	}
	defer member.Close(ctx)
	claimed := func(e uint64) bool {
		mu.Lock()
		defer mu.Unlock()
		return slices.ContainsFunc(claims, func(gp protocol.GroupPartition) bool { return gp.Epoch == e })
	}
	waitUntil(t, "t/0 claimed at epoch 1", func() bool { return claimed(1) && len(member.Assigned()) == 1 })
	mu.Lock()
	epoch = 7
	mu.Unlock()
	deadline := time.Now().Add(3 * time.Second) // heartbeats every 50 ms
	for !claimed(7) {
		if time.Now().After(deadline) {
			mu.Lock()
			defer mu.Unlock()
			t.Fatalf("t/0 granted again at epoch 7 and not claimed at it in 3s (claims %v, events %v)", claims, events)
		}
		time.Sleep(10 * time.Millisecond)
	}
	waitUntil(t, "t/0 started again", func() bool { mu.Lock(); defer mu.Unlock(); return len(events) >= 3 })
	if owned := member.Assigned(); len(owned) != 1 {
		t.Fatalf("owns %v after the claim at epoch 7, want t/0", owned)
	}
	mu.Lock()
	defer mu.Unlock()
	if want := []string{"assigned t/0", "lost t/0", "assigned t/0"}; !slices.Equal(events, want) {
		t.Fatalf("callbacks %v, want %v", events, want)
	}
}
