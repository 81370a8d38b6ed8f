package clients

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/raftmq/raftmq/protocol"
)

// TestGroupHeartbeatSeqIncreases: every heartbeat carries a Seq above the
// one before it, an unanswered one included (so the coordinator can tell a
// late copy of it from a newer heartbeat), and a member coming back with
// the same id numbers above its predecessor.
func TestGroupHeartbeatSeqIncreases(t *testing.T) {
	const interval = 50 * time.Millisecond
	const prefix = "hbseq"
	fake := startFakeCluster(t)
	seqs := make(chan uint64, 256)
	heartbeats := 0
	assignment := protocol.HeartbeatReply{Version: protocol.APIVersion, Assigned: []protocol.GroupPartition{},
		Revoke: []protocol.GroupPartition{}, HeartbeatIntervalMs: interval.Milliseconds()}
	fake.serveGroupMember(prefix, assignment, func(req protocol.HeartbeatRequest) bool {
		heartbeats++ // one subscription: handlers run one at a time
		select {
		case seqs <- req.Seq:
		default:
		}
		return heartbeats != 2 // unanswered: the member gives up on it
	})
	ctx, client := connectUnderPrefix(t, fake, prefix)
	collect := func(n int, after uint64) uint64 {
		t.Helper()
		last := after
		for i := range n {
			select {
			case seq := <-seqs:
				if seq <= last {
					t.Fatalf("heartbeat %d has seq %d, not above %d", i, seq, last)
				}
				last = seq
			case <-ctx.Done():
				t.Fatalf("%d heartbeats arrived", i)
			}
		}
		return last
	}
	member, err := client.NewGroupConsumer(ctx, "g", []string{"t"}, WithMemberID("m"), WithSessionTimeout(6*interval),
		WithAutoCommitInterval(0), WithCommitOnClose(false))
	if err != nil {
		t.Fatal(err)
	}
	last := collect(4, 0)
	if err := member.Close(ctx); err != nil {
		t.Fatal(err)
	}
	// Heartbeats the member sent before Close returned may still be on
	// their way: a marker (Seq 0) sent after them on the same connection
	// arrives after them.
	marker, err := json.Marshal(protocol.HeartbeatRequest{Group: "g", Member: "m"})
	if err != nil {
		t.Fatal(err)
	}
	if err := client.conn.Publish(protocol.SubjectAdmin(prefix, protocol.AdminGroupHeartbeat), marker); err != nil {
		t.Fatal(err)
	}
	for drained := false; !drained; {
		select {
		case seq := <-seqs:
			drained = seq == 0
			last = max(last, seq)
		case <-ctx.Done():
			t.Fatal("the marker never arrived")
		}
	}
	again, err := client.NewGroupConsumer(ctx, "g", []string{"t"}, WithMemberID("m"), WithSessionTimeout(6*interval),
		WithAutoCommitInterval(0), WithCommitOnClose(false))
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close(ctx)
	collect(2, last)
}
