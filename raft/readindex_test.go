package raft

import (
	"errors"
	"slices"
	"testing"

	"github.com/raftmq/raftmq/protocol"
)

// ReadIndex rules (thesis §6.4), one test each.

func readNet(t *testing.T) *testNet {
	t.Helper()
	net := newTestNet(t, 1, 2, 3)
	net.elect(1)
	net.propose(1, "a", "b")
	return net
}

func (node *testNode) takeReads() []readState {
	out := node.reads
	node.reads = nil
	return out
}

func TestReadIndexNeedsAHeartbeatRoundAfterTheRead(t *testing.T) {
	net := readNet(t)
	leader := net.nodes[1]
	commit := leader.core.commit
	net.isolate(1)
	leader.core.requestRead(7, net.now)
	net.deliver()
	if got := leader.takeReads(); len(got) != 0 {
		t.Fatalf("read answered without a quorum's heartbeat acknowledgement: %+v", got)
	}
	net.heal()
	net.advance(testHeartbeat)
	got := leader.takeReads()
	if len(got) != 1 || got[0].id != 7 || got[0].err != nil || got[0].index != commit {
		t.Fatalf("reads %+v, want id 7 at commit index %d", got, commit)
	}
}

func TestReadIndexWaitsForACommittedEntryOfTheLeadersTerm(t *testing.T) {
	net := newTestNet(t, 1, 2, 3)
	net.nodes[2].manualSync = true
	net.nodes[3].manualSync = true
	net.elect(1)
	leader := net.nodes[1]
	if leader.core.committedInTerm() {
		t.Fatalf("noop committed without followers syncing")
	}
	leader.core.requestRead(1, net.now)
	net.deliver()
	if leader.core.readRounds != 0 || len(leader.takeReads()) != 0 {
		t.Fatalf("read round started before the leader committed an entry of its term")
	}
	net.syncNode(2)
	net.deliver()
	got := leader.takeReads()
	if len(got) != 1 || got[0].err != nil || got[0].index != leader.core.commit || leader.core.log.term(got[0].index) != leader.core.term {
		t.Fatalf("reads %+v, want the index of the leader's committed no-op (commit %d)", got, leader.core.commit)
	}
}

func TestReadIndexBatchesConcurrentReadsOntoOneRound(t *testing.T) {
	net := readNet(t)
	leader := net.nodes[1]
	net.isolate(1)
	leader.core.requestRead(1, net.now) // round 1 starts; its heartbeats are lost
	for id := uint64(2); id <= 10; id++ {
		leader.core.requestRead(id, net.now) // wait for the next round
	}
	net.deliver()
	if leader.core.readRounds != 1 {
		t.Fatalf("%d rounds in flight, want 1", leader.core.readRounds)
	}
	net.heal()
	net.advance(testHeartbeat)
	if got := leader.takeReads(); len(got) != 10 {
		t.Fatalf("%d reads answered, want 10", len(got))
	}
	if leader.core.readRounds != 2 {
		t.Fatalf("10 reads took %d rounds, want 2 (one in flight, one for the rest)", leader.core.readRounds)
	}
}

func TestReadIndexFollowerAsksTheLeader(t *testing.T) {
	net := readNet(t)
	follower := net.nodes[2]
	follower.core.requestRead(5, net.now)
	net.deliver()
	got := follower.takeReads()
	if len(got) != 1 || got[0].id != 5 || got[0].err != nil || got[0].index != net.nodes[1].core.commit {
		t.Fatalf("follower reads %+v, want the leader's commit index %d", got, net.nodes[1].core.commit)
	}
	if n := len(follower.takeMessages(protocol.MsgReadIndex)); n != 1 {
		t.Fatalf("follower sent %d MsgReadIndex, want 1", n)
	}
}

func TestReadIndexFollowerResendsALostRequest(t *testing.T) {
	net := readNet(t)
	follower := net.nodes[2]
	net.cut[[2]uint64{2, 1}] = true
	follower.core.requestRead(5, net.now)
	net.deliver()
	net.heal()
	net.advance(testHeartbeat)
	if got := follower.takeReads(); len(got) != 0 {
		t.Fatalf("answered before the lost request could be resent: %+v", got)
	}
	net.advance(testElection)
	if got := follower.takeReads(); len(got) != 1 || got[0].err != nil {
		t.Fatalf("reads %+v, want one answer after the follower resent", got)
	}
}

func TestReadIndexWithoutALeaderFails(t *testing.T) {
	net := newTestNet(t, 1, 2, 3)
	node := net.nodes[2]
	node.core.requestRead(1, net.now)
	net.deliver()
	got := node.takeReads()
	var nle *NotLeaderError
	if len(got) != 1 || !errors.As(got[0].err, &nle) {
		t.Fatalf("reads %+v, want a NotLeaderError", got)
	}
}

func TestReadIndexFailsWhenTheLeaderStepsDown(t *testing.T) {
	net := readNet(t)
	leader := net.nodes[1]
	net.nodes[2].core.requestRead(9, net.now) // forwarded, answered
	net.deliver()
	net.nodes[2].takeReads()
	net.isolate(1)
	leader.core.requestRead(1, net.now)
	net.advance(2 * testElection) // CheckQuorum deposes the isolated leader
	if leader.core.role == RoleLeader {
		t.Fatalf("isolated leader still leads")
	}
	got := leader.takeReads()
	var nle *NotLeaderError
	if len(got) != 1 || !errors.As(got[0].err, &nle) {
		t.Fatalf("reads %+v, want the pending read failed with NotLeaderError", got)
	}
}

func TestReadIndexSingleVoterConfirmsAtOnce(t *testing.T) {
	net := newTestNet(t, 1)
	net.elect(1)
	net.propose(1, "x")
	net.nodes[1].core.requestRead(3, net.now)
	net.deliver()
	if got := net.nodes[1].takeReads(); len(got) != 1 || got[0].index != net.nodes[1].core.commit {
		t.Fatalf("single voter reads %+v", got)
	}
}

// A read round in flight when a configuration change leaves the leader as
// the only voter is confirmed by the new configuration. The heartbeat
// responses of the removed voters are dropped (no progress) and no member
// is left to answer the periodic heartbeats that carry the round; without
// that, no new round started while this one was unconfirmed, and every
// read on that leader waited for good (a single voter never steps down).
func TestReadIndexRoundInFlightIsConfirmedWhenTheLeaderBecomesTheOnlyVoter(t *testing.T) {
	net := newMembershipNet(t, protocol.RaftConfiguration{Voters: []uint64{1, 2, 3}})
	net.elect(1)
	net.propose(1, "a")
	c1 := net.nodes[1].core
	// The change goes out first, then the read's heartbeat round; the
	// followers answer both, in order.
	if _, _, err := c1.changeMembership(confChange{kind: changeVoters, remove: []uint64{2, 3}}, net.now); err != nil {
		t.Fatal(err)
	}
	c1.requestRead(1, net.now)
	net.deliver()
	if !slices.Equal(c1.conf.Voters, []uint64{1}) || c1.conf.Joint() || c1.commit < c1.confIndex() {
		t.Fatalf("setup: conf %+v commit %d conf index %d", c1.conf, c1.commit, c1.confIndex())
	}
	net.advance(10 * testElection)
	c1.requestRead(2, net.now) // a read after the change
	net.deliver()
	net.advance(10 * testElection)
	if c1.role != RoleLeader {
		t.Fatalf("node 1 is %v", c1.role)
	}
	got := net.nodes[1].takeReads()
	if len(got) != 2 {
		t.Fatalf("reads resolved: %+v, want both reads (ids 1 and 2) answered; read round %d confirmed %d", got, c1.readRound, c1.readConfirmed)
	}
}

// A read forwarded by a learner that the configuration no longer has
// fails once the node has not heard from its leader for an election
// timeout, as a voter's fails when it campaigns. The leader drops messages
// from non-members and sends them no heartbeats, so the read was never
// answered nor sent again, and waited for good: a non-voter never
// campaigns.
func TestReadIndexForwardedByARemovedLearnerFailsAfterAnElectionTimeout(t *testing.T) {
	net := newMembershipNet(t, protocol.RaftConfiguration{Voters: []uint64{1, 2, 3}, Learners: []uint64{4}})
	net.elect(1)
	net.propose(1, "a")
	net.changeMembership(1, confChange{kind: changeVoters, remove: []uint64{4}})
	net.advance(testHeartbeat)
	c1, c4 := net.nodes[1].core, net.nodes[4].core
	if slices.Contains(c1.members, 4) || c1.commit < c1.confIndex() || c4.leader != 1 {
		t.Fatalf("setup: leader conf %+v commit %d conf index %d; node 4 leader %d", c1.conf, c1.commit, c1.confIndex(), c4.leader)
	}
	c4.requestRead(1, net.now)
	net.deliver()
	net.advance(3 * testElection)
	got := net.nodes[4].takeReads()
	var notLeader *NotLeaderError
	if len(got) != 1 || got[0].id != 1 || !errors.As(got[0].err, &notLeader) {
		t.Fatalf("removed learner's read after 3 election timeouts: %+v, want read 1 failed with *NotLeaderError", got)
	}
}
