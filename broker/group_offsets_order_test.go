package broker

import (
	"context"
	"slices"
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

// startGroupWithTenRecords starts a one-broker cluster whose replica of
// topic leads, writes records "0" to "9" to its partition 0, and returns
// the cluster, a client of it and a helper for group "g" on it.
func startGroupWithTenRecords(ctx context.Context, t *testing.T, topic string) (*DevCluster, *testClient, *groupOffsetsHelper) {
	t.Helper()
	cluster, client, _ := startLeadingTopic(ctx, t, topic, fastTimings)
	c := &leaderClient{testClient: client, leader: 1, nodes: 1, acks: protocol.AcksApplied}
	if _, err := c.produce(ctx, topic, 0, buildBatch(t, "0", "1", "2", "3", "4", "5", "6", "7", "8", "9")); err != nil {
		t.Fatal(err)
	}
	return cluster, client, &groupOffsetsHelper{t: t, ctx: ctx, client: client, topic: topic, group: "g"}
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
	cluster, _, h := startGroupWithTenRecords(ctx, t, topic)
	b := cluster.Broker(1)
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

// TestResetOffsetsFencesFormerMembers: a member whose session expired (a
// zombie: paused, or cut off from the coordinator only) commits after an
// operator reset the now-empty group's offsets. The reset fences the
// epochs granted before its check (its controller index), as a delete
// does, so the zombie's commit is refused. Before, the reset kept the
// partition's stored epoch and no fence, and the zombie's commit with
// that epoch silently undid the reset.
func TestResetOffsetsFencesFormerMembers(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const topic = "resetz"
	_, client, h := startGroupWithTenRecords(ctx, t, topic)
	zombie := h.join("zombie", 300)
	h.read("zombie", zombie)
	if e := h.commit("zombie", zombie.Epoch, 5); e != nil {
		t.Fatal(e)
	}
	h.waitNoMembers()
	var reset protocol.ResetOffsetsReply
	client.admin(protocol.AdminGroupReset, protocol.ResetOffsetsRequest{Version: protocol.APIVersion, Group: "g", Topic: topic,
		To: protocol.ResetOffset, Value: 1}, &reset)
	if reset.Error != nil || reset.Results[0].Error != nil {
		t.Fatalf("reset: %+v", reset)
	}
	if got := h.read("", protocol.GroupPartition{Topic: topic}); got.Offset != 1 {
		t.Fatalf("offset after the reset: %+v", got)
	}
	e := h.commit("zombie", zombie.Epoch, 9)
	got := h.read("", protocol.GroupPartition{Topic: topic})
	if e == nil || got.Offset != 1 {
		t.Fatalf("a commit by the expired member (epoch %d) after the reset: err %v; committed offset now %d (member %q), want the reset's 1",
			zombie.Epoch, e, got.Offset, got.Member)
	}
	// A member that joins after the reset reads the reset's offset and
	// commits.
	fresh := h.join("fresh", 10000)
	if got := h.read("fresh", fresh); got.Offset != 1 {
		t.Fatalf("a member joined after the reset reads %+v, want offset 1", got)
	}
	if e := h.commit("fresh", fresh.Epoch, 4); e != nil {
		t.Fatalf("a commit by a member joined after the reset (epoch %d): %v", fresh.Epoch, e)
	}
}

// TestResetOffsetsRefusedWhereAMemberClaimedDuringIt: the reset's check
// that the group has no members is a controller command (group_reset); a
// member that joins after it claims, and reads the offset from before the
// reset, before the reset's op reaches the partition. The partition then
// refuses the reset (the member's epoch is above the check's index), so
// the reset does not report done while the member's next commit undoes
// it. Before, the check was the coordinator's view only, the reset
// applied and reported done, and the member's commit overwrote it.
func TestResetOffsetsRefusedWhereAMemberClaimedDuringIt(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const topic = "resetj"
	cluster, client, h := startGroupWithTenRecords(ctx, t, topic)
	b := cluster.Broker(1)
	old := h.join("old", 300)
	h.read("old", old)
	if e := h.commit("old", old.Epoch, 5); e != nil {
		t.Fatal(e)
	}
	h.waitNoMembers()
	// resetOffsets' check passes (no members); now a member joins.
	_, index, apiErr := b.proposeControlAt(ctx, controllerCommand{Op: opGroupReset, Time: time.Now(),
		Group: &groupCommand{Name: "g", Topics: []string{topic}, Declare: true}})
	if apiErr != nil {
		t.Fatal(apiErr)
	}
	m := h.join("m", 10000)
	if got := h.read("m", m); got.Offset != 5 {
		t.Fatalf("claim read %+v", got)
	}
	// resetOffsets' commitAtLeaders, exactly as it builds the request.
	commit := protocol.OffsetCommitRequest{Version: protocol.APIVersion, Group: "g", Op: protocol.CommitOpReset, ResetTo: protocol.ResetOffset, ResetValue: 1,
		Offsets: []protocol.PartitionOffset{{Topic: topic, Partition: 0, Offset: 1, Epoch: index}}}
	res := b.commitAtLeaders(ctx, &commit)
	t.Logf("reset result: %+v", res[0])
	// The member consumed 5 and 6 from where its claim read, and commits.
	e := h.commit("m", m.Epoch, 7)
	if got := h.read("", protocol.GroupPartition{Topic: topic}); res[0].Error == nil && got.Offset != 1 {
		t.Fatalf("reset to 1 reported done, but the member that joined during it committed over it (commit err %v): offset %d", e, got.Offset)
	}
	if res[0].Error == nil || res[0].Error.Code != protocol.CodeGroupNotEmpty {
		t.Fatalf("the reset of a partition a member claimed after the check: %v, want group_not_empty", res[0].Error)
	}
	// With the member there, the next reset is refused at the check.
	var reset protocol.ResetOffsetsReply
	client.admin(protocol.AdminGroupReset, protocol.ResetOffsetsRequest{Version: protocol.APIVersion, Group: "g", Topic: topic,
		To: protocol.ResetOffset, Value: 1}, &reset)
	if reset.Error == nil || reset.Error.Code != protocol.CodeGroupNotEmpty || len(reset.Results) != 0 {
		t.Fatalf("a reset while the group has a member: %+v, want group_not_empty", reset)
	}
}

// TestResetAndDeleteOpsApplyInControllerOrder: the partition ops of a
// reset and a delete carry the controller index they were checked or
// done at, and a partition applies each only over state older than it,
// whatever order they reach it in: a reset fences the epochs below it; a
// delete or reset older than the record's epoch or fence leaves it; a
// reset logged before resets carried the index (epoch 0) applies as it
// did.
func TestResetAndDeleteOpsApplyInControllerOrder(t *testing.T) {
	c, apply := memConsumerState(t)
	offset := func() uint64 {
		t.Helper()
		rec, ok := c.get("g")
		if !ok || !rec.Committed {
			t.Fatalf("group g has no offset: %+v", rec)
		}
		return rec.Offset
	}
	if e := apply(protocol.ConsumerOp{Kind: protocol.ConsumerOpCommit, Group: "g", Member: "a", Epoch: 10, Offset: 5}); e != nil {
		t.Fatal(e)
	}
	if e := apply(protocol.ConsumerOp{Kind: protocol.ConsumerOpReset, Group: "g", Epoch: 20, Offset: 1}); e != nil {
		t.Fatalf("a reset checked at 20 over epoch 10: %v", e)
	}
	if e := apply(protocol.ConsumerOp{Kind: protocol.ConsumerOpCommit, Group: "g", Member: "a", Epoch: 10, Offset: 9}); e == nil || e.Code != protocol.CodeStaleEpoch || offset() != 1 {
		t.Fatalf("a commit with epoch 10 after a reset at 20: %v, offset %d; want stale_epoch, 1", e, offset())
	}
	if e := apply(protocol.ConsumerOp{Kind: protocol.ConsumerOpDelete, Group: "g", Epoch: 18}); e == nil || e.Code != protocol.CodeUnknownGroup || offset() != 1 {
		t.Fatalf("a delete done at 18 applied after the reset at 20: %v, offset %d; want unknown_group, the reset's 1 kept", e, offset())
	}
	if e := apply(protocol.ConsumerOp{Kind: protocol.ConsumerOpReset, Group: "g", Epoch: 19, Offset: 3}); e == nil || e.Code != protocol.CodeStaleEpoch || offset() != 1 {
		t.Fatalf("a reset checked at 19 applied after the reset at 20: %v, offset %d; want stale_epoch, 1", e, offset())
	}
	if e := apply(protocol.ConsumerOp{Kind: protocol.ConsumerOpReset, Group: "g", Epoch: 20, Offset: 1}); e != nil {
		t.Fatalf("the reset at 20 again (a retry): %v", e)
	}
	if e := apply(protocol.ConsumerOp{Kind: protocol.ConsumerOpClaim, Group: "g", Member: "b", Epoch: 25}); e != nil {
		t.Fatal(e)
	}
	if e := apply(protocol.ConsumerOp{Kind: protocol.ConsumerOpReset, Group: "g", Epoch: 22, Offset: 2}); e == nil || e.Code != protocol.CodeGroupNotEmpty || offset() != 1 {
		t.Fatalf("a reset checked at 22 after a claim at 25: %v, offset %d; want group_not_empty, 1", e, offset())
	}
	if e := apply(protocol.ConsumerOp{Kind: protocol.ConsumerOpReset, Group: "g", Offset: 2}); e != nil || offset() != 2 {
		t.Fatalf("a reset without an index (logged before): %v, offset %d; want applied, 2", e, offset())
	}
	if e := apply(protocol.ConsumerOp{Kind: protocol.ConsumerOpDelete, Group: "g", Epoch: 30}); e != nil {
		t.Fatal(e)
	}
	if e := apply(protocol.ConsumerOp{Kind: protocol.ConsumerOpReset, Group: "g", Epoch: 28, Offset: 4}); e == nil || e.Code != protocol.CodeStaleEpoch {
		t.Fatalf("a reset checked at 28 applied after the delete at 30: %v, want stale_epoch", e)
	}
	if e := apply(protocol.ConsumerOp{Kind: protocol.ConsumerOpReset, Group: "g", Epoch: 31, Offset: 4}); e != nil || offset() != 4 {
		t.Fatalf("a reset checked at 31 after the delete at 30: %v, offset %d; want applied, 4", e, offset())
	}
	if e := apply(protocol.ConsumerOp{Kind: protocol.ConsumerOpClaim, Group: "g", Member: "c", Epoch: 30}); e == nil || e.Code != protocol.CodeStaleEpoch {
		t.Fatalf("a claim with epoch 30 after the reset at 31: %v, want stale_epoch", e)
	}
}

// TestGroupResetChecksForMembersAtApply: the controller's group_reset is
// refused while the group has members, and otherwise declares the group
// and the topic, creating the group only when asked to (a name refused
// since it was committed is not declared).
func TestGroupResetChecksForMembersAtApply(t *testing.T) {
	m := groupTestMetadata(1)
	groups := map[string]*consumerGroup{}
	apply := func(index uint64, op string, gc groupCommand) *protocol.Error {
		return applyGroupCommand(groups, m, index, controllerCommand{Op: op, Group: &gc})
	}
	if e := apply(1, opGroupReset, groupCommand{Name: "old..name", Topics: []string{"t"}}); e != nil || groups["old..name"] != nil {
		t.Fatalf("a reset of an unknown group without Declare: %v, groups %v; want applied, nothing declared", e, groups)
	}
	if e := apply(2, opGroupReset, groupCommand{Name: "g", Topics: []string{"t"}, Declare: true}); e != nil || groups["g"] == nil || !slices.Equal(groups["g"].KnownTopics, []string{"t"}) {
		t.Fatalf("a reset declaring group g: %v, %+v", e, groups["g"])
	}
	if e := apply(3, opGroupJoin, groupCommand{Name: "g", Member: "a", Topics: []string{"t"}}); e != nil {
		t.Fatal(e)
	}
	if e := apply(4, opGroupReset, groupCommand{Name: "g", Topics: []string{"t"}, Declare: true}); e == nil || e.Code != protocol.CodeGroupNotEmpty {
		t.Fatalf("a reset of a group with a member: %v, want group_not_empty", e)
	}
}

// TestDeleteFencesTheGroupsPartitionsItHadNoRecordOn: a delete op on a
// partition of the group's topics where the group has no record yet
// leaves a tombstone, so a former member's claim that arrives after the
// delete (its grant is older than the delete) is refused, and the group
// created again does not inherit its commit. A plain delete (logged
// before, or sent to the partitions of other topics) still writes nothing
// where the group has no record. Before, the coordinator sent plain
// deletes only, and the former member's claim and commit were accepted.
func TestDeleteFencesTheGroupsPartitionsItHadNoRecordOn(t *testing.T) {
	c, apply := memConsumerState(t)
	// Member a was granted the partition at epoch 25 but had not claimed
	// it when its session expired and the group was deleted (index 30).
	t.Logf("delete: %v", apply(protocol.ConsumerOp{Kind: protocol.ConsumerOpDeleteAndFence, Group: "g", Epoch: 30}))
	if e := apply(protocol.ConsumerOp{Kind: protocol.ConsumerOpClaim, Group: "g", Member: "a", Epoch: 25}); e == nil || e.Code != protocol.CodeStaleEpoch {
		t.Errorf("a claim granted (epoch 25) before the delete (30) on a partition the group had no record on: %v, want stale_epoch", e)
		apply(protocol.ConsumerOp{Kind: protocol.ConsumerOpCommit, Group: "g", Member: "a", Epoch: 25, Offset: 99})
	}
	apply(protocol.ConsumerOp{Kind: protocol.ConsumerOpClaim, Group: "g", Member: "new", Epoch: 31})
	if rec, ok := c.get("g"); ok && rec.Committed {
		t.Errorf("the group created again inherits the former member's offset %d", rec.Offset)
	}

	if e := apply(protocol.ConsumerOp{Kind: protocol.ConsumerOpDelete, Group: "other", Epoch: 30}); e == nil || e.Code != protocol.CodeUnknownGroup {
		t.Fatalf("a plain delete of a group without a record: %v, want unknown_group", e)
	}
	if _, ok := c.groups["other"]; ok {
		t.Fatalf("a plain delete wrote a tombstone where the group had no record: %+v", c.groups["other"])
	}
}

// TestGroupDeleteFencesAPartitionGrantedButNotClaimed: the coordinator's
// delete fences the partitions of the group's topics even where the group
// has no record: a member granted a partition that it had not claimed
// when its session expired and the group was deleted is refused when its
// claim arrives after the delete.
func TestGroupDeleteFencesAPartitionGrantedButNotClaimed(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const topic = "unclaimed"
	_, client, _ := startLeadingTopic(ctx, t, topic, fastTimings)
	h := &groupOffsetsHelper{t: t, ctx: ctx, client: client, topic: topic, group: "g"}
	granted := h.join("former", 300)
	h.waitNoMembers()
	var deleted protocol.DeleteGroupReply
	client.admin(protocol.AdminGroupDelete, protocol.GroupRequest{Version: 1, Group: "g"}, &deleted)
	if deleted.Error != nil {
		t.Fatalf("group delete: %v", deleted.Error)
	}
	var reply protocol.OffsetFetchReply
	if err := client.groupCall(1, protocol.SubjectBrokerCommitted, protocol.OffsetFetchRequest{Version: 1, Group: "g", Member: "former", Claim: true,
		Partitions: []protocol.GroupPartition{granted}}, &reply); err != nil {
		t.Fatal(err)
	}
	if e := reply.Partitions[0].Error; reply.Error != nil || e == nil || e.Code != protocol.CodeStaleEpoch {
		t.Fatalf("a claim granted (epoch %d) before the delete, arriving after it: %+v, want stale_epoch", granted.Epoch, reply)
	}
	if e := h.commit("former", granted.Epoch, 0); e == nil || e.Code != protocol.CodeStaleEpoch {
		t.Fatalf("a commit of the deleted group's member (epoch %d): %v, want stale_epoch", granted.Epoch, e)
	}
}

// TestAdminDeleteAndResetOverrideAMadeUpEpoch: a record whose epoch no
// controller index will reach soon (a client committed with a made-up
// epoch: the commit subject takes any) is deleted by an admin group
// delete, and reset by an admin reset, which then lets the group's
// members commit again. A delete keeps only records granted after it,
// and a reset refuses only partitions claimed after its check; before,
// "after" meant any higher epoch, so such a record survived every delete
// (reported done) and refused every reset with group_not_empty.
func TestAdminDeleteAndResetOverrideAMadeUpEpoch(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const topic = "madeup"
	_, client, h := startGroupWithTenRecords(ctx, t, topic)
	m := h.join("m", 300)
	h.read("m", m)
	h.waitNoMembers()
	if e := h.commit("rogue", 1<<60, 5); e != nil {
		t.Fatal(e)
	}
	var deleted protocol.DeleteGroupReply
	client.admin(protocol.AdminGroupDelete, protocol.GroupRequest{Version: 1, Group: "g"}, &deleted)
	if got := h.read("", protocol.GroupPartition{Topic: topic}); deleted.Error != nil || got.Committed {
		t.Fatalf("admin delete: %v; the partition still holds offset %d (committed %v, epoch %d, member %q)", deleted.Error, got.Offset, got.Committed, got.Epoch, got.Member)
	}

	if e := h.commit("rogue", 1<<60, 5); e != nil {
		t.Fatal(e)
	}
	var reset protocol.ResetOffsetsReply
	client.admin(protocol.AdminGroupReset, protocol.ResetOffsetsRequest{Version: protocol.APIVersion, Group: "g", Topic: topic,
		To: protocol.ResetOffset, Value: 1}, &reset)
	if reset.Error != nil || len(reset.Results) != 1 || reset.Results[0].Error != nil {
		t.Fatalf("reset over the made-up epoch: %v %+v", reset.Error, reset.Results)
	}
	if got := h.read("", protocol.GroupPartition{Topic: topic}); got.Offset != 1 {
		t.Fatalf("after the reset the partition holds offset %d, want 1", got.Offset)
	}
	member := h.join("after", 10000)
	if got := h.read("after", member); got.Offset != 1 {
		t.Fatalf("a member joining after the reset reads %d, want 1", got.Offset)
	}
	if e := h.commit("after", member.Epoch, 7); e != nil {
		t.Fatalf("a member joining after the reset commits: %v", e)
	}
}

// TestALateDeleteKeepsTheTombstonesHigherFence: a group's delete op that
// reaches a partition after a later delete of the group does not lower
// the later one's fence, so a member of the group created between the two
// deletes cannot claim there after the second. Before, each delete
// replaced the fence, the late one included.
func TestALateDeleteKeepsTheTombstonesHigherFence(t *testing.T) {
	_, apply := memConsumerState(t)
	apply(protocol.ConsumerOp{Kind: protocol.ConsumerOpClaim, Group: "g", Member: "a", Epoch: 10})
	apply(protocol.ConsumerOp{Kind: protocol.ConsumerOpDeleteAndFence, Group: "g", Epoch: 30}) // the second delete
	apply(protocol.ConsumerOp{Kind: protocol.ConsumerOpDeleteAndFence, Group: "g", Epoch: 20}) // the first, late
	// A member of the group created between the deletes (granted at 25).
	if e := apply(protocol.ConsumerOp{Kind: protocol.ConsumerOpClaim, Group: "g", Member: "b", Epoch: 25}); e == nil || e.Code != protocol.CodeStaleEpoch {
		t.Fatalf("a claim granted at 25 after deletes at 20 (late) and 30: %v, want stale_epoch", e)
	}
}
