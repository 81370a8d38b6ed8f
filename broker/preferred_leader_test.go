package broker

import (
	"context"
	"fmt"
	"testing"
	"time"

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
	info := client.createTopic("preferred", 6, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, p := range info.Partitions {
		var leader raft.Status
		waitFor(ctx, t, fmt.Sprintf("a leader of partition %d", p.Partition), func() bool {
			for _, id := range p.Replicas {
				b := cluster.Broker(id)
				b.mu.RLock()
				r := b.groups[p.GroupID]
				b.mu.RUnlock()
				if r == nil {
					continue
				}
				if s := r.group.Status(); s.Role == raft.RoleLeader {
					leader = s
					return true
				}
			}
			return false
		})
		if leader.ID != p.Replicas[0] || leader.Term != 1 {
			t.Errorf("partition %d (replicas %v): first led by broker %d in term %d, want its preferred leader %d in term 1",
				p.Partition, p.Replicas, leader.ID, leader.Term, p.Replicas[0])
		}
	}
}

// TestReplicaElectionTimeout: the preferred leader's replica gets half the
// configured election timeout, every other replica (and a single replica,
// which has nobody to race) the whole of it, and nobody gets a timeout
// that is not above the heartbeat interval.
func TestReplicaElectionTimeout(t *testing.T) {
	cfg := DefaultConfig()
	cfg.ID = 2
	cfg.ElectionTimeout = time.Second
	cfg.HeartbeatInterval = 100 * time.Millisecond
	b := &Broker{cfg: cfg}
	for _, tc := range []struct {
		replicas []uint64
		want     time.Duration
	}{
		{[]uint64{2, 1, 3}, 500 * time.Millisecond},
		{[]uint64{1, 2, 3}, time.Second},
		{[]uint64{3, 1, 2}, time.Second},
		{[]uint64{2}, time.Second},
	} {
		if got := b.replicaElectionTimeout(tc.replicas); got != tc.want {
			t.Errorf("replicas %v on broker 2: election timeout %v, want %v", tc.replicas, got, tc.want)
		}
	}
	b.cfg.HeartbeatInterval = 500 * time.Millisecond
	if got := b.replicaElectionTimeout([]uint64{2, 1, 3}); got != time.Second {
		t.Errorf("heartbeat 500ms, election timeout 1s: preferred replica's timeout %v, want the configured 1s (half is not above the heartbeat)", got)
	}
}
