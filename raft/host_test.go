package raft

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/raftmq/raftmq/protocol"
)

// memNetwork is an in-memory transport: Send hands each message to the
// destination host's Step.
type memNetwork struct {
	mu    sync.RWMutex
	hosts map[uint64]*Host
	cut   map[uint64]bool // nodes whose traffic is dropped
}

func (n *memNetwork) send(msgs []protocol.RaftMessage) {
	n.mu.RLock()
	defer n.mu.RUnlock()
	for i := range msgs {
		m := &msgs[i]
		if n.cut[m.From] || n.cut[m.To] {
			continue
		}
		if h := n.hosts[m.To]; h != nil {
			h.Step(*m)
		}
	}
}

type testCluster struct {
	net    *memNetwork
	hosts  map[uint64]*Host
	groups map[uint64]*Group
	fsms   map[uint64]*memStateMachine
	logs   map[uint64]*memLog
}

func newTestCluster(t testing.TB, ids []uint64, tune func(*GroupConfig)) *testCluster {
	t.Helper()
	return newTestClusterWith(t, ids, testClusterOptions{group: func(_ uint64, cfg *GroupConfig) {
		if tune != nil {
			tune(cfg)
		}
	}})
}

// testClusterOptions adjusts a test cluster: host each host's
// configuration, group each node's group configuration after the defaults
// (it may replace the log or the state machine; logs and fsms then hold
// only the defaults left in place).
type testClusterOptions struct {
	host  func(*HostConfig)
	group func(id uint64, cfg *GroupConfig)
}

func newTestClusterWith(t testing.TB, ids []uint64, opts testClusterOptions) *testCluster {
	t.Helper()
	net := &memNetwork{hosts: map[uint64]*Host{}, cut: map[uint64]bool{}}
	tc := &testCluster{net: net, hosts: map[uint64]*Host{}, groups: map[uint64]*Group{}, fsms: map[uint64]*memStateMachine{}, logs: map[uint64]*memLog{}}
	for _, id := range ids {
		hostCfg := HostConfig{NodeID: id, Send: net.send, Seed: id}
		if opts.host != nil {
			opts.host(&hostCfg)
		}
		h, err := NewHost(hostCfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = h.Close() })
		net.mu.Lock()
		net.hosts[id] = h
		net.mu.Unlock()
		tc.hosts[id] = h
	}
	for _, id := range ids {
		cfg := DefaultGroupConfig()
		cfg.GroupID = 1
		cfg.Voters = ids
		// Long enough that a loaded machine or the race detector does not
		// delay heartbeats past it: the tests assume a stable leader unless
		// they move it themselves.
		cfg.ElectionTimeout = 250 * time.Millisecond
		cfg.HeartbeatInterval = 25 * time.Millisecond
		log, fsm := newMemLog(), &memStateMachine{keep: true}
		cfg.Log, cfg.Stable, cfg.StateMachine = log, &memStable{}, fsm
		if opts.group != nil {
			opts.group(id, &cfg)
		}
		if cfg.Log == LogStorage(log) {
			tc.logs[id] = log
		}
		if cfg.StateMachine == StateMachine(fsm) {
			tc.fsms[id] = fsm
		}
		g, err := tc.hosts[id].AddGroup(cfg)
		if err != nil {
			t.Fatal(err)
		}
		tc.groups[id] = g
	}
	return tc
}

// waitFor polls cond until it holds or the timeout passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func (tc *testCluster) leader(t testing.TB) uint64 {
	t.Helper()
	var leader uint64
	waitFor(t, 10*time.Second, "a leader", func() bool {
		for id, g := range tc.groups {
			if st := g.Status(); st.Role == RoleLeader {
				leader = id
				return true
			}
		}
		return false
	})
	return leader
}

func TestHostReplicatesProposalsToEveryStateMachine(t *testing.T) {
	tc := newTestCluster(t, []uint64{1, 2, 3}, nil)
	leader := tc.leader(t)
	ctx := context.Background()
	var props []*Proposal
	for i := range 200 {
		mode := AckCommitted
		if i%2 == 1 {
			mode = AckApplied
		}
		props = append(props, tc.groups[leader].Propose(ctx, protocol.EntryControl, fmt.Appendf(nil, "entry-%d", i), mode))
	}
	var last uint64
	for i, p := range props {
		index, term, err := p.Wait(ctx)
		if err != nil {
			t.Fatalf("proposal %d: %v", i, err)
		}
		if index <= last || term == 0 {
			t.Fatalf("proposal %d: index %d term %d after %d", i, index, term, last)
		}
		last = index
	}
	for id, fsm := range tc.fsms {
		waitFor(t, 5*time.Second, fmt.Sprintf("node %d to apply %d", id, last), func() bool {
			fsm.mu.Lock()
			defer fsm.mu.Unlock()
			return fsm.last >= last
		})
	}
	want := tc.fsms[leader]
	for id, fsm := range tc.fsms {
		fsm.mu.Lock()
		for i := range min(len(fsm.applied), len(want.applied)) {
			a, b := fsm.applied[i], want.applied[i]
			if a.Index != b.Index || a.Term != b.Term || string(a.Data) != string(b.Data) {
				t.Errorf("node %d applied %+v at position %d, leader %+v", id, a, i, b)
			}
		}
		fsm.mu.Unlock()
	}
	if st := tc.groups[leader].Status(); st.CommitIndex < last || st.AppliedIndex < last {
		t.Fatalf("leader status %+v, want commit and applied >= %d", st, last)
	}
}

func TestProposeOnFollowerFailsWithLeader(t *testing.T) {
	tc := newTestCluster(t, []uint64{1, 2, 3}, nil)
	leader := tc.leader(t)
	for id, g := range tc.groups {
		if id == leader {
			continue
		}
		waitFor(t, 5*time.Second, "follower to learn the leader", func() bool { return g.Status().Leader == leader })
		_, _, err := g.Propose(context.Background(), protocol.EntryControl, []byte("x"), AckCommitted).Wait(context.Background())
		var nle *NotLeaderError
		if !errors.As(err, &nle) || nle.Leader != leader {
			t.Fatalf("propose on follower %d: %v, want NotLeaderError{%d}", id, err, leader)
		}
	}
}

func TestHostTransferLeadership(t *testing.T) {
	tc := newTestCluster(t, []uint64{1, 2, 3}, nil)
	leader := tc.leader(t)
	ctx := context.Background()
	if _, _, err := tc.groups[leader].Propose(ctx, protocol.EntryControl, []byte("x"), AckCommitted).Wait(ctx); err != nil {
		t.Fatal(err)
	}
	target := leader%3 + 1
	tctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := tc.groups[leader].TransferLeadership(tctx, target); err != nil {
		t.Fatalf("transfer %d -> %d: %v", leader, target, err)
	}
	waitFor(t, 5*time.Second, "target to lead", func() bool { return tc.groups[target].Status().Role == RoleLeader })
	if _, _, err := tc.groups[target].Propose(ctx, protocol.EntryControl, []byte("y"), AckApplied).Wait(ctx); err != nil {
		t.Fatalf("propose at new leader: %v", err)
	}
}

func TestRemoveGroupFailsPendingProposals(t *testing.T) {
	tc := newTestCluster(t, []uint64{1, 2, 3}, nil)
	leader := tc.leader(t)
	for id := range tc.groups {
		if id != leader {
			tc.net.mu.Lock()
			tc.net.cut[id] = true
			tc.net.mu.Unlock()
		}
	}
	p := tc.groups[leader].Propose(context.Background(), protocol.EntryControl, []byte("x"), AckCommitted)
	if err := tc.hosts[leader].RemoveGroup(1); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, _, err := p.Wait(ctx); !errors.Is(err, ErrClosed) {
		t.Fatalf("pending proposal after RemoveGroup: %v, want ErrClosed", err)
	}
}

// TestAckAppendedUnsafeResolvesBeforeCommit: an AckAppendedUnsafe proposal
// resolves once the leader appended it, even with no follower reachable, while
// an AckCommitted one waits for a quorum.
func TestAckAppendedUnsafeResolvesBeforeCommit(t *testing.T) {
	tc := newTestCluster(t, []uint64{1, 2, 3}, func(cfg *GroupConfig) { cfg.DisableCheckQuorum = true })
	leader := tc.leader(t)
	tc.net.mu.Lock()
	for id := range tc.hosts {
		if id != leader {
			tc.net.cut[id] = true
		}
	}
	tc.net.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	committed := tc.groups[leader].Propose(ctx, protocol.EntryControl, []byte("safe"), AckCommitted)
	unsafe := tc.groups[leader].Propose(ctx, protocol.EntryControl, []byte("unsafe"), AckAppendedUnsafe)
	index, _, err := unsafe.Wait(ctx)
	if err != nil {
		t.Fatalf("unsafe proposal: %v", err)
	}
	if st := tc.groups[leader].Status(); st.CommitIndex >= index {
		t.Fatalf("commit index %d reached %d with every follower cut off", st.CommitIndex, index)
	}
	select {
	case <-committed.Done():
		t.Fatal("an AckCommitted proposal resolved without a quorum")
	default:
	}
	tc.net.mu.Lock()
	clear(tc.net.cut)
	tc.net.mu.Unlock()
	if _, _, err := committed.Wait(ctx); err != nil {
		t.Fatalf("after healing, the committed proposal: %v", err)
	}
	waitFor(t, 5*time.Second, "the unsafe entry to commit after healing", func() bool {
		return tc.groups[leader].Status().CommitIndex >= index
	})
}
