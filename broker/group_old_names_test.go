package broker

import (
	"context"
	"testing"
	"time"

	"github.com/raftmq/raftmq/protocol"
)

// TestGroupsNamedUnderTheOlderRuleCanBeReadResetAndDeleted: a group whose
// name has an empty dot-separated part, committed before such names were
// refused, keeps its offsets readable, and can be reset and deleted; only
// joins and commits refuse the name now. Before, every request naming it
// was refused with invalid_argument, so the group could not be removed.
func TestGroupsNamedUnderTheOlderRuleCanBeReadResetAndDeleted(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cluster, client, r := startLeadingTopic(ctx, t, "t", fastTimings)
	c := &leaderClient{testClient: client, leader: 1, nodes: 1, acks: protocol.AcksApplied}
	if _, err := c.produce(ctx, "t", 0, buildBatch(t, "a", "b", "c")); err != nil {
		t.Fatal(err)
	}
	const old = "billing..v1"
	if err := protocol.ValidateGroupName(old); err == nil {
		t.Fatalf("%q is a valid group name: the test needs one refused now", old)
	}
	// A commit accepted under the older rule, in the partition's log.
	op := protocol.ConsumerOp{Kind: protocol.ConsumerOpCommit, Group: old, Offset: 2, Time: time.Now().UnixMilli()}
	if err := awaitOps(ctx, cluster.Broker(1).submitConsumerOps(r, []protocol.ConsumerOp{op}))[0]; err != nil {
		t.Fatal(err)
	}
	committed := func() protocol.CommittedOffset {
		t.Helper()
		var reply protocol.OffsetFetchReply
		req := protocol.OffsetFetchRequest{Version: protocol.APIVersion, Group: old, Partitions: []protocol.GroupPartition{{Topic: "t"}}}
		if err := client.groupCall(1, protocol.SubjectBrokerCommitted, req, &reply); err != nil {
			t.Fatal(err)
		}
		if reply.Error != nil || len(reply.Partitions) != 1 || reply.Partitions[0].Error != nil {
			t.Fatalf("offset fetch of group %q: %+v", old, reply)
		}
		return reply.Partitions[0]
	}
	if got := committed(); !got.Committed || got.Offset != 2 {
		t.Fatalf("group %q's offset reads back as %+v", old, got)
	}

	var reset protocol.ResetOffsetsReply
	client.admin(protocol.AdminGroupReset, protocol.ResetOffsetsRequest{Version: 1, Group: old, Topic: "t", To: protocol.ResetEarliest}, &reset)
	if reset.Error != nil || len(reset.Results) != 1 || reset.Results[0].Error != nil {
		t.Fatalf("reset of group %q: %+v", old, reset)
	}
	if got := committed(); !got.Committed || got.Offset != 0 {
		t.Fatalf("group %q's offset after a reset to earliest: %+v", old, got)
	}

	var deleted protocol.DeleteGroupReply
	client.admin(protocol.AdminGroupDelete, protocol.GroupRequest{Version: 1, Group: old}, &deleted)
	if deleted.Error != nil {
		t.Fatalf("delete of group %q: %v", old, deleted.Error)
	}
	if got := committed(); got.Committed {
		t.Fatalf("group %q still has an offset after its delete: %+v", old, got)
	}

	// A commit under the name is refused.
	var commit protocol.OffsetCommitReply
	if err := client.groupCall(1, protocol.SubjectBrokerCommit, protocol.OffsetCommitRequest{Version: 1, Group: old,
		Offsets: []protocol.PartitionOffset{{Topic: "t", Offset: 1}}}, &commit); err != nil {
		t.Fatal(err)
	}
	if commit.Error == nil || commit.Error.Code != protocol.CodeInvalidArgument {
		t.Fatalf("a commit of group %q: %+v, want invalid_argument", old, commit)
	}
}
