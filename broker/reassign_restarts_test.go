package broker

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/raftmq/raftmq/protocol"
)

// TestReassignSurvivesRestartsOfTargetAndController: a move {1,2,3} ->
// {1,2,4} while producing, with the controller leader and the new broker 4
// both restarted in the middle (4 right after it became a learner). The move
// must finish and broker 4 must hold every acknowledged record and the
// committed group offset.
func TestReassignSurvivesRestartsOfTargetAndController(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cluster, client := startManualRetentionCluster(t, ctx, 1)
	client.createTopic("rs", 1, 3)
	c := &leaderClient{testClient: client, leader: 1, nodes: 3, acks: protocol.AcksQuorum}
	for i := range 50 {
		if _, err := c.produce(ctx, "rs", 0, buildBatch(t, fmt.Sprint("before-", i))); err != nil {
			t.Fatal(err)
		}
	}
	if e := c.commitOne(ctx, "g", protocol.PartitionOffset{Topic: "rs", Offset: 17}); e != nil {
		t.Fatal(e)
	}
	var reply protocol.ReassignReply
	client.admin(protocol.AdminReassignPartition, protocol.ReassignPartitionRequest{Version: 1, Topic: "rs", Replicas: []uint64{1, 2, 4}}, &reply)
	if reply.Error != nil {
		t.Fatal(reply.Error)
	}
	waitFor(ctx, t, "broker 4 to be a member", func() bool {
		r := leaderReplica(cluster, "rs")
		return r != nil && isMember(r.group.Status().Configuration, 4)
	})
	if err := cluster.StopBroker(ctx, 4); err != nil {
		t.Fatal(err)
	}
	if err := cluster.StartBroker(ctx, 4); err != nil {
		t.Fatal(err)
	}
	var ctl uint64
	for _, b := range cluster.running() {
		if b.isControllerLeader() {
			ctl = b.cfg.ID
		}
	}
	t.Logf("restarted broker 4; restarting controller leader %d", ctl)
	if err := cluster.StopBroker(ctx, ctl); err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		if _, err := c.produce(ctx, "rs", 0, buildBatch(t, fmt.Sprint("during-", i))); err != nil {
			t.Fatal(err)
		}
	}
	if err := cluster.StartBroker(ctx, ctl); err != nil {
		t.Fatal(err)
	}
	waitFor(ctx, t, "the move to finish", func() bool {
		for _, b := range cluster.running() {
			p, ok := partitionMetaOn(b, "rs")
			if !ok || p.Target != nil || !slices.Equal(p.Replicas, []uint64{1, 2, 4}) {
				return false
			}
		}
		r := leaderReplica(cluster, "rs")
		return r != nil && slices.Equal(r.group.Status().Configuration.Voters, []uint64{1, 2, 4}) && localReplica(cluster.Broker(3), "rs") == nil
	})
	var leader, moved *partitionReplica
	waitFor(ctx, t, "broker 4 to catch up", func() bool {
		leader, moved = leaderReplica(cluster, "rs"), localReplica(cluster.Broker(4), "rs")
		return leader != nil && moved != nil && moved.group.Status().AppliedIndex == leader.group.Status().AppliedIndex
	})
	_, end, _ := leader.state.visible()
	if end < 70 {
		t.Fatalf("high watermark %d", end)
	}
	assertSameRecords(t, leader, moved, end)
	got, ok := moved.state.consumers.get("g")
	if !ok || got.Offset != 17 {
		t.Fatalf("group offset on broker 4: %+v %v", got, ok)
	}
}
