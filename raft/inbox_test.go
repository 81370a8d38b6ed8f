package raft

import (
	"context"
	"encoding/binary"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/raftmq/raftmq/protocol"
)

// TestProposalInboxTakesEachProposalOnceInPushOrder: proposers push
// concurrently while a worker takes; every proposal comes out exactly once,
// each proposer's in the order it pushed them, entries beside their
// proposals, and every push that found the inbox empty is answered by
// exactly one take (or the close) that found it not empty: one schedule
// per batch is enough. After close, pushes fail.
func TestProposalInboxTakesEachProposalOnceInPushOrder(t *testing.T) {
	const proposers, each = 8, 2000
	var q proposalInbox
	var firstPushes atomic.Int64
	pushed := make([][]*Proposal, proposers)
	var wg sync.WaitGroup
	for w := range proposers {
		wg.Go(func() {
			for i := range each {
				p, wasEmpty := q.push(protocol.EntryControl, binary.BigEndian.AppendUint32([]byte{byte(w)}, uint32(i)), AckCommitted)
				if p == nil {
					t.Error("push to an open inbox failed")
					return
				}
				pushed[w] = append(pushed[w], p)
				if wasEmpty {
					firstPushes.Add(1)
				}
			}
		})
	}
	var props []*Proposal
	var ents []protocol.Entry
	var spareProps []*Proposal
	var spareEnts []protocol.Entry
	nonEmptyTakes := int64(0)
	proposersDone := make(chan struct{})
	go func() { wg.Wait(); close(proposersDone) }()
	for done := false; !done; {
		select {
		case <-proposersDone:
			done = true
		default:
		}
		took, tookEnts := q.take(spareProps, spareEnts)
		if len(took) != len(tookEnts) {
			t.Fatalf("took %d proposals with %d entries", len(took), len(tookEnts))
		}
		if len(took) > 0 {
			nonEmptyTakes++
			props, ents = append(props, took...), append(ents, tookEnts...)
		}
		spareProps, spareEnts = took[:0], tookEnts[:0]
	}
	if rest := q.close(); len(rest) > 0 {
		t.Fatalf("%d proposals left after the last take with every push done", len(rest))
	}
	if len(props) != proposers*each {
		t.Fatalf("took %d proposals, want %d", len(props), proposers*each)
	}
	if firstPushes.Load() != nonEmptyTakes {
		t.Fatalf("%d pushes found the inbox empty, %d takes found it not empty", firstPushes.Load(), nonEmptyTakes)
	}
	next := make([]uint32, proposers)
	for i, p := range props {
		w, seq := ents[i].Data[0], binary.BigEndian.Uint32(ents[i].Data[1:])
		if seq != next[w] {
			t.Fatalf("proposer %d: entry %d taken where %d was next", w, seq, next[w])
		}
		if pushed[w][seq] != p {
			t.Fatalf("proposer %d entry %d taken with another proposal", w, seq)
		}
		next[w]++
	}
	if p, _ := q.push(protocol.EntryControl, nil, AckCommitted); p != nil {
		t.Fatal("push to a closed inbox succeeded")
	}
	if q.waiting() {
		t.Fatal("a closed inbox has proposals waiting")
	}
}

// TestProposalInboxCloseReturnsWaitingProposals: close hands back what
// waited, in push order, and empties the inbox.
func TestProposalInboxCloseReturnsWaitingProposals(t *testing.T) {
	var q proposalInbox
	a, first := q.push(protocol.EntryControl, []byte("a"), AckCommitted)
	b, second := q.push(protocol.EntryControl, []byte("b"), AckApplied)
	if !first || second {
		t.Fatalf("wasEmpty %v then %v, want true then false", first, second)
	}
	if !q.waiting() {
		t.Fatal("inbox with two proposals not waiting")
	}
	rest := q.close()
	if len(rest) != 2 || rest[0] != a || rest[1] != b || b.mode != AckApplied {
		t.Fatalf("close returned %v, want the two proposals in order", rest)
	}
	if props, ents := q.take(nil, nil); len(props) != 0 || len(ents) != 0 {
		t.Fatal("a closed inbox gave proposals")
	}
}

// waitResolved waits for p with a generous bound: a proposal that never
// resolves fails the test instead of hanging it.
func waitResolved(t *testing.T, p *Proposal, what string) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, _, err := p.Wait(ctx)
	if errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("%s: proposal never resolved", what)
	}
	return err
}

// TestProposeThatRacedAStepDownFailsWithNotLeader: a proposer that read
// "leader" just before the replica stepped down pushes into the inbox of a
// follower; the core refuses it with the leader it knows, and it resolves.
// (The stale read is made deterministic by setting accepting by hand.)
func TestProposeThatRacedAStepDownFailsWithNotLeader(t *testing.T) {
	tc := newTestCluster(t, []uint64{1, 2, 3}, nil)
	leader := tc.leader(t)
	follower := leader%3 + 1
	g := tc.groups[follower]
	waitFor(t, 10*time.Second, "the follower to learn the leader", func() bool { return g.Status().Leader == leader })
	g.accepting.Store(true) // as read by a proposer just before a step-down
	err := waitResolved(t, g.Propose(context.Background(), protocol.EntryControl, []byte("late"), AckCommitted), "stale proposal on a follower")
	var nle *NotLeaderError
	if !errors.As(err, &nle) || nle.Leader != leader {
		t.Fatalf("stale proposal on follower %d: %v, want NotLeaderError{%d}", follower, err, leader)
	}
	// The round that refused the proposal, or the next, publishes the
	// follower's status with accepting off; under a slow machine (-race
	// on 2 cores) the test can read accepting between the refusal and
	// that, or the follower may have won an election since.
	waitFor(t, 10*time.Second, "the follower's round to reset accepting", func() bool {
		return !g.accepting.Load() || g.Status().Role == RoleLeader
	})
}

// TestProposeThatRacedCloseFailsWithClosed: a proposer that read "open"
// just before RemoveGroup finds the inbox closed and fails with ErrClosed.
func TestProposeThatRacedCloseFailsWithClosed(t *testing.T) {
	tc := newTestCluster(t, []uint64{1, 2, 3}, nil)
	leader := tc.leader(t)
	g := tc.groups[leader]
	if err := tc.hosts[leader].RemoveGroup(1); err != nil {
		t.Fatal(err)
	}
	if err := waitResolved(t, g.Propose(context.Background(), protocol.EntryControl, []byte("x"), AckCommitted), "proposal after close"); !errors.Is(err, ErrClosed) {
		t.Fatalf("proposal after RemoveGroup: %v, want ErrClosed", err)
	}
	g.accepting.Store(true) // as read by a proposer just before the close
	if err := waitResolved(t, g.Propose(context.Background(), protocol.EntryControl, []byte("y"), AckCommitted), "stale proposal after close"); !errors.Is(err, ErrClosed) {
		t.Fatalf("stale proposal after RemoveGroup: %v, want ErrClosed", err)
	}
}

// TestProposeDuringTransferFailsWithTransferring: while a leadership
// transfer is under way (its target cut off, so it cannot finish),
// proposals fail with ErrTransferring, also one that read "accepting"
// before the transfer began (the core refuses it).
func TestProposeDuringTransferFailsWithTransferring(t *testing.T) {
	tc := newTestCluster(t, []uint64{1, 2, 3}, func(cfg *GroupConfig) {
		// The transfer is abandoned after an election timeout: make that
		// longer than the test needs (the outcomes are checked against
		// Status, so a slower machine weakens the test, not fails it).
		cfg.ElectionTimeout = time.Second
		cfg.HeartbeatInterval = 50 * time.Millisecond
	})
	leader := tc.leader(t)
	g := tc.groups[leader]
	if err := waitResolved(t, g.Propose(context.Background(), protocol.EntryControl, []byte("x"), AckCommitted), "first proposal"); err != nil {
		t.Fatal(err)
	}
	target := leader%3 + 1
	tc.net.mu.Lock()
	tc.net.cut[target] = true
	tc.net.mu.Unlock()
	transferDone := make(chan error, 1)
	go func() { transferDone <- g.TransferLeadership(context.Background(), target) }()
	waitFor(t, 10*time.Second, "the transfer to start", func() bool { return g.Status().Transferee == target })
	fast := waitResolved(t, g.Propose(context.Background(), protocol.EntryControl, []byte("y"), AckCommitted), "proposal during transfer")
	g.accepting.Store(true) // as read by a proposer just before the transfer began
	stale := waitResolved(t, g.Propose(context.Background(), protocol.EntryControl, []byte("z"), AckCommitted), "stale proposal during transfer")
	stillTransferring := g.Status().Transferee == target
	if !errors.Is(fast, ErrTransferring) && stillTransferring {
		t.Fatalf("proposal during transfer: %v, want ErrTransferring", fast)
	}
	if !errors.Is(stale, ErrTransferring) && stillTransferring {
		t.Fatalf("stale proposal during transfer: %v, want ErrTransferring", stale)
	}
	tc.net.mu.Lock()
	clear(tc.net.cut)
	tc.net.mu.Unlock()
	select {
	case <-transferDone:
	case <-time.After(30 * time.Second):
		t.Fatal("transfer never returned")
	}
}

// TestProposalsRacingStepDownAndCloseAllResolve: proposers keep proposing
// on the leader while it is cut off (it steps down by CheckQuorum), the
// network heals (its uncommitted entries are replaced) and its group is
// removed. Every proposal resolves, with success or one of the errors of
// those events; none hangs. At least one proposal failed with
// NotLeaderError after the step-down.
func TestProposalsRacingStepDownAndCloseAllResolve(t *testing.T) {
	tc := newTestCluster(t, []uint64{1, 2, 3}, nil)
	leader := tc.leader(t)
	g := tc.groups[leader]
	var mu sync.Mutex
	var props []*Proposal
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				p := g.Propose(context.Background(), protocol.EntryControl, []byte("racing"), AckCommitted)
				mu.Lock()
				props = append(props, p)
				mu.Unlock()
				// Keep the load moderate (not for correctness): wait a
				// little for a pending proposal, pause after a refused one.
				if p.state.Load() == proposalPending {
					ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
					_, _, _ = p.Wait(ctx)
					cancel()
				} else {
					time.Sleep(100 * time.Microsecond)
				}
			}
		})
	}
	waitFor(t, 10*time.Second, "some proposals", func() bool { mu.Lock(); defer mu.Unlock(); return len(props) > 100 })
	mu.Lock()
	first := props[0]
	mu.Unlock()
	if err := waitResolved(t, first, "first proposal"); err != nil {
		t.Fatalf("first proposal on a healthy cluster: %v", err)
	}
	tc.net.mu.Lock()
	tc.net.cut[leader] = true
	tc.net.mu.Unlock()
	waitFor(t, 20*time.Second, "the cut-off leader to step down", func() bool { return g.Status().Role != RoleLeader })
	mu.Lock()
	afterStepDown := len(props)
	mu.Unlock()
	waitFor(t, 10*time.Second, "proposals after the step-down", func() bool { mu.Lock(); defer mu.Unlock(); return len(props) > afterStepDown+10 })
	tc.net.mu.Lock()
	clear(tc.net.cut)
	tc.net.mu.Unlock()
	waitFor(t, 20*time.Second, "a new leader", func() bool {
		for id, other := range tc.groups {
			if id != leader && other.Status().Role == RoleLeader {
				return true
			}
		}
		return false
	})
	if err := tc.hosts[leader].RemoveGroup(1); err != nil {
		t.Fatal(err)
	}
	close(stop)
	wg.Wait()
	counts := map[string]int{}
	for i, p := range props {
		err := waitResolved(t, p, "racing proposal")
		var nle *NotLeaderError
		switch {
		case err == nil:
			counts["committed"]++
		case errors.As(err, &nle):
			counts["not leader"]++
		case errors.Is(err, ErrProposalDropped):
			counts["dropped"]++
		case errors.Is(err, ErrClosed):
			counts["closed"]++
		default:
			t.Fatalf("proposal %d: unexpected %v", i, err)
		}
	}
	t.Logf("%d proposals: %v", len(props), counts)
	if counts["committed"] == 0 || counts["not leader"] == 0 {
		t.Fatalf("outcomes %v: want some committed before the cut and some refused after the step-down", counts)
	}
}

// TestProposeConfigEntryFailsAlone: a config entry is refused at Propose
// and does not take the proposals batched with it down.
func TestProposeConfigEntryFailsAlone(t *testing.T) {
	tc := newTestCluster(t, []uint64{1, 2, 3}, nil)
	leader := tc.leader(t)
	g := tc.groups[leader]
	before := g.Propose(context.Background(), protocol.EntryControl, []byte("before"), AckCommitted)
	config := g.Propose(context.Background(), protocol.EntryConfig, []byte("config"), AckCommitted)
	after := g.Propose(context.Background(), protocol.EntryControl, []byte("after"), AckCommitted)
	select {
	case <-config.Done():
	default:
		t.Fatal("a config entry proposal did not fail at once")
	}
	if err := waitResolved(t, config, "config proposal"); !errors.Is(err, ErrConfigEntry) {
		t.Fatalf("config proposal: %v, want ErrConfigEntry", err)
	}
	for _, p := range []*Proposal{before, after} {
		if err := waitResolved(t, p, "proposal beside a config entry"); err != nil {
			t.Fatalf("proposal beside a config entry: %v", err)
		}
	}
}
