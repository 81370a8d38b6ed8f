package raft

import (
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/raftmq/raftmq/protocol"
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

// TestSetCampaignEarlyChangesTheRunningReplicasElectionTimer: a running
// replica that cannot reach its peers pre-votes once per election timer.
// Set to campaign early, it draws its timers from [ET/2, ET), so some gap
// between its pre-votes is below ET; set back, every gap is at least ET
// again. Timings that do not allow it are refused.
func TestSetCampaignEarlyChangesTheRunningReplicasElectionTimer(t *testing.T) {
	const et = 200 * time.Millisecond
	var mu sync.Mutex
	var preVotes []time.Time
	h, err := NewHost(HostConfig{NodeID: 1, Seed: 7, Send: func(msgs []protocol.RaftMessage) {
		mu.Lock()
		defer mu.Unlock()
		for _, m := range msgs {
			if m.Type == protocol.MsgPreVote && m.To == 2 {
				preVotes = append(preVotes, time.Now())
			}
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	cfg := DefaultGroupConfig()
	cfg.GroupID, cfg.Voters = 1, []uint64{1, 2, 3}
	cfg.ElectionTimeout, cfg.HeartbeatInterval = et, 20*time.Millisecond
	cfg.Log, cfg.Stable, cfg.StateMachine = newMemLog(), &memStable{}, &memStateMachine{}
	g, err := h.AddGroup(cfg)
	if err != nil {
		t.Fatal(err)
	}
	// gaps waits for n+1 more pre-votes (n timers drawn after the first)
	// and returns the n gaps between them.
	gaps := func(n int) []time.Duration {
		mu.Lock()
		from := len(preVotes)
		mu.Unlock()
		waitFor(t, time.Duration(n+2)*2*et+5*time.Second, "pre-votes", func() bool {
			mu.Lock()
			defer mu.Unlock()
			return len(preVotes) >= from+n+2
		})
		mu.Lock()
		defer mu.Unlock()
		var out []time.Duration
		// The first gap may have been drawn before the change.
		for i := from + 1; i < from+n+1; i++ {
			out = append(out, preVotes[i+1].Sub(preVotes[i]))
		}
		return out
	}
	if err := g.SetCampaignEarly(true); err != nil {
		t.Fatal(err)
	}
	if !g.CampaignsEarly() {
		t.Fatal("CampaignsEarly false after SetCampaignEarly(true)")
	}
	early := gaps(8)
	if slices.Min(early) >= et {
		t.Errorf("campaigning early: gaps between pre-votes %v, none below the election timeout %v", early, et)
	}
	if err := g.SetCampaignEarly(false); err != nil {
		t.Fatal(err)
	}
	// A gap is measured between two sends, each some time after the
	// core's clock read; a late first send can shorten the next gap by
	// that lag, hence the tenth of slack.
	if late := gaps(4); slices.Min(late) < et-et/10 {
		t.Errorf("no longer campaigning early: gaps between pre-votes %v, one below the election timeout %v", late, et)
	}

	cfg.GroupID, cfg.HeartbeatInterval = 2, et/2
	slow, err := h.AddGroup(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := slow.SetCampaignEarly(true); err == nil || slow.CampaignsEarly() {
		t.Errorf("heartbeat of half the election timeout: SetCampaignEarly(true) = %v, CampaignsEarly %v; want an error and no change", err, slow.CampaignsEarly())
	}
}
