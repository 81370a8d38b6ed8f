package broker

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/raftmq/raftmq/protocol"
)

// TestResetOffsetsDeclaresTheGroup: a reset of offsets for a group that
// never had a member declares it at the coordinator, so group list and
// describe show it (with the reset topic) like a group whose members left,
// and a later reset of another topic adds that topic. Before, list left it
// out and describe said unknown_group, while its offsets were there and
// delete removed them.
func TestResetOffsetsDeclaresTheGroup(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	_, client, _ := startLeadingTopic(ctx, t, "t1", fastTimings)
	client.createTopic("t2", 1, 1)
	reset := func(topic string) {
		t.Helper()
		var reply protocol.ResetOffsetsReply
		client.admin(protocol.AdminGroupReset, protocol.ResetOffsetsRequest{Version: protocol.APIVersion, Group: "ng", Topic: topic, To: protocol.ResetEarliest}, &reply)
		if reply.Error != nil || len(reply.Results) != 1 || reply.Results[0].Error != nil {
			t.Fatalf("reset of group ng on %s: %+v", topic, reply)
		}
	}
	describe := func() protocol.DescribeGroupReply {
		t.Helper()
		var reply protocol.DescribeGroupReply
		client.admin(protocol.AdminGroupDescribe, protocol.GroupRequest{Version: protocol.APIVersion, Group: "ng"}, &reply)
		return reply
	}
	reset("t1")
	var list protocol.ListGroupsReply
	client.admin(protocol.AdminGroupList, protocol.GroupRequest{Version: protocol.APIVersion}, &list)
	if !slices.ContainsFunc(list.Groups, func(g protocol.GroupSummary) bool {
		return g.Group == "ng" && g.Members == 0 && slices.Equal(g.Topics, []string{"t1"})
	}) {
		t.Fatalf("group list after a reset of group ng on t1: %+v", list.Groups)
	}
	if reply := describe(); reply.Error != nil || !slices.Equal(reply.Topics, []string{"t1"}) || len(reply.Members) != 0 {
		t.Fatalf("describe of group ng after a reset on t1: %+v", reply)
	}
	reset("t2")
	if reply := describe(); reply.Error != nil || !slices.Equal(reply.Topics, []string{"t1", "t2"}) {
		t.Fatalf("describe of group ng after a reset on t2: %+v", reply)
	}
}
