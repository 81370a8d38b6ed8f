package raft

import (
	"errors"
	"slices"
	"testing"

	"github.com/raftmq/raftmq/protocol"
)

// Membership rules (Raft §6, thesis §4) and the regression cases.

// newMembershipNet starts nodes with the configuration conf (voters and
// learners); extra ids start with no configuration at all.
func newMembershipNet(t *testing.T, conf protocol.RaftConfiguration, extra ...uint64) *testNet {
	t.Helper()
	ids := unionIDs(unionIDs(conf.Voters, conf.Learners), sortedIDs(extra))
	net := &testNet{t: t, nodes: map[uint64]*testNode{}, ids: ids, cut: map[[2]uint64]bool{}}
	for _, id := range ids {
		net.addNode(id, newMemLog(), &memStable{}, func(cfg *coreConfig) {
			cfg.Voters = nil
			if !slices.Contains(extra, id) {
				cfg.Configuration = conf
			}
		})
	}
	return net
}

func (n *testNet) changeMembership(leader uint64, change confChange) uint64 {
	n.t.Helper()
	index, _, err := n.nodes[leader].core.changeMembership(change, n.now)
	if err != nil {
		n.t.Fatalf("change %+v on %d: %v", change, leader, err)
	}
	n.deliver()
	return index
}

func (n *testNet) leaderID() uint64 {
	var leader uint64
	for _, id := range n.ids {
		if c := n.nodes[id].core; c.role == RoleLeader {
			if leader != 0 && n.nodes[leader].core.term == c.term {
				n.t.Fatalf("two leaders in term %d: %d and %d", c.term, leader, id)
			}
			if leader == 0 || c.term > n.nodes[leader].core.term {
				leader = id
			}
		}
	}
	return leader
}

func configEntry(index, term uint64, conf protocol.RaftConfiguration) protocol.Entry {
	return protocol.Entry{Index: index, Term: term, Type: protocol.EntryConfig, Data: protocol.AppendRaftConfiguration(nil, &conf)}
}

func TestConfigurationTakesEffectWhenAppendedAndRevertsWhenTruncated(t *testing.T) {
	net := newTestNet(t, 1, 2, 3)
	c := net.nodes[2].core
	joint := protocol.RaftConfiguration{Voters: []uint64{1, 2, 4}, OutgoingVoters: []uint64{1, 2, 3}}
	m := protocol.RaftMessage{From: 1, To: 2, Type: protocol.MsgAppend, Term: 1, Index: 0,
		Entries: []protocol.Entry{{Index: 1, Term: 1, Type: protocol.EntryNoop}, configEntry(2, 1, joint)}}
	c.step(&m, net.now)
	net.drive(2)
	if c.commit != 0 || !c.conf.Joint() || !c.voters.Contains(4) || c.confIndex() != 2 {
		t.Fatalf("appended, uncommitted joint config not in effect: commit %d conf %+v", c.commit, c.conf)
	}
	// A leader of term 2 overwrites index 2: the configuration reverts.
	m = protocol.RaftMessage{From: 3, To: 2, Type: protocol.MsgAppend, Term: 2, Index: 1, LogTerm: 1,
		Entries: []protocol.Entry{{Index: 2, Term: 2, Type: protocol.EntryNoop}}}
	c.step(&m, net.now)
	net.drive(2)
	if c.conf.Joint() || !slices.Equal(c.conf.Voters, []uint64{1, 2, 3}) || c.confIndex() != 0 {
		t.Fatalf("truncated config still in effect: %+v at %d", c.conf, c.confIndex())
	}
	// A restart finds the newest configuration in the log.
	c.step(&protocol.RaftMessage{From: 3, To: 2, Type: protocol.MsgAppend, Term: 2, Index: 2, LogTerm: 2,
		Entries: []protocol.Entry{configEntry(3, 2, joint)}}, net.now)
	net.drive(2)
	restarted := net.restart(2).core
	if !restarted.conf.Joint() || restarted.confIndex() != 3 {
		t.Fatalf("restart: conf %+v at %d, want the joint config at 3", restarted.conf, restarted.confIndex())
	}
}

func TestJointConfigurationNeedsBothMajorities(t *testing.T) {
	// C_old {1,2,3} -> C_new {1,4,5}: with either half cut off, C_old,new
	// does not commit; with both back it commits and C_new follows.
	for _, cutOff := range [][]uint64{{4, 5}, {2, 3}} {
		net := newMembershipNet(t, protocol.RaftConfiguration{Voters: []uint64{1, 2, 3}}, 4, 5)
		net.elect(1)
		for _, id := range cutOff {
			net.isolate(id)
		}
		jointIndex := net.changeMembership(1, confChange{kind: changeVoters, add: []uint64{4, 5}, remove: []uint64{2, 3}})
		net.advance(5 * testHeartbeat)
		leader := net.nodes[1].core
		if leader.commit >= jointIndex {
			t.Fatalf("joint entry %d committed (commit %d) with %v cut off", jointIndex, leader.commit, cutOff)
		}
		if _, _, err := leader.changeMembership(confChange{kind: changeVoters, add: []uint64{6}}, net.now); !errors.Is(err, ErrConfigChangeInProgress) {
			t.Fatalf("second change during the first: %v, want ErrConfigChangeInProgress", err)
		}
		net.heal()
		net.advance(5 * testHeartbeat)
		for _, id := range []uint64{1, 4, 5} {
			c := net.nodes[id].core
			if c.conf.Joint() || !slices.Equal(c.conf.Voters, []uint64{1, 4, 5}) || c.commit < c.confIndex() || c.confIndex() <= jointIndex {
				t.Fatalf("node %d: conf %+v at %d, commit %d; want C_new {1,4,5} committed", id, c.conf, c.confIndex(), c.commit)
			}
		}
		if _, ok := leader.progress[2]; ok {
			t.Fatal("the leader still replicates to removed node 2")
		}
		// The new configuration alone now decides: 2 and 3 are not needed.
		net.isolate(2)
		net.isolate(3)
		index := net.propose(1, "after")
		if leader.commit < index {
			t.Fatalf("commit %d, want %d with C_new {1,4,5}", leader.commit, index)
		}
	}
}

func TestLearnerNeverCountsTowardCommit(t *testing.T) {
	net := newMembershipNet(t, protocol.RaftConfiguration{Voters: []uint64{1, 2, 3}, Learners: []uint64{4, 5}})
	net.elect(1)
	net.isolate(2)
	net.isolate(3)
	leader := net.nodes[1].core
	before := leader.commit
	index := net.propose(1, "a", "b")
	net.advance(3 * testHeartbeat)
	if leader.commit != before {
		t.Fatalf("commit moved to %d with only learners acknowledging", leader.commit)
	}
	for _, id := range []uint64{4, 5} {
		if last := net.nodes[id].log.LastIndex(); last < index+1 {
			t.Fatalf("learner %d holds up to %d, want %d", id, last, index+1)
		}
	}
	net.heal()
	net.advance(3 * testHeartbeat)
	if leader.commit < index+1 {
		t.Fatalf("commit %d after the voters returned, want %d", leader.commit, index+1)
	}
}

func TestLearnerAndNodeOutsideTheConfigurationNeverCampaign(t *testing.T) {
	net := newMembershipNet(t, protocol.RaftConfiguration{Voters: []uint64{1, 2, 3}, Learners: []uint64{4}}, 5)
	net.elect(1)
	net.isolate(4)
	net.isolate(5)
	net.advance(20 * testElection)
	for _, id := range []uint64{4, 5} {
		c := net.nodes[id].core
		if c.role != RoleFollower || len(net.nodes[id].takeMessages(protocol.MsgPreVote))+len(net.nodes[id].takeMessages(protocol.MsgVote)) > 0 {
			t.Fatalf("node %d campaigned: role %v term %d", id, c.role, c.term)
		}
	}
}

func TestLearnerAskedToVoteDoesNotCountForACandidateThatKnowsItIsALearner(t *testing.T) {
	net := newMembershipNet(t, protocol.RaftConfiguration{Voters: []uint64{1, 2, 3}, Learners: []uint64{4}})
	net.isolate(1)
	net.cut[[2]uint64{1, 4}], net.cut[[2]uint64{4, 1}] = false, false
	c1 := net.nodes[1].core
	c1.tick(c1.electionDeadline) // pre-vote
	net.deliver()
	if got := net.nodes[1].takeMessages(protocol.MsgPreVote); len(got) != 2 || slices.ContainsFunc(got, func(m protocol.RaftMessage) bool { return m.To == 4 }) {
		t.Fatalf("pre-votes sent %+v; want 2, none to learner 4", got)
	}
	// The learner answers a vote request by the ordinary rules (a
	// candidate may know it as a voter already), but node 1's
	// configuration makes it a learner: its grant does not elect 1.
	c1.campaign(false, false)
	net.drive(1)
	req := protocol.RaftMessage{From: 1, To: 4, Type: protocol.MsgVote, Term: c1.term, Index: c1.log.lastIndex(), LogTerm: c1.log.lastTerm()}
	net.nodes[4].core.step(&req, net.now)
	net.drive(4)
	net.deliver()
	if grants := net.nodes[4].takeMessages(protocol.MsgVoteResponse); len(grants) != 1 || grants[0].Reject {
		t.Fatalf("learner's answer %+v, want one grant", grants)
	}
	if c1.role == RoleLeader {
		t.Fatal("a learner's vote elected a leader")
	}
	if net.nodes[4].core.role != RoleFollower {
		t.Fatalf("learner role %v", net.nodes[4].core.role)
	}
}

// A learner whose promotion was committed without it must still vote, or a
// cluster that lost its leader could never elect another (with refusal,
// C_new {1,2,3,4} minus the dead leader has only 2 of the 3 votes needed).
func TestPromotedLearnerThatMissedItsPromotionVotesSoTheClusterElects(t *testing.T) {
	net := newMembershipNet(t, protocol.RaftConfiguration{Voters: []uint64{1, 2, 3}, Learners: []uint64{4}})
	net.elect(1)
	net.propose(1, "x")
	net.cut[[2]uint64{1, 4}], net.cut[[2]uint64{4, 1}] = true, true
	net.changeMembership(1, confChange{kind: promoteLearner, add: []uint64{4}, maxLag: 10})
	net.advance(2 * testHeartbeat)
	if c := net.nodes[1].core; c.conf.Joint() || !c.voters.Contains(4) || c.commit < c.confIndex() {
		t.Fatalf("promotion not committed: %+v at %d, commit %d", c.conf, c.confIndex(), c.commit)
	}
	if c := net.nodes[4].core; c.voters.Contains(4) {
		t.Fatal("test setup: learner 4 already knows it is a voter")
	}
	net.isolate(1) // the leader dies
	net.cut[[2]uint64{1, 4}] = true
	net.advance(20 * testElection)
	leader := net.leaderID()
	if leader != 2 && leader != 3 {
		t.Fatalf("no leader among 2 and 3 (leader %d)", leader)
	}
	if c := net.nodes[4].core; !c.voters.Contains(4) {
		t.Fatal("learner 4 did not learn its promotion from the new leader")
	}
}

func TestNewLeaderMustNotChangeConfigurationBeforeCommittingAnEntryOfItsTerm(t *testing.T) {
	net := newMembershipNet(t, protocol.RaftConfiguration{Voters: []uint64{1, 2, 3}}, 4)
	net.elect(1)
	net.propose(1, "x")
	net.isolate(1)
	net.now += 2 * testElection
	net.nodes[2].manualSync = true // its no-op is not durable on it yet
	net.elect(2)
	c2 := net.nodes[2].core
	if c2.committedInTerm() {
		t.Fatal("test setup: the new leader already committed its no-op")
	}
	if _, _, err := c2.changeMembership(confChange{kind: addLearners, add: []uint64{4}}, net.now); !errors.Is(err, ErrLeaderNotReady) {
		t.Fatalf("change before committing an entry of the term: %v, want ErrLeaderNotReady", err)
	}
	if c2.confIndex() != 0 {
		t.Fatalf("a config entry was appended at %d", c2.confIndex())
	}
	net.syncNode(2)
	if !c2.committedInTerm() {
		t.Fatalf("no-op not committed: commit %d", c2.commit)
	}
	index, _, err := c2.changeMembership(confChange{kind: addLearners, add: []uint64{4}}, net.now)
	if err != nil || index == 0 {
		t.Fatalf("change after committing an entry of the term: %v", err)
	}
}

func TestRemovedNodeRestartingWithAnOldConfigurationCampaignsHarmlessly(t *testing.T) {
	net := newMembershipNet(t, protocol.RaftConfiguration{Voters: []uint64{1, 2, 3, 4}})
	net.elect(1)
	net.isolate(4)
	net.changeMembership(1, confChange{kind: changeVoters, remove: []uint64{4}})
	net.advance(3 * testHeartbeat)
	leader := net.nodes[1].core
	if leader.conf.Joint() || leader.voters.Contains(4) || leader.commit < leader.confIndex() {
		t.Fatalf("removal not committed: %+v", leader.conf)
	}
	term := leader.term
	removed := net.restart(4).core
	if !removed.voters.Contains(4) {
		t.Fatal("test setup: the removed node should still believe it is a voter")
	}
	net.heal()
	net.advance(20 * testElection)
	if leader.role != RoleLeader || leader.term != term {
		t.Fatalf("removed node disrupted the cluster: leader role %v term %d (was %d)", leader.role, leader.term, term)
	}
	if len(net.nodes[4].sent) == 0 {
		t.Fatal("test setup: the removed node never campaigned")
	}
	index := net.propose(1, "after")
	if leader.commit < index {
		t.Fatalf("commit %d, want %d", leader.commit, index)
	}
}

func TestLeaderRemovedByTheChangeStepsDownOnceCNewCommits(t *testing.T) {
	net := newMembershipNet(t, protocol.RaftConfiguration{Voters: []uint64{1, 2, 3}, Learners: []uint64{4}})
	net.elect(1)
	net.changeMembership(1, confChange{kind: changeVoters, add: []uint64{4}, remove: []uint64{1}})
	c1 := net.nodes[1].core
	if c1.role == RoleLeader || c1.conf.Joint() || c1.voters.Contains(1) || c1.commit < c1.confIndex() {
		t.Fatalf("removed leader: role %v conf %+v commit %d conf index %d", c1.role, c1.conf, c1.commit, c1.confIndex())
	}
	for _, id := range []uint64{2, 3, 4} {
		if c := net.nodes[id].core; c.confIndex() != c1.confIndex() {
			t.Fatalf("node %d at config %d, want %d", id, c.confIndex(), c1.confIndex())
		}
	}
	net.advance(10 * testElection)
	leader := net.leaderID()
	if leader == 0 || leader == 1 {
		t.Fatalf("leader %d after the old leader left", leader)
	}
	index := net.propose(leader, "after")
	net.advance(testHeartbeat)
	for _, id := range []uint64{2, 3, 4} {
		if net.nodes[id].core.commit < index {
			t.Fatalf("node %d commit %d, want %d", id, net.nodes[id].core.commit, index)
		}
	}
}

// The acknowledgement that commits a C_new without the leader can be the
// durable match a heartbeat response repeats (the follower's own was
// lost). The leader steps down there and sends nothing more as a leader:
// here the same response also showed entries lost on the way to the
// follower, which a leader would resend.
func TestLeaderRemovedByAHeartbeatResponseSendsNoMoreAppends(t *testing.T) {
	net := newMembershipNet(t, protocol.RaftConfiguration{Voters: []uint64{1, 2, 3}})
	net.elect(1)
	c1 := net.nodes[1].core
	net.nodes[2].manualSync = true
	joint := net.changeMembership(1, confChange{kind: changeVoters, remove: []uint64{1}})
	net.syncNode(2)
	net.deliver() // the joint configuration commits; C_new reaches node 2, unsynced
	if c1.role != RoleLeader || c1.confIndex() != joint+1 {
		t.Fatalf("setup: role %v, configuration at %d, want leader with C_new at %d", c1.role, c1.confIndex(), joint+1)
	}
	net.cut[[2]uint64{1, 2}] = true
	net.propose(1, "lost on the way to node 2")
	net.heal()
	net.advance(testHeartbeat) // node 2 reports C_new received, not yet durable
	net.cut[[2]uint64{2, 1}] = true
	net.syncNode(2) // its acknowledgement of C_new is lost
	net.heal()
	net.nodes[1].takeMessages(protocol.MsgAppend)
	net.advance(testHeartbeat)
	if c1.role == RoleLeader || c1.commit < joint+1 {
		t.Fatalf("after the heartbeat round: role %v commit %d, want C_new at %d committed and a follower", c1.role, c1.commit, joint+1)
	}
	for _, m := range net.nodes[1].takeMessages(protocol.MsgAppend) {
		if len(m.Entries) > 0 {
			t.Fatalf("the removed leader sent entries %d-%d to node %d", m.Entries[0].Index, m.Entries[len(m.Entries)-1].Index, m.To)
		}
	}
}

func TestLeaderPartitionedAwayDuringAJointConfiguration(t *testing.T) {
	net := newMembershipNet(t, protocol.RaftConfiguration{Voters: []uint64{1, 2, 3}, Learners: []uint64{4}})
	net.elect(1)
	// The joint entry reaches every follower, but no answer reaches the
	// leader: C_old,new is in effect everywhere and committed nowhere.
	for _, id := range []uint64{2, 3, 4} {
		net.cut[[2]uint64{id, 1}] = true
	}
	jointIndex := net.changeMembership(1, confChange{kind: changeVoters, add: []uint64{4}, remove: []uint64{3}})
	for _, id := range []uint64{2, 3, 4} {
		if c := net.nodes[id].core; !c.conf.Joint() || c.commit >= jointIndex {
			t.Fatalf("node %d: conf %+v commit %d", id, c.conf, c.commit)
		}
	}
	net.isolate(1)
	net.advance(20 * testElection)
	if c := net.nodes[1].core; c.role == RoleLeader {
		t.Fatal("the partitioned leader still leads (CheckQuorum)")
	}
	leader := net.leaderID()
	if leader != 2 && leader != 4 {
		t.Fatalf("leader %d; want 2 or 4 (node 3 is not in C_new and steps down after it commits)", leader)
	}
	c := net.nodes[leader].core
	if c.conf.Joint() || !slices.Equal(c.conf.Voters, []uint64{1, 2, 4}) || c.commit < c.confIndex() {
		t.Fatalf("new leader did not finish the change: %+v at %d, commit %d", c.conf, c.confIndex(), c.commit)
	}
	net.heal()
	net.advance(5 * testElection)
	index := net.propose(net.leaderID(), "after")
	net.advance(testHeartbeat)
	for _, id := range []uint64{1, 2, 4} {
		n := net.nodes[id].core
		if n.commit < index || n.conf.Joint() || !slices.Equal(n.conf.Voters, []uint64{1, 2, 4}) {
			t.Fatalf("node %d: commit %d (want %d) conf %+v", id, n.commit, index, n.conf)
		}
	}
}

func TestPromoteLearnerRefusesALaggingLearner(t *testing.T) {
	net := newMembershipNet(t, protocol.RaftConfiguration{Voters: []uint64{1, 2, 3}, Learners: []uint64{4}})
	net.elect(1)
	net.isolate(4)
	net.propose(1, "a", "b", "c")
	if _, _, err := net.nodes[1].core.changeMembership(confChange{kind: promoteLearner, add: []uint64{4}, maxLag: 1}, net.now); !errors.Is(err, ErrLearnerBehind) {
		t.Fatalf("promote lagging learner: %v, want ErrLearnerBehind", err)
	}
	if _, _, err := net.nodes[1].core.changeMembership(confChange{kind: promoteLearner, add: []uint64{2}, maxLag: 1}, net.now); !errors.Is(err, ErrInvalidMembership) {
		t.Fatalf("promote a voter: %v, want ErrInvalidMembership", err)
	}
	if _, _, err := net.nodes[1].core.propose([]protocol.Entry{{Type: protocol.EntryConfig}}, net.now); !errors.Is(err, ErrConfigEntry) {
		t.Fatalf("raw config proposal: %v, want ErrConfigEntry", err)
	}
	net.heal()
	net.advance(3 * testHeartbeat)
	net.changeMembership(1, confChange{kind: promoteLearner, add: []uint64{4}, maxLag: 1})
	net.advance(3 * testHeartbeat)
	if c := net.nodes[1].core; !slices.Equal(c.conf.Voters, []uint64{1, 2, 3, 4}) || c.conf.Joint() || len(c.conf.Learners) != 0 {
		t.Fatalf("after promotion: %+v", c.conf)
	}
}

// A follower restoring a snapshot that carries no configuration keeps only
// the configurations of its log at or below its commit index. The others
// were above its commit index (else it would skip the snapshot) and the
// restore discards its log because it does not match the leader's: they
// may be a deposed leader's uncommitted change. Here node 2 holds a joint
// configuration (remove 5) that never committed and whose entry the
// cluster overwrote; kept, node 2 elected later would finish that change
// and remove node 5 although nobody asks for it any more.
func TestSnapshotWithoutConfigurationRestoresOnlyCommittedConfigurations(t *testing.T) {
	net := newTestNet(t, 1, 2, 3, 4, 5)
	net.elect(1)
	net.propose(1, "a") // index 2, committed everywhere
	// Node 1 starts removing 5; only node 2 receives the joint entry and
	// its acknowledgement is lost.
	for _, to := range []uint64{3, 4, 5} {
		net.cut[[2]uint64{1, to}] = true
	}
	net.cut[[2]uint64{2, 1}] = true
	joint := net.changeMembership(1, confChange{kind: changeVoters, remove: []uint64{5}})
	if !net.nodes[2].core.conf.Joint() {
		t.Fatalf("setup: node 2 conf %+v", net.nodes[2].core.conf)
	}
	net.heal()
	net.isolate(1)
	net.isolate(2)
	net.elect(3) // votes of 4 and 5; overwrites index 3
	net.propose(3, "b", "c", "d")
	c3 := net.nodes[3].core
	if c3.commit < 6 || c3.log.term(joint) == 1 {
		t.Fatalf("setup: node 3 commit %d term at %d = %d", c3.commit, joint, c3.log.term(joint))
	}
	// Node 3 compacts behind a snapshot at 5 (no config entry ever
	// committed there, so the snapshot carries no configuration).
	net.nodes[3].log.compact(6)
	net.heal()
	net.isolate(1)
	net.advance(testHeartbeat)
	if len(net.nodes[3].snapshots) == 0 {
		t.Fatalf("setup: node 3 asked for no snapshot for node 2")
	}
	snapTerm := c3.log.term(5)
	c2 := net.nodes[2].core
	if a := c2.snapshotAction(5, snapTerm); a != snapshotRestore {
		t.Fatalf("setup: action %v", a)
	}
	net.nodes[2].log.reset(6, snapTerm)
	c2.restoreConfiguration(5, protocol.RaftConfiguration{})
	c2.snapshotInstalled(3, 5, snapTerm, snapshotRestore)
	net.deliver()
	net.advance(testHeartbeat)
	t.Logf("node 2 after the restore: conf %+v (conf index %d), node 3: %+v", c2.conf, c2.confIndex(), c3.conf)
	if c2.conf.Joint() {
		// Consequence: node 2 is elected and completes the stale change.
		net.heal()
		net.advance(testHeartbeat) // node 1 learns of term 2; it needs the snapshot too
		c1 := net.nodes[1].core
		net.nodes[1].log.reset(6, snapTerm)
		c1.restoreConfiguration(5, protocol.RaftConfiguration{})
		c1.snapshotInstalled(3, 5, snapTerm, snapshotRestore)
		net.deliver()
		net.advance(testHeartbeat)
		net.isolate(3)
		net.now += 3 * testElection
		net.elect(2)
		net.advance(testHeartbeat)
		for _, id := range net.ids {
			c := net.nodes[id].core
			t.Logf("node %d: role %v term %d commit %d last %d conf %+v", id, c.role, c.term, c.commit, c.log.lastIndex(), c.conf)
		}
		t.Fatalf("node 2 kept the overwritten joint configuration of index %d; elected, its configuration is now %+v (node 5 removed: %v)",
			joint, c2.conf, !c2.voters.Contains(5))
	}
	if !slices.Equal(c2.conf.Voters, []uint64{1, 2, 3, 4, 5}) {
		t.Fatalf("node 2 after the restore: conf %+v, want the cluster's voters 1-5", c2.conf)
	}
}

// lowestReadLog records the lowest index the core read entries from.
type lowestReadLog struct {
	*memLog
	lowest uint64
}

func (l *lowestReadLog) Entries(lo, hi, maxBytes uint64) ([]protocol.Entry, error) {
	if l.lowest == 0 || lo < l.lowest {
		l.lowest = lo
	}
	return l.memLog.Entries(lo, hi, maxBytes)
}

// A replica whose owner tells it the configuration as of its applied index
// (GroupConfig.AppliedConfiguration) looks for newer config entries only in
// the log after that index, instead of reading the log back to its newest
// config entry; config entries after Applied still win.
func TestStartUpWithAppliedConfigurationReadsOnlyTheUnappliedLog(t *testing.T) {
	four := protocol.RaftConfiguration{Voters: []uint64{1, 2, 3, 4}}
	five := protocol.RaftConfiguration{Voters: []uint64{1, 2, 3, 4, 5}}
	newLog := func(configAt map[uint64]protocol.RaftConfiguration) *lowestReadLog {
		l := newMemLog()
		for index := uint64(1); index <= 200; index++ {
			e := protocol.Entry{Index: index, Term: 1, Type: protocol.EntryControl, Data: []byte("x")}
			if conf, ok := configAt[index]; ok {
				e = configEntry(index, 1, conf)
			}
			if err := l.Append([]protocol.Entry{e}); err != nil {
				t.Fatal(err)
			}
		}
		_, _ = l.Sync()
		return &lowestReadLog{memLog: l}
	}
	start := func(log *lowestReadLog, applied uint64, appliedConf protocol.RaftConfiguration) *core {
		cfg := DefaultGroupConfig()
		cfg.GroupID, cfg.Voters, cfg.Log, cfg.Stable, cfg.StateMachine = 1, []uint64{1, 2, 3}, log, &memStable{}, &memStateMachine{}
		cfg.Applied, cfg.AppliedConfiguration = applied, appliedConf
		if err := cfg.Validate(); err != nil {
			t.Fatal(err)
		}
		return newCore(cfg.coreConfig(1, HardState{Term: 1, Commit: applied}, 1), 0)
	}
	for _, tc := range []struct {
		name        string
		configAt    map[uint64]protocol.RaftConfiguration
		appliedConf protocol.RaftConfiguration
		want        protocol.RaftConfiguration
		lowestAbove uint64 // every read starts past this index
		readsBelow  uint64 // some read starts at or below this index
	}{
		{"without the hint the whole log is read", map[uint64]protocol.RaftConfiguration{5: four}, protocol.RaftConfiguration{}, four, 0, 5},
		{"with the hint only the log after Applied", map[uint64]protocol.RaftConfiguration{5: four}, four, four, 150, 0},
		{"a config entry after Applied wins", map[uint64]protocol.RaftConfiguration{5: four, 180: five}, four, five, 150, 0},
	} {
		log := newLog(tc.configAt)
		c := start(log, 150, tc.appliedConf)
		if !slices.Equal(c.conf.Voters, tc.want.Voters) {
			t.Errorf("%s: configuration %+v, want %+v", tc.name, c.conf, tc.want)
		}
		if tc.lowestAbove > 0 && log.lowest <= tc.lowestAbove {
			t.Errorf("%s: read the log from %d, want only after %d", tc.name, log.lowest, tc.lowestAbove)
		}
		if tc.readsBelow > 0 && (log.lowest == 0 || log.lowest > tc.readsBelow) {
			t.Errorf("%s: lowest read %d, want at or below %d", tc.name, log.lowest, tc.readsBelow)
		}
	}
}
