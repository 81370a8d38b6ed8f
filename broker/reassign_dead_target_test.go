package broker

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/raftmq/raftmq/protocol"
)

// TestReassignWaitsForATargetThatStopped: a move of {1,2,3} to {1,2,4}
// whose target broker 4 stops once it caught up as a learner does not
// remove broker 3: whether or not the leader promoted 4 just before it
// stopped, 4 never confirms the configuration, so the move waits (3
// keeps its replica and the controller records nothing), and a cancel
// takes the partition back to {1,2,3}, which then survives one more
// failure. Before, the leader promoted the dead learner, removed 3 (which
// deleted its healthy copy) and reported the move done, leaving the
// partition with two live replicas of three.
func TestReassignWaitsForATargetThatStopped(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cluster, client := startManualRetentionCluster(t, ctx, 1)
	client.createTopic("dead", 1, 3)
	c := &leaderClient{testClient: client, leader: 1, nodes: 3, acks: protocol.AcksQuorum}
	for i := range 50 {
		if _, err := c.produce(ctx, "dead", 0, buildBatch(t, fmt.Sprint("before-", i))); err != nil {
			t.Fatal(err)
		}
	}
	var reply protocol.ReassignReply
	client.admin(protocol.AdminReassignPartition, protocol.ReassignPartitionRequest{Version: 1, Topic: "dead", Replicas: []uint64{1, 2, 4}}, &reply)
	if reply.Error != nil {
		t.Fatal(reply.Error)
	}
	var leaderID uint64
	for leaderID == 0 {
		if ctx.Err() != nil {
			t.Fatal("broker 4 never caught up as a learner")
		}
		r, l4 := leaderReplica(cluster, "dead"), localReplica(cluster.Broker(4), "dead")
		if r != nil && l4 != nil {
			st := r.group.Status()
			if member := slices.Contains(st.Configuration.Learners, 4) || slices.Contains(st.Configuration.Voters, 4); member &&
				l4.group.Status().AppliedIndex+2 >= st.CommitIndex {
				leaderID = st.ID
			}
		}
		time.Sleep(time.Millisecond)
	}
	if err := cluster.StopBroker(ctx, 4); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second)
	r := leaderReplica(cluster, "dead")
	if r == nil {
		t.Fatal("no leader 3 s after broker 4 stopped")
	}
	conf := r.group.Status().Configuration
	p, _ := partitionMetaOn(cluster.Broker(1), "dead")
	if !slices.Contains(conf.Voters, 3) || !slices.Equal(p.Replicas, []uint64{1, 2, 3}) || localReplica(cluster.Broker(3), "dead") == nil {
		t.Fatalf("3 s after target broker 4 stopped: voters %v, recorded replicas %v, broker 3 runs a replica: %v",
			conf.Voters, p.Replicas, localReplica(cluster.Broker(3), "dead") != nil)
	}
	t.Logf("3 s after broker 4 stopped: %+v", conf)
	client.admin(protocol.AdminReassignPartition, protocol.ReassignPartitionRequest{Version: 1, Topic: "dead", Cancel: true}, &reply)
	if reply.Error != nil {
		t.Fatal(reply.Error)
	}
	for {
		if ctx.Err() != nil {
			t.Fatalf("the cancel did not take the partition back to {1,2,3}: %+v", conf)
		}
		if r := leaderReplica(cluster, "dead"); r != nil {
			conf = r.group.Status().Configuration
			if slices.Equal(conf.Voters, []uint64{1, 2, 3}) && len(conf.Learners) == 0 && !conf.Joint() {
				break
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	victim := uint64(2)
	if leaderID == 2 {
		victim = 1
	}
	if err := cluster.StopBroker(ctx, victim); err != nil {
		t.Fatal(err)
	}
	pctx, pcancel := context.WithTimeout(ctx, 15*time.Second)
	defer pcancel()
	if _, err := c.produce(pctx, "dead", 0, buildBatch(t, "after")); err != nil {
		t.Fatalf("produce with two of {1,2,3} up: %v", err)
	}
}
