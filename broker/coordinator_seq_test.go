package broker

import (
	"context"
	"testing"
	"time"

	"github.com/raftmq/raftmq/protocol"
)

// TestHeartbeatStaleSeqDoesNotReleasePartition: member a owns both
// partitions, b joins, so one partition P is being revoked from a. A late
// copy of an older heartbeat of a (Seq 1, owning nothing) arrives after a
// newer one (Seq 2, still owning P): it must not release P, which a still
// consumes. A newer heartbeat without P releases it. A client without
// sequence numbers (Seq 0) keeps the old behaviour: its Owned list is
// always acted on.
func TestHeartbeatStaleSeqDoesNotReleasePartition(t *testing.T) {
	_, client := startTestCluster(t, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	client.createTopic("seq", 2, 1)
	request := func(op string, req any) protocol.HeartbeatReply {
		t.Helper()
		var reply protocol.HeartbeatReply
		if e := client.groupAdmin(ctx, op, req, &reply, func() *protocol.Error { return reply.Error }); e != nil {
			t.Fatalf("%s %+v: %v", op, req, e)
		}
		return reply
	}
	heartbeat := func(group, member string, seq uint64, owned []protocol.GroupPartition) protocol.HeartbeatReply {
		t.Helper()
		return request(protocol.AdminGroupHeartbeat, protocol.HeartbeatRequest{Group: group, Member: member, Seq: seq, Owned: owned})
	}
	ownerOf := func(group string, p protocol.GroupPartition) string {
		t.Helper()
		var reply protocol.DescribeGroupReply
		if e := client.groupAdmin(ctx, protocol.AdminGroupDescribe, protocol.GroupRequest{Group: group}, &reply,
			func() *protocol.Error { return reply.Error }); e != nil {
			t.Fatalf("describe: %v", e)
		}
		for _, m := range reply.Members {
			for _, o := range m.Owned {
				if o.Topic == p.Topic && o.Partition == p.Partition {
					return m.Member
				}
			}
		}
		return ""
	}
	// setUp makes a own both partitions and b join, and has a heartbeat
	// with seq owning both; it returns the partition a must revoke and the
	// one it keeps.
	setUp := func(group string, seq uint64) (revoked, kept protocol.GroupPartition) {
		t.Helper()
		first := request(protocol.AdminGroupJoin, protocol.JoinGroupRequest{Group: group, Member: "a", Topics: []string{"seq"}, SessionTimeoutMs: 10000})
		if len(first.Assigned) != 2 {
			t.Fatalf("%s: a alone was assigned %+v", group, first.Assigned)
		}
		request(protocol.AdminGroupJoin, protocol.JoinGroupRequest{Group: group, Member: "b", Topics: []string{"seq"}, SessionTimeoutMs: 10000})
		reply := heartbeat(group, "a", seq, first.Assigned)
		if len(reply.Assigned) != 1 || len(reply.Revoke) != 1 {
			t.Fatalf("%s: a after b joined: assigned %+v revoke %+v", group, reply.Assigned, reply.Revoke)
		}
		return reply.Revoke[0], reply.Assigned[0]
	}

	t.Run("sequenced", func(t *testing.T) {
		revoked, kept := setUp("g", 2)
		// The stale heartbeat: Seq 1, from before a owned anything.
		stale := heartbeat("g", "a", 1, nil)
		if len(stale.Revoke) != 1 || stale.Revoke[0] != revoked {
			t.Fatalf("stale heartbeat answered assigned %+v revoke %+v, want the current assignment (revoke %+v)", stale.Assigned, stale.Revoke, revoked)
		}
		if owner := ownerOf("g", revoked); owner != "a" {
			t.Fatalf("after a stale heartbeat without it, %+v is owned by %q, want a (still consuming it)", revoked, owner)
		}
		if got := heartbeat("g", "b", 0, nil); len(got.Assigned) != 0 {
			t.Fatalf("b was assigned %+v while a still owns it", got.Assigned)
		}
		// A newer heartbeat without the partition releases it.
		if got := heartbeat("g", "a", 3, []protocol.GroupPartition{kept}); len(got.Revoke) != 0 || len(got.Assigned) != 1 {
			t.Fatalf("a after releasing: assigned %+v revoke %+v", got.Assigned, got.Revoke)
		}
		if owner := ownerOf("g", revoked); owner != "b" {
			t.Fatalf("after a released %+v it is owned by %q, want b", revoked, owner)
		}
	})

	t.Run("old client", func(t *testing.T) {
		revoked, _ := setUp("legacy", 0)
		// Seq 0 is never stale: an Owned list without the partition
		// releases it, as before sequence numbers.
		if got := heartbeat("legacy", "a", 0, nil); len(got.Revoke) != 0 {
			t.Fatalf("a after releasing: assigned %+v revoke %+v", got.Assigned, got.Revoke)
		}
		if owner := ownerOf("legacy", revoked); owner != "b" {
			t.Fatalf("after a released %+v it is owned by %q, want b", revoked, owner)
		}
	})
}

// A sync applied out of order (proposed from an older heartbeat after a
// newer one committed, or by a new coordinator) releases nothing; a member
// joining again keeps its last sync's Seq.
func TestGroupSyncStaleSeqReleasesNothing(t *testing.T) {
	m := groupTestMetadata(6)
	groups := map[string]*consumerGroup{}
	index := uint64(10)
	apply := func(op string, gc groupCommand) {
		t.Helper()
		index++
		if e := applyGroupCommand(groups, m, index, controllerCommand{Op: op, Group: &gc}); e != nil {
			t.Fatal(e)
		}
	}
	apply(opGroupJoin, groupCommand{Name: "g", Member: "a", Topics: []string{"t"}})
	apply(opGroupJoin, groupCommand{Name: "g", Member: "b", Topics: []string{"t"}})
	g := groups["g"]
	assigned, revoke := g.assignment("a")
	if len(assigned) != 3 || len(revoke) != 3 {
		t.Fatalf("a: assigned %v revoke %v", assigned, revoke)
	}
	all := append(append([]protocol.GroupPartition{}, assigned...), revoke...)
	apply(opGroupSync, groupCommand{Name: "g", Member: "a", Owned: all, Seq: 7})
	apply(opGroupJoin, groupCommand{Name: "g", Member: "a", Topics: []string{"t"}}) // rejoin keeps Seq 7
	for _, seq := range []uint64{6, 7} {
		apply(opGroupSync, groupCommand{Name: "g", Member: "a", Owned: assigned, Seq: seq})
		if got := ownedBy(g); got["a"] != 6 {
			t.Fatalf("a stale sync (seq %d) released partitions: %v", seq, got)
		}
	}
	apply(opGroupSync, groupCommand{Name: "g", Member: "a", Owned: assigned, Seq: 8})
	if got := ownedBy(g); got["a"] != 3 || got["b"] != 3 {
		t.Fatalf("after a newer sync: %v", got)
	}
	if s := g.Members["a"].SyncSeq; s != 8 {
		t.Fatalf("SyncSeq %d, want 8", s)
	}
}

// A stale heartbeat neither counts as served nor renews the session; Seq 0
// always does; a new term forgets the in-memory Seq but not the
// replicated one.
func TestGroupSessionStaleHeartbeatDoesNotRenew(t *testing.T) {
	sessions := newGroupSessions()
	start := time.Unix(1000, 0)
	groups := sessionTestGroup("a")
	sessions.expired(5, groups, start)
	if !sessions.heartbeatSeen(5, "g", "a", 10, 0, start.Add(500*time.Millisecond)) {
		t.Fatal("first heartbeat (seq 10) reported stale")
	}
	for _, seq := range []uint64{9, 10} {
		if sessions.heartbeatSeen(5, "g", "a", seq, 0, start.Add(900*time.Millisecond)) {
			t.Fatalf("seq %d after seq 10 not reported stale", seq)
		}
	}
	// The session runs from seq 10's heartbeat (500 ms), not the stale ones.
	if got := sessions.expired(5, groups, start.Add(1600*time.Millisecond)); len(got) != 1 {
		t.Fatalf("expired %v a session timeout after the last fresh heartbeat, want a", got)
	}
	sessions.markFailed("g", "a")
	if !sessions.heartbeatSeen(5, "g", "a", 0, 0, start.Add(1700*time.Millisecond)) {
		t.Fatal("seq 0 reported stale")
	}
	if got := sessions.expired(5, groups, start.Add(2600*time.Millisecond)); len(got) != 0 {
		t.Fatalf("expired %v although seq 0 renewed the session", got)
	}
	// A new term: in-memory Seqs start over, the replicated one still holds.
	if sessions.heartbeatSeen(6, "g", "a", 8, 9, start.Add(2700*time.Millisecond)) {
		t.Fatal("seq 8 accepted with a replicated seq of 9")
	}
	if !sessions.heartbeatSeen(6, "g", "a", 10, 9, start.Add(2800*time.Millisecond)) {
		t.Fatal("seq 10 refused in a new term with a replicated seq of 9")
	}
}
