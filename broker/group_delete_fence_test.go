package broker

import (
	"context"
	"math"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/raftmq/raftmq/protocol"
)

// TestADeletedGroupFencesItsFormerMembers: once a group is deleted, a
// member of it that has not noticed (its session expired, it still holds
// its assignment epoch) cannot commit: the partitions keep a tombstone of
// the group whose epoch, the delete's controller index, is above every
// epoch granted before. A group created again under the name starts with
// no offsets and commits with its new epochs. Before, the delete forgot
// the group's record and its epoch, the former member's commit was
// accepted, and the new group inherited its offset.
func TestADeletedGroupFencesItsFormerMembers(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const topic, group = "fenced", "g"
	_, client, _ := startLeadingTopic(ctx, t, topic, fastTimings)
	c := &leaderClient{testClient: client, leader: 1, nodes: 1, acks: protocol.AcksApplied}
	if _, err := c.produce(ctx, topic, 0, buildBatch(t, "0", "1", "2", "3", "4", "5", "6", "7", "8", "9")); err != nil {
		t.Fatal(err)
	}
	join := func(member string) protocol.GroupPartition {
		t.Helper()
		var reply protocol.HeartbeatReply
		if e := client.groupAdmin(ctx, protocol.AdminGroupJoin, protocol.JoinGroupRequest{Group: group, Member: member,
			Topics: []string{topic}, SessionTimeoutMs: 300}, &reply, func() *protocol.Error { return reply.Error }); e != nil {
			t.Fatalf("join %s: %v", member, e)
		}
		if len(reply.Assigned) != 1 {
			t.Fatalf("join %s: assigned %+v", member, reply.Assigned)
		}
		return reply.Assigned[0]
	}
	read := func(member string, gp protocol.GroupPartition) protocol.CommittedOffset {
		t.Helper()
		var reply protocol.OffsetFetchReply
		req := protocol.OffsetFetchRequest{Version: 1, Group: group, Member: member, Claim: member != "", Partitions: []protocol.GroupPartition{gp}}
		if err := client.groupCall(1, protocol.SubjectBrokerCommitted, req, &reply); err != nil {
			t.Fatal(err)
		}
		if reply.Error != nil || reply.Partitions[0].Error != nil {
			t.Fatalf("offset fetch (member %q): %+v", member, reply)
		}
		return reply.Partitions[0]
	}
	commit := func(member string, epoch, offset uint64) *protocol.Error {
		t.Helper()
		var reply protocol.OffsetCommitReply
		if err := client.groupCall(1, protocol.SubjectBrokerCommit, protocol.OffsetCommitRequest{Version: 1, Group: group, Member: member,
			Offsets: []protocol.PartitionOffset{{Topic: topic, Partition: 0, Offset: offset, Epoch: epoch}}}, &reply); err != nil {
			t.Fatal(err)
		}
		if reply.Error != nil {
			return reply.Error
		}
		return reply.Results[0].Error
	}

	former := join("former")
	read("former", former)
	if e := commit("former", former.Epoch, 5); e != nil {
		t.Fatalf("the member's commit: %v", e)
	}
	waitFor(ctx, t, "the member's session to expire", func() bool {
		var reply protocol.DescribeGroupReply
		client.admin(protocol.AdminGroupDescribe, protocol.GroupRequest{Version: 1, Group: group}, &reply)
		return reply.Error == nil && len(reply.Members) == 0
	})
	var deleted protocol.DeleteGroupReply
	client.admin(protocol.AdminGroupDelete, protocol.GroupRequest{Version: 1, Group: group}, &deleted)
	if deleted.Error != nil {
		t.Fatalf("group delete: %v", deleted.Error)
	}
	if got := read("", protocol.GroupPartition{Topic: topic}); got.Committed {
		t.Fatalf("offset after the delete: %+v", got)
	}
	client.admin(protocol.AdminGroupDelete, protocol.GroupRequest{Version: 1, Group: group}, &deleted)
	if deleted.Error == nil || deleted.Error.Code != protocol.CodeUnknownGroup {
		t.Fatalf("a second delete: %v, want unknown_group", deleted.Error)
	}

	if e := commit("former", former.Epoch, 8); e == nil || e.Code != protocol.CodeStaleEpoch {
		t.Errorf("a commit by a member of the deleted group (epoch %d): %v, want stale_epoch", former.Epoch, e)
	}
	if got := read("", protocol.GroupPartition{Topic: topic}); got.Committed {
		t.Errorf("the deleted group has an offset again: %+v", got)
	}

	fresh := join("fresh")
	if got := read("fresh", fresh); got.Committed {
		t.Errorf("the group created again inherits offset %d", got.Offset)
	}
	if e := commit("fresh", fresh.Epoch, 3); e != nil {
		t.Fatalf("the new group's commit (epoch %d): %v", fresh.Epoch, e)
	}
	if got := read("", protocol.GroupPartition{Topic: topic}); !got.Committed || got.Offset != 3 {
		t.Fatalf("the new group's offset: %+v", got)
	}
}

// TestADeletedGroupsNameStaysUsable: the fence a delete leaves blocks only
// member epochs: a commit without a group (epoch 0) goes through after the
// delete; and a delete a client sent with a huge epoch, which fences every
// later member, is undone by the next admin delete of the group. (Epoch-0
// commits were refused after tombstones came in, and a client's delete
// locked the name for ever; both found in review.)
func TestADeletedGroupsNameStaysUsable(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const topic, group = "usable", "g"
	_, client, _ := startLeadingTopic(ctx, t, topic, fastTimings)
	call := func(req protocol.OffsetCommitRequest) *protocol.Error {
		t.Helper()
		var reply protocol.OffsetCommitReply
		if err := client.groupCall(1, protocol.SubjectBrokerCommit, req, &reply); err != nil {
			t.Fatal(err)
		}
		if reply.Error != nil {
			return reply.Error
		}
		return reply.Results[0].Error
	}
	commit := func(member string, epoch uint64) *protocol.Error {
		return call(protocol.OffsetCommitRequest{Version: 1, Group: group, Member: member,
			Offsets: []protocol.PartitionOffset{{Topic: topic, Offset: 0, Epoch: epoch}}})
	}
	adminDelete := func() *protocol.Error {
		var deleted protocol.DeleteGroupReply
		client.admin(protocol.AdminGroupDelete, protocol.GroupRequest{Version: 1, Group: group}, &deleted)
		return deleted.Error
	}
	if e := commit("", 0); e != nil {
		t.Fatal(e)
	}
	if e := adminDelete(); e != nil {
		t.Fatalf("group delete: %v", e)
	}
	if e := commit("", 0); e != nil {
		t.Errorf("a commit without a group (epoch 0) after the delete: %v", e)
	}

	if e := call(protocol.OffsetCommitRequest{Version: 1, Group: group, Op: protocol.CommitOpDelete,
		Offsets: []protocol.PartitionOffset{{Topic: topic, Epoch: math.MaxUint64}}}); e != nil {
		t.Fatalf("a client's delete with the largest epoch: %v", e)
	}
	// The admin delete finds no group (the client's delete took it) but
	// replaces the fence with its own index.
	if e := adminDelete(); e != nil && e.Code != protocol.CodeUnknownGroup {
		t.Fatalf("the admin delete after the client's: %v", e)
	}
	var reply protocol.HeartbeatReply
	if e := client.groupAdmin(ctx, protocol.AdminGroupJoin, protocol.JoinGroupRequest{Group: group, Member: "new",
		Topics: []string{topic}, SessionTimeoutMs: 3000}, &reply, func() *protocol.Error { return reply.Error }); e != nil || len(reply.Assigned) != 1 {
		t.Fatalf("join: %v %+v", e, reply.Assigned)
	}
	if e := commit("new", reply.Assigned[0].Epoch); e != nil {
		t.Errorf("a new member's commit (epoch %d) after the admin delete: %v", reply.Assigned[0].Epoch, e)
	}
}

// TestTheFenceCoversEpochsThePartitionNeverSaw: a member granted the
// partition (epoch 25) whose claim is still on its way when the group is
// deleted (at controller index 30) is fenced when the claim arrives,
// although the partition only saw epoch 10 before the delete.
func TestTheFenceCoversEpochsThePartitionNeverSaw(t *testing.T) {
	_, apply := memConsumerState(t)
	if e := apply(protocol.ConsumerOp{Kind: protocol.ConsumerOpCommit, Group: "g", Member: "a", Epoch: 10, Offset: 1}); e != nil {
		t.Fatal(e)
	}
	if e := apply(protocol.ConsumerOp{Kind: protocol.ConsumerOpDelete, Group: "g", Epoch: 30}); e != nil {
		t.Fatal(e)
	}
	if e := apply(protocol.ConsumerOp{Kind: protocol.ConsumerOpClaim, Group: "g", Member: "b", Epoch: 25}); e == nil || e.Code != protocol.CodeStaleEpoch {
		t.Fatalf("a claim granted (epoch 25) before the delete (30): %v, want stale_epoch", e)
	}
	if e := apply(protocol.ConsumerOp{Kind: protocol.ConsumerOpClaim, Group: "g", Member: "c", Epoch: 31}); e != nil {
		t.Fatalf("a claim of the group created again (epoch 31): %v", e)
	}
}

// TestConsumerRecordKeepsItsTombstone: a deleted group's tombstone and
// its fence survive the state database's encoding (a restart reads them
// back), so the fence holds across restarts; a record without a fence
// encodes as before.
func TestConsumerRecordKeepsItsTombstone(t *testing.T) {
	for _, rec := range []consumerRecord{
		{Deleted: true, Fence: 42},
		{Committed: true, Offset: 9, Epoch: 50, Member: "m", Metadata: "meta", Fence: 42},
		{Committed: true, Offset: 7, Epoch: 3, Time: 1700000000000, Member: "m", Metadata: "x"},
	} {
		got, err := decodeConsumerRecord(rec.encode())
		if err != nil || got != rec {
			t.Fatalf("%+v reads back as %+v (%v)", rec, got, err)
		}
	}
}

// memConsumerState returns a partition's consumer state on an in-memory
// database, and apply, which applies one op to it as an entry of its own.
func memConsumerState(t *testing.T) (*consumerState, func(protocol.ConsumerOp) *protocol.Error) {
	t.Helper()
	db, err := pebble.Open("", &pebble.Options{FS: vfs.NewMem(), Logger: quietPebbleLogger{}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	c := &consumerState{store: &stateStore{db: db}, raftGroup: 1, groups: map[string]consumerRecord{}}
	apply := func(op protocol.ConsumerOp) *protocol.Error {
		b := db.NewBatch()
		defer b.Close()
		return c.applyOps(b, []protocol.ConsumerOp{op})[0]
	}
	return c, apply
}
