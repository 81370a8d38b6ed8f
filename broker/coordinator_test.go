package broker

import (
	"context"
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/raftmq/raftmq/protocol"
)

// groupAdmin sends a group admin request to any broker, retrying retriable
// errors (the coordinator moving) until ctx ends.
func (c *testClient) groupAdmin(ctx context.Context, op string, req any, reply any, errorOf func() *protocol.Error) *protocol.Error {
	data, _ := json.Marshal(req)
	for attempt := 0; ; attempt++ {
		requestCtx, cancelRequest := context.WithTimeout(ctx, 5*time.Second)
		msg, err := c.nc.RequestWithContext(requestCtx, protocol.SubjectAdmin(c.prefix, op), data)
		cancelRequest()
		var e *protocol.Error
		if err != nil {
			e = protocol.Errorf(protocol.CodeTimeout, "%v", err)
		} else if err := decodeReplyAfresh(msg.Data, reply); err != nil {
			e = protocol.Errorf(protocol.CodeMalformedRequest, "%v", err)
		} else {
			e = errorOf()
		}
		if e == nil || !e.Retriable() || ctx.Err() != nil {
			return e
		}
		waitBackoff(ctx, attempt)
	}
}

// decodeReplyAfresh decodes a JSON reply into reply after zeroing it: the
// replies' error fields are omitempty, so decoding a success into a struct
// that held an earlier attempt's error would keep that error.
func decodeReplyAfresh(data []byte, reply any) error {
	target := reflect.ValueOf(reply).Elem()
	target.Set(reflect.Zero(target.Type()))
	return json.Unmarshal(data, reply)
}

// TestGroupAssignmentSurvivesCoordinatorFailover keeps two members
// heartbeating while the controller leader (the group coordinator) stops:
// the next coordinator must know both members with the same partitions and
// epochs, expire neither, and still expire a member that stops
// heartbeating.
func TestGroupAssignmentSurvivesCoordinatorFailover(t *testing.T) {
	cluster, client := startTestCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	client.createTopic("coordinated", 4, 3)
	join := func(member string) protocol.HeartbeatReply {
		var reply protocol.HeartbeatReply
		if e := client.groupAdmin(ctx, protocol.AdminGroupJoin, protocol.JoinGroupRequest{Group: "g", Member: member,
			Topics: []string{"coordinated"}, SessionTimeoutMs: 1500}, &reply, func() *protocol.Error { return reply.Error }); e != nil {
			t.Fatalf("join %s: %v", member, e)
		}
		return reply
	}
	describe := func() protocol.DescribeGroupReply {
		var reply protocol.DescribeGroupReply
		if e := client.groupAdmin(ctx, protocol.AdminGroupDescribe, protocol.GroupRequest{Group: "g"}, &reply,
			func() *protocol.Error { return reply.Error }); e != nil {
			t.Fatalf("describe: %v", e)
		}
		return reply
	}
	// Members heartbeat reporting what they own, releasing what they must
	// revoke, each until its stop function is called (which waits for its
	// last heartbeat to end, so none is in flight afterwards).
	heartbeats := func(member string, first protocol.HeartbeatReply) (stop func()) {
		memberCtx, cancelMember := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() {
			defer close(done)
			owned := first.Assigned
			for {
				select {
				case <-memberCtx.Done():
					return
				case <-time.After(100 * time.Millisecond):
				}
				// Like the SDK, give up on an answer after a while and send
				// again: a coordinator that stops drops what it had not read.
				heartbeatCtx, cancelHeartbeat := context.WithTimeout(memberCtx, 400*time.Millisecond)
				var reply protocol.HeartbeatReply
				e := client.groupAdmin(heartbeatCtx, protocol.AdminGroupHeartbeat, protocol.HeartbeatRequest{Group: "g", Member: member, Owned: owned},
					&reply, func() *protocol.Error { return reply.Error })
				cancelHeartbeat()
				if e == nil {
					owned = reply.Assigned
				}
			}
		}()
		return func() { cancelMember(); <-done }
	}
	stopA := heartbeats("a", join("a"))
	defer stopA()
	stopB := heartbeats("b", join("b"))
	defer stopB()
	var before protocol.DescribeGroupReply
	for attempt := 0; ; attempt++ {
		before = describe()
		balanced := len(before.Members) == 2 && len(before.Members[0].Owned) == 2 && len(before.Members[1].Owned) == 2
		if balanced {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("never balanced: %+v", before)
		}
		waitBackoff(ctx, attempt)
	}

	var status protocol.MetadataReply
	client.admin(protocol.AdminClusterStatus, protocol.MetadataRequest{}, &status)
	if err := cluster.StopBroker(ctx, status.ControllerLeader); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second) // longer than the session timeout: nobody may expire meanwhile
	after := describe()
	if !reflect.DeepEqual(after.Members, before.Members) || !reflect.DeepEqual(after.Partitions, before.Partitions) {
		t.Fatalf("assignment changed across coordinator failover:\nbefore %+v\nafter  %+v", before, after)
	}
	// A member that stops heartbeating is still expired by the new
	// coordinator; the other keeps heartbeating and gets its partitions.
	stopA()
	for attempt := 0; ; attempt++ {
		d := describe()
		if len(d.Members) == 1 && d.Members[0].Member == "b" && len(d.Members[0].Owned) == 4 {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("member a never expired: %+v", d)
		}
		waitBackoff(ctx, attempt)
	}
}

// TestGroupAdminRetryForgetsEarlierError is the cause of the old flake of
// TestGroupAssignmentSurvivesCoordinatorFailover: its request helper decoded
// every attempt into the same reply, and an error field is omitted from a
// success, so a not_leader seen during the failover stayed in the reply.
// The helper then retried a heartbeat that succeeded forever (refreshing
// the session of the member meant to stop) and never saw its stop.
func TestGroupAdminRetryForgetsEarlierError(t *testing.T) {
	failed, err := json.Marshal(protocol.HeartbeatReply{Version: 1, Error: &protocol.Error{Code: protocol.CodeNotLeader, Message: "moving"}})
	if err != nil {
		t.Fatal(err)
	}
	succeeded, err := json.Marshal(protocol.HeartbeatReply{Version: 1, Assigned: []protocol.GroupPartition{{Topic: "t", Partition: 1, Epoch: 9}}})
	if err != nil {
		t.Fatal(err)
	}
	var reply protocol.HeartbeatReply
	if err := decodeReplyAfresh(failed, &reply); err != nil || reply.Error == nil || !reply.Error.Retriable() {
		t.Fatalf("first attempt: err %v, reply error %v (want a retriable error)", err, reply.Error)
	}
	if err := decodeReplyAfresh(succeeded, &reply); err != nil {
		t.Fatal(err)
	}
	if reply.Error != nil {
		t.Fatalf("second attempt succeeded but the reply still carries %v", reply.Error)
	}
	if len(reply.Assigned) != 1 || reply.Assigned[0].Epoch != 9 {
		t.Fatalf("assigned %+v", reply.Assigned)
	}
}

// The session rules of the coordinator, on a fake clock.

func sessionTestGroup(members ...string) []*consumerGroup {
	g := newConsumerGroup("g")
	for _, id := range members {
		g.Members[id] = &groupMember{ID: id, Topics: []string{"t"}, SessionTimeoutMs: 1000}
	}
	return []*consumerGroup{g}
}

func TestGroupSessionExpiresAfterTimeoutWithoutHeartbeat(t *testing.T) {
	sessions := newGroupSessions()
	clock := time.Unix(1000, 0)
	groups := sessionTestGroup("a", "b")
	if got := sessions.expired(5, groups, clock); len(got) != 0 {
		t.Fatalf("members first seen now expired: %v", got)
	}
	for range 30 { // b heartbeats every 100 ms, a never
		clock = clock.Add(100 * time.Millisecond)
		sessions.touch(5, "g", "b", clock)
		got := sessions.expired(5, groups, clock)
		switch {
		case clock.Sub(time.Unix(1000, 0)) <= time.Second && len(got) != 0:
			t.Fatalf("at %v: expired %v before the session timeout", clock.Sub(time.Unix(1000, 0)), got)
		case len(got) > 1 || len(got) == 1 && got[0] != [2]string{"g", "a"}:
			t.Fatalf("at %v: expired %v, want only a", clock.Sub(time.Unix(1000, 0)), got)
		case len(got) == 1:
			return
		}
	}
	t.Fatal("a was never expired")
}

func TestGroupSessionNewTermStartsSessionsOver(t *testing.T) {
	sessions := newGroupSessions()
	start := time.Unix(1000, 0)
	groups := sessionTestGroup("a")
	sessions.touch(5, "g", "a", start)
	// A new coordinator term: the silence before it does not count.
	if got := sessions.expired(6, groups, start.Add(5*time.Second)); len(got) != 0 {
		t.Fatalf("expired %v at the first check of a new term", got)
	}
	if got := sessions.expired(6, groups, start.Add(6500*time.Millisecond)); len(got) != 1 {
		t.Fatalf("expired %v a session timeout into the new term, want a", got)
	}
}

// A heartbeat served in an older term (leadership lost and regained while
// it ran) must not wind the sessions back: that would start every session
// over again at each such heartbeat.
func TestGroupSessionStaleTermHeartbeatDoesNotResetSessions(t *testing.T) {
	sessions := newGroupSessions()
	start := time.Unix(1000, 0)
	groups := sessionTestGroup("a", "b")
	sessions.expired(7, groups, start) // both start in term 7
	sessions.touch(6, "g", "b", start.Add(800*time.Millisecond))
	got := sessions.expired(7, groups, start.Add(1200*time.Millisecond))
	if len(got) != 1 || got[0] != [2]string{"g", "a"} {
		t.Fatalf("expired %v, want a (b's late heartbeat still counts, a's session must not restart)", got)
	}
}

// A leave that could not be committed is proposed again at the next check,
// not a whole session later.
func TestGroupSessionFailedExpiryIsRetriedAtNextCheck(t *testing.T) {
	sessions := newGroupSessions()
	start := time.Unix(1000, 0)
	groups := sessionTestGroup("a")
	sessions.expired(3, groups, start)
	if got := sessions.expired(3, groups, start.Add(1100*time.Millisecond)); len(got) != 1 {
		t.Fatalf("expired %v, want a", got)
	}
	if got := sessions.expired(3, groups, start.Add(1200*time.Millisecond)); len(got) != 0 {
		t.Fatalf("expired %v again while its leave is in flight", got)
	}
	sessions.markFailed("g", "a")
	if got := sessions.expired(3, groups, start.Add(1300*time.Millisecond)); len(got) != 1 {
		t.Fatalf("after a failed leave: expired %v at the next check, want a again", got)
	}
	sessions.forget("g", "a") // the leave committed
	if got := sessions.expired(3, nil, start.Add(1400*time.Millisecond)); len(got) != 0 {
		t.Fatalf("expired %v after the member left", got)
	}
}

// The coordinator forgets the sessions of deleted groups and departed
// members, at most once per sessionPruneInterval, instead of keeping them
// for the whole term.
func TestGroupSessionForgetsDeletedGroupsAndDepartedMembers(t *testing.T) {
	sessions := newGroupSessions()
	now := time.Unix(1000, 0)
	groups := sessionTestGroup("a", "b")
	other := newConsumerGroup("h")
	other.Members["c"] = &groupMember{ID: "c", Topics: []string{"t"}, SessionTimeoutMs: 1000}
	groups = append(groups, other)
	for _, gm := range [][2]string{{"g", "a"}, {"g", "b"}, {"h", "c"}} {
		if !sessions.heartbeatSeen(5, gm[0], gm[1], 1, 0, now) {
			t.Fatalf("first heartbeat of %v refused", gm)
		}
	}
	sessions.prune(func() []*consumerGroup { return groups }, now)
	// Group h is deleted; b leaves g by a path the coordinator did not serve.
	delete(groups[0].Members, "b")
	groups = groups[:1]
	kept := func(group, member string) bool {
		sessions.mu.Lock()
		defer sessions.mu.Unlock()
		_, seen := sessions.lastSeen[group][member]
		_, seq := sessions.seq[group+"\x00"+member]
		return seen || seq
	}
	sessions.prune(func() []*consumerGroup { return groups }, now.Add(sessionPruneInterval/2))
	if !kept("h", "c") || !kept("g", "b") {
		t.Fatal("sessions pruned twice within sessionPruneInterval")
	}
	sessions.prune(func() []*consumerGroup { return groups }, now.Add(sessionPruneInterval))
	if kept("h", "c") {
		t.Error("deleted group h still has sessions")
	}
	if kept("g", "b") {
		t.Error("departed member b still has a session")
	}
	if !kept("g", "a") {
		t.Error("member a's session was dropped")
	}
	sessions.mu.Lock()
	defer sessions.mu.Unlock()
	if _, ok := sessions.lastSeen["h"]; ok {
		t.Errorf("deleted group h still has a session map: %v", sessions.lastSeen["h"])
	}
}
