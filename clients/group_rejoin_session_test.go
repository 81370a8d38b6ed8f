package clients

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/raftmq/raftmq/protocol"
)

// TestGroupRejoinCountsAsHearingTheCoordinator: a member that expired
// and joined again was just heard by the coordinator (its join), so a
// heartbeat lost right after the rejoin (a coordinator failover, say) is
// one failure well within the new session, not a reason to assume the
// session expired again. Here the member is cut off for longer than its
// session timeout (it loses t/0, rightly), is answered unknown_member,
// joins again and claims t/0 at epoch 2, and then its heartbeats go
// unanswered for 300 ms (a third of the session timeout). It must keep
// t/0.
func TestGroupRejoinCountsAsHearingTheCoordinator(t *testing.T) {
	const prefix = "grouprejoinsession"
	const sessionTimeout = time.Second
	fake := startFakeCluster(t)
	fake.serveQuietPartition(prefix)

	const (
		answering      = iota // epoch 1, answered
		cutOff                // no answer until cutOffUntil
		expired               // answered unknown_member; the join moves on
		quiet                 // after the rejoin: no answer until quietUntil
		answeringAgain        // epoch 2, answered
	)
	var mu sync.Mutex
	phase, epoch, answered := answering, uint64(1), 0
	var cutOffUntil, quietUntil time.Time
	var lostAfterRejoin []string
	assignment := func() protocol.HeartbeatReply {
		return protocol.HeartbeatReply{Version: protocol.APIVersion, Assigned: []protocol.GroupPartition{{Topic: "t", Partition: 0, Epoch: epoch}},
			Revoke: []protocol.GroupPartition{}, HeartbeatIntervalMs: 100}
	}
	fake.subscribe(protocol.SubjectAdmin(prefix, protocol.AdminGroupJoin), func(m *nats.Msg) {
		mu.Lock()
		if phase == expired {
			phase, epoch, quietUntil = quiet, 2, time.Now().Add(300*time.Millisecond)
		}
		reply := assignment()
		mu.Unlock()
		fake.respondJSON(m, reply)
	})
	fake.subscribe(protocol.SubjectAdmin(prefix, protocol.AdminGroupHeartbeat), func(m *nats.Msg) {
		var req protocol.HeartbeatRequest
		_ = json.Unmarshal(m.Data, &req)
		mu.Lock()
		defer mu.Unlock()
		now := time.Now()
		switch phase {
		case answering:
			if answered++; answered == 5 {
				phase, cutOffUntil = cutOff, now.Add(sessionTimeout+300*time.Millisecond)
			}
			fake.respondJSON(m, assignment())
		case cutOff:
			if now.After(cutOffUntil) {
				phase = expired
			}
		case expired:
			fake.respondJSON(m, protocol.HeartbeatReply{Version: protocol.APIVersion, Error: protocol.Errorf(protocol.CodeUnknownMember, "expired")})
		case quiet:
			if now.After(quietUntil) {
				phase, answered = answeringAgain, 0
			}
		case answeringAgain:
			answered++
			fake.respondJSON(m, assignment())
		}
	})
	fake.subscribe(protocol.SubjectAdmin(prefix, protocol.AdminGroupLeave), func(m *nats.Msg) {
		fake.respondJSON(m, protocol.DeleteGroupReply{Version: protocol.APIVersion})
	})
	fake.subscribe(protocol.SubjectBrokerCommitted(prefix, 1), func(m *nats.Msg) {
		fake.respondJSON(m, protocol.OffsetFetchReply{Version: protocol.APIVersion, Partitions: []protocol.CommittedOffset{
			{Topic: "t", Partition: 0, Committed: true, Offset: 10, HighWatermark: 30}}})
	})
	ctx, client := connectUnderPrefix(t, fake, prefix)
	member, err := client.NewGroupConsumer(ctx, "g", []string{"t"}, WithAutoCommitInterval(0), WithCommitOnClose(false),
		WithSessionTimeout(sessionTimeout),
		WithOnLost(func(_ context.Context, ps []TopicPartition) {
			mu.Lock()
			defer mu.Unlock()
			if epoch == 2 {
				lostAfterRejoin = append(lostAfterRejoin, fmt.Sprint(ps))
			}
		}))
	if err != nil {
		t.Fatal(err)
	}
	defer member.Close(ctx)
	// The member heartbeats every 100 ms: five answers after the quiet
	// spell take half a second; the whole script takes about two.
	waitUntil(t, "five heartbeats answered after the rejoin", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return phase == answeringAgain && answered >= 5
	})
	mu.Lock()
	defer mu.Unlock()
	if len(lostAfterRejoin) > 0 {
		t.Fatalf("after its rejoin (heard by the coordinator) and heartbeats unanswered for 300 ms of a %v session, the member reported %v lost", sessionTimeout, lostAfterRejoin)
	}
}
