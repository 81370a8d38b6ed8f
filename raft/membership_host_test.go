package raft

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/raftmq/raftmq/protocol"
)

// Through the Group API: a new server joins as a learner (started with no
// configuration), is promoted once caught up, and the leader removes
// itself; it steps down once C_new commits and the others carry on.
func TestHostLearnerJoinsIsPromotedAndLeaderRemovesItself(t *testing.T) {
	calls := 0
	tc := newTestCluster(t, []uint64{1, 2, 3, 4}, func(cfg *GroupConfig) {
		calls++
		cfg.Voters = []uint64{1, 2, 3}
		if calls == 4 {
			cfg.Voters = nil // node 4 joins later and learns the configuration
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	leader := tc.leader(t)
	g := tc.groups[leader]
	for i := range 20 {
		if _, _, err := g.Propose(ctx, protocol.EntryControl, []byte{byte(i)}, AckCommitted).Wait(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if err := g.PromoteLearner(ctx, 4); !errors.Is(err, ErrInvalidMembership) {
		t.Fatalf("promote a non-member: %v, want ErrInvalidMembership", err)
	}
	if err := g.AddLearner(ctx, 4); err != nil {
		t.Fatalf("AddLearner: %v", err)
	}
	waitFor(t, 10*time.Second, "learner 4 to catch up", func() bool {
		st := tc.groups[4].Status()
		return st.AppliedIndex >= g.Status().CommitIndex && slices.Equal(st.Configuration.Learners, []uint64{4})
	})
	if st := tc.groups[4].Status(); st.Role != RoleFollower {
		t.Fatalf("learner role %v", st.Role)
	}
	if err := g.PromoteLearner(ctx, 4); err != nil {
		t.Fatalf("PromoteLearner: %v", err)
	}
	if st := g.Status(); !slices.Equal(st.Configuration.Voters, []uint64{1, 2, 3, 4}) || st.Configuration.Joint() {
		t.Fatalf("after promotion: %+v", st.Configuration)
	}
	if err := g.ChangeMembership(ctx, MembershipChange{Remove: []uint64{leader}}); err != nil {
		t.Fatalf("remove the leader: %v", err)
	}
	if st := g.Status(); st.Role == RoleLeader || slices.Contains(st.Configuration.Voters, leader) {
		t.Fatalf("removed leader: role %v conf %+v", st.Role, st.Configuration)
	}
	var next uint64
	waitFor(t, 10*time.Second, "a new leader", func() bool {
		for id, other := range tc.groups {
			if id != leader && other.Status().Role == RoleLeader {
				next = id
				return true
			}
		}
		return false
	})
	var index uint64
	waitFor(t, 10*time.Second, "a proposal at the new leader", func() bool {
		var err error
		index, _, err = tc.groups[next].Propose(ctx, protocol.EntryControl, []byte("after"), AckCommitted).Wait(ctx)
		return err == nil
	})
	for id, other := range tc.groups {
		if id == leader {
			continue
		}
		waitFor(t, 10*time.Second, "the remaining members to commit", func() bool { return other.Status().CommitIndex >= index })
	}
}

// AddVoter promotes automatically: the new server joins as a learner and
// becomes a voter only once it is within PromoteMaxLag entries of the
// leader, which with a long log it is not at first.
func TestHostAddVoterPromotesTheLearnerOnceCaughtUp(t *testing.T) {
	calls := 0
	tc := newTestCluster(t, []uint64{1, 2, 3, 4}, func(cfg *GroupConfig) {
		calls++
		cfg.Voters = []uint64{1, 2, 3}
		cfg.PromoteMaxLag = 8
		cfg.MaxAppendBytes = 64 // the learner catches up in many small appends
		if calls == 4 {
			cfg.Voters = nil
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	data := make([]byte, 64)
	for range 300 {
		tc.atLeader(ctx, t, func(g *Group) error {
			_, _, err := g.Propose(ctx, protocol.EntryControl, data, AckCommitted).Wait(ctx)
			return err
		})
	}
	g := tc.atLeader(ctx, t, func(g *Group) error { return g.AddVoter(ctx, 4) })
	st := g.Status()
	if !slices.Equal(st.Configuration.Voters, []uint64{1, 2, 3, 4}) || len(st.Configuration.Learners) != 0 || st.Configuration.Joint() {
		t.Fatalf("configuration after AddVoter: %+v", st.Configuration)
	}
	// The promotion's joint entry came after the learner was within 8
	// entries of the leader's log, so it holds everything up to there.
	if last := tc.groups[4].Status().LastIndex; last+8 < st.ConfigurationIndex-2 {
		t.Fatalf("new voter's log ends at %d, the promotion is at %d", last, st.ConfigurationIndex)
	}
	tc.atLeader(ctx, t, func(g *Group) error { return g.AddVoter(ctx, 4) })
}

// atLeader runs op on the current leader and runs it again on the next one
// when leadership moves under it: with a 50 ms election timeout, a loaded
// machine (or the race detector) can delay heartbeats past it. op must be
// safe to repeat.
func (tc *testCluster) atLeader(ctx context.Context, t *testing.T, op func(*Group) error) *Group {
	t.Helper()
	for attempt := 0; ; attempt++ {
		g := tc.groups[tc.leader(t)]
		err := op(g)
		if err == nil {
			return g
		}
		var notLeader *NotLeaderError
		moved := errors.As(err, &notLeader) || errors.Is(err, ErrProposalDropped) ||
			errors.Is(err, ErrTransferring) || errors.Is(err, ErrConfigChangeInProgress)
		if !moved || ctx.Err() != nil {
			t.Fatalf("attempt %d: %v", attempt, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A learner that stopped answering is not promoted, however caught up it
// was when it stopped: its match index is what it had then, and as a
// voter it would count toward quorums it never joins (a reassignment onto
// a broker that died as a learner left the partition with a dead voter in
// place of a healthy replica). The leader reports it in
// Status.Unconfirmed; once it answers again it is promoted.
func TestHostSilentLearnerIsNotPromoted(t *testing.T) {
	calls := 0
	tc := newTestCluster(t, []uint64{1, 2, 3, 4}, func(cfg *GroupConfig) {
		calls++
		cfg.Voters = []uint64{1, 2, 3}
		if calls == 4 {
			cfg.Voters = nil
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	g := tc.atLeader(ctx, t, func(g *Group) error { return g.AddLearner(ctx, 4) })
	tc.atLeader(ctx, t, func(g *Group) error {
		_, _, err := g.Propose(ctx, protocol.EntryControl, []byte("x"), AckCommitted).Wait(ctx)
		return err
	})
	// Every member, learner 4 included, acknowledges the configuration
	// (a slow follower may take a moment).
	waitFor(t, 10*time.Second, "learner 4 to catch up and every member to be confirmed", func() bool {
		return tc.groups[4].Status().AppliedIndex >= g.Status().CommitIndex && len(g.Status().Unconfirmed) == 0
	})
	tc.net.mu.Lock()
	tc.net.cut[4] = true
	tc.net.mu.Unlock()
	waitFor(t, 10*time.Second, "the leader to report learner 4 silent", func() bool {
		return slices.Equal(tc.groups[tc.leader(t)].Status().Unconfirmed, []uint64{4})
	})
	var promoteErr error
	leader := tc.atLeader(ctx, t, func(g *Group) error {
		promoteErr = g.PromoteLearner(ctx, 4)
		if errors.Is(promoteErr, ErrLearnerBehind) {
			return nil
		}
		return promoteErr // retried at the next leader if leadership moved
	})
	if !errors.Is(promoteErr, ErrLearnerBehind) {
		t.Fatalf("promoting the silent learner: %v, want ErrLearnerBehind", promoteErr)
	}
	if conf := leader.Status().Configuration; !slices.Equal(conf.Voters, []uint64{1, 2, 3}) {
		t.Fatalf("voters %v after a refused promotion", conf.Voters)
	}
	tc.net.mu.Lock()
	tc.net.cut[4] = false
	tc.net.mu.Unlock()
	tc.atLeader(ctx, t, func(g *Group) error {
		err := g.PromoteLearner(ctx, 4)
		if errors.Is(err, ErrLearnerBehind) {
			time.Sleep(20 * time.Millisecond)
			return ErrConfigChangeInProgress // try again (atLeader repeats it)
		}
		return err
	})
}

// A member that has not acknowledged the configuration in effect is listed
// in Status.Unconfirmed although the leader heard from it lately: here
// learner 4 is promoted just after it was cut off, so the promotion
// commits on 1, 2 and 3 and 4 never acknowledges it. An owner that changes
// the membership in steps (the broker's reassignment) removes no other
// member while a member it keeps is unconfirmed.
func TestHostMemberThatMissedTheConfigurationIsUnconfirmed(t *testing.T) {
	calls := 0
	tc := newTestCluster(t, []uint64{1, 2, 3, 4}, func(cfg *GroupConfig) {
		calls++
		cfg.Voters = []uint64{1, 2, 3}
		cfg.HeartbeatInterval = 100 * time.Millisecond // promotion allowed 200 ms after the last answer
		cfg.ElectionTimeout = time.Second
		if calls == 4 {
			cfg.Voters = nil
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	g := tc.atLeader(ctx, t, func(g *Group) error { return g.AddLearner(ctx, 4) })
	waitFor(t, 10*time.Second, "learner 4 to catch up and be confirmed", func() bool {
		return tc.groups[4].Status().AppliedIndex >= g.Status().CommitIndex && len(g.Status().Unconfirmed) == 0
	})
	setCut := func(cut bool) {
		tc.net.mu.Lock()
		tc.net.cut[4] = cut
		tc.net.mu.Unlock()
	}
	for attempt := 0; ; attempt++ {
		setCut(true)
		err := g.PromoteLearner(ctx, 4)
		if err == nil {
			break
		}
		// Refused when its last answer is over two heartbeats old by the
		// time the call runs (a loaded machine): let it answer again. A
		// loaded machine may also have moved leadership, or re-elected
		// the leader, which then has not committed in its new term yet:
		// try again at the leader.
		var notLeader *NotLeaderError
		retry := errors.Is(err, ErrLearnerBehind) || errors.Is(err, ErrLeaderNotReady) || errors.As(err, &notLeader)
		if !retry || attempt == 10 {
			t.Fatalf("promoting learner 4 right after it was cut off (attempt %d): %v", attempt, err)
		}
		setCut(false)
		time.Sleep(300 * time.Millisecond)
		g = tc.groups[tc.leader(t)]
	}
	st := g.Status()
	if !slices.Equal(st.Configuration.Voters, []uint64{1, 2, 3, 4}) || !slices.Equal(st.Unconfirmed, []uint64{4}) {
		t.Fatalf("after the promotion: voters %v, unconfirmed %v; want 4 unconfirmed", st.Configuration.Voters, st.Unconfirmed)
	}
	setCut(false)
	waitFor(t, 10*time.Second, "voter 4 to acknowledge its promotion", func() bool { return len(g.Status().Unconfirmed) == 0 })
}
