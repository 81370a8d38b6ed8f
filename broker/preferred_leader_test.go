package broker

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/raftmq/raftmq/protocol"
	"github.com/raftmq/raftmq/raft"
)

// TestNewPartitionsFirstElectTheirPreferredLeader: each partition of a new
// topic is first led by its preferred leader (its first replica), elected
// in the group's first term, not handed over later by balanceLeaders
// (which would make it the leader of a later term). Before the preferred
// replica waited less than the others, the first leader was whichever
// replica's random timer fired first, about two partitions in three not
// on the preferred broker.
func TestNewPartitionsFirstElectTheirPreferredLeader(t *testing.T) {
	// A long election timeout: the preferred replica campaigns within
	// [1 s, 2 s) of starting, the others not before 2 s, so replicas that
	// start up to a second apart (a busy test machine) still leave the
	// first election to the preferred one.
	cluster, client := startTestClusterWith(t, 3, func(c *Config) {
		fastTimings(c)
		c.ElectionTimeout = 2 * time.Second
	})
	const topic = "preferred"
	info := client.createTopic(topic, 6, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, p := range info.Partitions {
		var leader raft.Status
		waitFor(ctx, t, fmt.Sprintf("a leader of partition %d", p.Partition), func() bool {
			r := leaderPartitionReplica(cluster, topic, p.Partition)
			if r == nil {
				return false
			}
			leader = r.group.Status()
			return true
		})
		if leader.ID != p.Replicas[0] || leader.Term != 1 {
			t.Errorf("partition %d (replicas %v): first led by broker %d in term %d, want its preferred leader %d in term 1",
				p.Partition, p.Replicas, leader.ID, leader.Term, p.Replicas[0])
		}
	}
}

// TestCampaignsEarly: the preferred leader's replica (the first) campaigns
// early; every other replica, a single replica (nobody to race) and a
// broker whose heartbeat is not below half its election timeout do not.
func TestCampaignsEarly(t *testing.T) {
	cfg := DefaultConfig()
	cfg.ID = 2
	cfg.ElectionTimeout = time.Second
	cfg.HeartbeatInterval = 100 * time.Millisecond
	b := &Broker{cfg: cfg}
	for _, tc := range []struct {
		replicas []uint64
		want     bool
	}{
		{[]uint64{2, 1, 3}, true},
		{[]uint64{1, 2, 3}, false},
		{[]uint64{3, 1, 2}, false},
		{[]uint64{2}, false},
	} {
		if got := b.campaignsEarly(tc.replicas); got != tc.want {
			t.Errorf("replicas %v on broker 2: campaigns early %v, want %v", tc.replicas, got, tc.want)
		}
	}
	b.cfg.HeartbeatInterval = 500 * time.Millisecond
	if b.campaignsEarly([]uint64{2, 1, 3}) {
		t.Error("heartbeat 500ms, election timeout 1s: the preferred replica campaigns early (raft refuses the configuration)")
	}
}

// TestReorderedReplicasMoveWhoCampaignsEarly: a reassignment that only
// reorders a partition's replicas moves its preferred leader with no Raft
// change and no replica restart; the running replicas follow, so the new
// first replica campaigns early and the old one no longer does.
func TestReorderedReplicasMoveWhoCampaignsEarly(t *testing.T) {
	cluster, client := startTestCluster(t, 3)
	const topic = "reordered"
	replicas := client.createTopic(topic, 1, 3).Partitions[0].Replicas
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	campaignEarly := func(order []uint64) bool {
		for i, id := range order {
			r := localPartitionReplica(cluster.Broker(id), topic, 0)
			if r == nil || r.group.CampaignsEarly() != (i == 0) {
				return false
			}
		}
		return true
	}
	waitFor(ctx, t, fmt.Sprintf("only broker %d (first of %v) campaigning early", replicas[0], replicas), func() bool { return campaignEarly(replicas) })
	reordered := []uint64{replicas[1], replicas[0], replicas[2]}
	var reply protocol.ReassignReply
	client.admin(protocol.AdminReassignPartition, protocol.ReassignPartitionRequest{Version: 1, Topic: topic, Replicas: reordered}, &reply)
	if reply.Error != nil {
		t.Fatalf("reassign %v: %v", reordered, reply.Error)
	}
	waitFor(ctx, t, fmt.Sprintf("only broker %d (first of %v) campaigning early", reordered[0], reordered), func() bool { return campaignEarly(reordered) })
}
