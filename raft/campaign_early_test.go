package raft

import (
	"testing"
	"time"
)

func TestCampaignEarlyTimeoutIsWithinHalfToOneTimeout(t *testing.T) {
	net := newTestNet(t, 1, 2, 3)
	c := net.addNode(1, newMemLog(), &memStable{}, func(cfg *coreConfig) { cfg.CampaignEarly = true }).core
	seen := map[time.Duration]bool{}
	for range 40 {
		d := c.randomizedElectionTimeout()
		if d < testElection/2 || d >= testElection {
			t.Fatalf("timeout %v outside [%v, %v)", d, testElection/2, testElection)
		}
		seen[d] = true
	}
	if len(seen) < 20 {
		t.Fatalf("only %d distinct timeouts in 40 draws", len(seen))
	}
}

// TestCampaignEarlyReplicaWinsTheFirstElection: replicas that start
// together elect the one that campaigns early, in term 1, whatever the
// others' random timeouts (seeds), while without it the first leader
// varies with them.
func TestCampaignEarlyReplicaWinsTheFirstElection(t *testing.T) {
	firstLeader := func(early uint64, seed uint64) (leader, term uint64) {
		net := newTestNet(t, 1, 2, 3)
		for _, id := range net.ids { // replace each node with one of this seed
			net.addNode(id, newMemLog(), &memStable{}, func(cfg *coreConfig) {
				cfg.Seed = seed*10 + id
				cfg.CampaignEarly = id == early
			})
		}
		for range 100 {
			net.advance(testHeartbeat)
			for _, id := range net.ids {
				if c := net.nodes[id].core; c.role == RoleLeader {
					return id, c.term
				}
			}
		}
		t.Fatalf("seed %d: no leader after %v", seed, net.now)
		return 0, 0
	}
	unpreferred := map[uint64]bool{}
	for seed := range uint64(30) {
		early := seed%3 + 1
		if leader, term := firstLeader(early, seed); leader != early || term != 1 {
			t.Errorf("seed %d: first leader %d in term %d, want %d (campaigns early) in term 1", seed, leader, term, early)
		}
		leader, _ := firstLeader(0, seed)
		unpreferred[leader] = true
	}
	if len(unpreferred) < 2 {
		t.Errorf("without CampaignEarly every seed elected the same replica first (%v): the test cannot tell the option's effect", unpreferred)
	}
}

func TestCampaignEarlyNeedsHeartbeatBelowHalfTheElectionTimeout(t *testing.T) {
	cfg := DefaultGroupConfig()
	cfg.GroupID = 1
	cfg.Log, cfg.Stable, cfg.StateMachine = newMemLog(), &memStable{}, &memStateMachine{}
	cfg.CampaignEarly = true
	cfg.ElectionTimeout, cfg.HeartbeatInterval = time.Second, 500*time.Millisecond
	if err := cfg.Validate(); err == nil {
		t.Fatal("CampaignEarly with a heartbeat of half the election timeout: no error")
	}
	cfg.HeartbeatInterval = 499 * time.Millisecond
	if err := cfg.Validate(); err != nil {
		t.Fatalf("CampaignEarly with a heartbeat below half the election timeout: %v", err)
	}
}
