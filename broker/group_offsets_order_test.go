package broker

import (
	"context"
	"testing"
	"time"

	"github.com/raftmq/raftmq/protocol"
)

// groupOffsetsHelper joins, claims, commits and reads one group's offsets
// of partition 0 of one topic on a one-broker cluster.
type groupOffsetsHelper struct {
	t      *testing.T
	ctx    context.Context
	client *testClient
	topic  string
	group  string
}

// join joins member with session timeout sessionMs and returns its one
// assigned partition.
func (h *groupOffsetsHelper) join(member string, sessionMs int64) protocol.GroupPartition {
	h.t.Helper()
	var reply protocol.HeartbeatReply
	if e := h.client.groupAdmin(h.ctx, protocol.AdminGroupJoin, protocol.JoinGroupRequest{Group: h.group, Member: member,
		Topics: []string{h.topic}, SessionTimeoutMs: sessionMs}, &reply, func() *protocol.Error { return reply.Error }); e != nil {
		h.t.Fatalf("join %s: %v", member, e)
	}
	if len(reply.Assigned) != 1 {
		h.t.Fatalf("join %s: assigned %+v", member, reply.Assigned)
	}
	return reply.Assigned[0]
}

// read claims gp for member (a plain read when member is "") and returns
// the committed offset read after it.
func (h *groupOffsetsHelper) read(member string, gp protocol.GroupPartition) protocol.CommittedOffset {
	h.t.Helper()
	var reply protocol.OffsetFetchReply
	req := protocol.OffsetFetchRequest{Version: 1, Group: h.group, Member: member, Claim: member != "", Partitions: []protocol.GroupPartition{gp}}
	if err := h.client.groupCall(1, protocol.SubjectBrokerCommitted, req, &reply); err != nil {
		h.t.Fatal(err)
	}
	if reply.Error != nil || reply.Partitions[0].Error != nil {
		h.t.Fatalf("offset fetch (member %q): %+v", member, reply)
	}
	return reply.Partitions[0]
}

func (h *groupOffsetsHelper) commit(member string, epoch, offset uint64) *protocol.Error {
	h.t.Helper()
	var reply protocol.OffsetCommitReply
	if err := h.client.groupCall(1, protocol.SubjectBrokerCommit, protocol.OffsetCommitRequest{Version: 1, Group: h.group, Member: member,
		Offsets: []protocol.PartitionOffset{{Topic: h.topic, Partition: 0, Offset: offset, Epoch: epoch}}}, &reply); err != nil {
		h.t.Fatal(err)
	}
	if reply.Error != nil {
		return reply.Error
	}
	return reply.Results[0].Error
}

func (h *groupOffsetsHelper) waitNoMembers() {
	waitFor(h.ctx, h.t, "the member's session to expire", func() bool {
		var reply protocol.DescribeGroupReply
		h.client.admin(protocol.AdminGroupDescribe, protocol.GroupRequest{Version: 1, Group: h.group}, &reply)
		return reply.Error == nil && len(reply.Members) == 0
	})
}

// TestALateGroupDeleteKeepsTheGroupCreatedAgain: deleteGroup first deletes
// the group at the controller (index D), then sends a delete op with
// epoch D to every partition (commitAtLeaders, retried until its context
// ends). A member of the group created again under the name (join at
// index > D) that claimed and committed before that op reached the
// partition keeps its commit: the op is older than the record (epoch
// above D) and leaves it. Before, the op replaced it with a tombstone.
func TestALateGroupDeleteKeepsTheGroupCreatedAgain(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const topic = "latedel"
	cluster, client, _ := startLeadingTopic(ctx, t, topic, fastTimings)
	b := cluster.Broker(1)
	c := &leaderClient{testClient: client, leader: 1, nodes: 1, acks: protocol.AcksApplied}
	if _, err := c.produce(ctx, topic, 0, buildBatch(t, "0", "1", "2", "3", "4", "5", "6", "7", "8", "9")); err != nil {
		t.Fatal(err)
	}
	h := &groupOffsetsHelper{t: t, ctx: ctx, client: client, topic: topic, group: "g"}
	former := h.join("former", 300)
	h.read("former", former)
	if e := h.commit("former", former.Epoch, 5); e != nil {
		t.Fatal(e)
	}
	h.waitNoMembers()

	// deleteGroup's first half: the controller delete.
	_, index, apiErr := b.proposeControlAt(ctx, controllerCommand{Op: opGroupDelete, Group: &groupCommand{Name: "g"}, Time: time.Now()})
	if apiErr != nil {
		t.Fatal(apiErr)
	}
	// Meanwhile the group is created again; its member claims and commits.
	fresh := h.join("fresh", 10000)
	if fresh.Epoch <= index {
		t.Fatalf("fresh epoch %d not above the delete's index %d", fresh.Epoch, index)
	}
	h.read("fresh", fresh)
	if e := h.commit("fresh", fresh.Epoch, 7); e != nil {
		t.Fatal(e)
	}
	// deleteGroup's second half arrives now (exactly the request it builds).
	req := protocol.OffsetCommitRequest{Version: protocol.APIVersion, Group: "g", Op: protocol.CommitOpDelete,
		Offsets: []protocol.PartitionOffset{{Topic: topic, Partition: 0, Epoch: index}}}
	res := b.commitAtLeaders(ctx, &req)
	t.Logf("late delete op result: %+v", res[0])
	got := h.read("", protocol.GroupPartition{Topic: topic})
	if !got.Committed || got.Offset != 7 {
		t.Fatalf("the new group's commit (epoch %d, offset 7) after the old group's delete op (epoch %d) applied late: %+v", fresh.Epoch, index, got)
	}
}
