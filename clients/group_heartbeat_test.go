package clients

import (
	"testing"
	"time"

	"github.com/raftmq/raftmq/protocol"
)

// TestGroupHeartbeatLostInFailoverIsResentWithinTheSession: a coordinator
// that stops drops the requests it had not read yet, so a heartbeat can go
// unanswered. The member must send the next one soon enough that the new
// coordinator hears from it within the session timeout (three heartbeat
// intervals), not after waiting three intervals for the lost answer and
// then one more.
func TestGroupHeartbeatLostInFailoverIsResentWithinTheSession(t *testing.T) {
	const interval = 300 * time.Millisecond
	const prefix = "hbtest"
	fake := startFakeCluster(t)
	arrivals := make(chan time.Time, 64)
	heartbeats := 0
	assignment := protocol.HeartbeatReply{Version: protocol.APIVersion, Assigned: []protocol.GroupPartition{},
		Revoke: []protocol.GroupPartition{}, HeartbeatIntervalMs: interval.Milliseconds()}
	fake.serveGroupMember(prefix, assignment, func(protocol.HeartbeatRequest) bool {
		heartbeats++ // one subscription: handlers run one at a time
		arrivals <- time.Now()
		return heartbeats != 2 // the second is lost with the old coordinator
	})
	ctx, client := connectUnderPrefix(t, fake, prefix)
	member, err := client.NewGroupConsumer(ctx, "g", []string{"t"}, WithSessionTimeout(3*interval), WithAutoCommitInterval(0), WithCommitOnClose(false))
	if err != nil {
		t.Fatal(err)
	}
	var times []time.Time
	for len(times) < 3 {
		select {
		case at := <-arrivals:
			times = append(times, at)
		case <-ctx.Done():
			t.Fatalf("%d heartbeats arrived", len(times))
		}
	}
	if err := member.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if gap := times[2].Sub(times[1]); gap >= 3*interval {
		t.Fatalf("the heartbeat after the lost one came %v later; the session timeout is %v", gap, 3*interval)
	}
}
