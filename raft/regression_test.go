package raft

import (
	"testing"

	"github.com/raftmq/raftmq/protocol"
)

// Regression tests for the hard cases that broke well-known implementations.

func TestRejoiningNodeWithPreVoteDoesNotDeposeAHealthyLeader(t *testing.T) {
	net := newTestNet(t, 1, 2, 3)
	net.elect(1)
	term := net.nodes[1].core.term
	net.isolate(3)
	net.advance(10 * testElection) // node 3 keeps timing out alone
	net.heal()
	net.advance(5 * testElection)
	if c := net.nodes[1].core; c.role != RoleLeader || c.term != term {
		t.Fatalf("leader deposed: role %v term %d (was %d)", c.role, c.term, term)
	}
	// And the rejoined node is not stuck with a stale leader hint.
	if c := net.nodes[3].core; c.role != RoleFollower || c.leader != 1 {
		t.Fatalf("rejoined node: role %v leader %d, want follower of 1", c.role, c.leader)
	}
}

func TestRejoiningNodeWithAHigherTermIsNotStuckForever(t *testing.T) {
	net := newTestNet(t, 1, 2, 3)
	net.elect(1)
	net.isolate(3)
	// Node 3's term ran ahead while it was cut off (say it won a pre-vote
	// just before the partition): it ignores the old leader's messages and
	// nobody grants its votes while the leader is healthy.
	c3 := net.nodes[3].core
	c3.campaign(false, false)
	net.drive(3)
	net.heal()
	net.advance(10 * testElection)
	var leader uint64
	for _, id := range net.ids {
		if c := net.nodes[id].core; c.role == RoleLeader {
			leader = id
		}
	}
	if leader == 0 {
		t.Fatalf("no leader after the higher-term node rejoined")
	}
	if c3.leader != leader || c3.term != net.nodes[leader].core.term {
		t.Fatalf("node 3 stuck: leader %d term %d; cluster leader %d term %d", c3.leader, c3.term, leader, net.nodes[leader].core.term)
	}
	index := net.propose(leader, "after")
	net.advance(testHeartbeat)
	if c3.commit < index {
		t.Fatalf("node 3 commit %d, want %d", c3.commit, index)
	}
}

func TestPreCandidateForgetsTheLeaderItKnew(t *testing.T) {
	net := newTestNet(t, 1, 2, 3)
	net.elect(1)
	net.isolate(1)
	c := net.nodes[2].core
	c.tick(c.electionDeadline)
	if c.role != RolePreCandidate {
		t.Fatalf("role %v", c.role)
	}
	if c.leader != 0 {
		t.Fatalf("pre-candidate still names leader %d", c.leader)
	}
	// So node 3, when it times out too, can grant node 2's pre-vote and
	// the pair elects a leader without the old one.
	net.advance(4 * testElection)
	if l := net.nodes[2].core.leader; l != 2 && l != 3 {
		t.Fatalf("no new leader among 2 and 3 (leader %d)", l)
	}
}

func TestRestartWithCommitPastLastIndexClampsCommit(t *testing.T) {
	// A node that lost unsynced entries restarts with a hard state whose
	// commit hint is past its last index.
	log := logWith(1, 1, 1)
	c := newCore(testCoreConfig(2, []uint64{1, 2, 3}, log, HardState{Term: 1, Commit: 10}), 0)
	if c.commit != 3 {
		t.Fatalf("commit %d after restart with 3 entries and hint 10", c.commit)
	}
	rd := c.takeReady()
	if len(rd.committed) != 3 {
		t.Fatalf("applies %d entries, want 3", len(rd.committed))
	}
	// And a heartbeat with a high commit does not move it past the log.
	c.step(&protocol.RaftMessage{From: 1, To: 2, Type: protocol.MsgHeartbeat, Term: 1, Commit: 10}, 0)
	if c.commit != 3 {
		t.Fatalf("commit %d after heartbeat", c.commit)
	}
}

func TestMatchingAppendEntriesDoesNotTruncate(t *testing.T) {
	log := logWith(1, 1, 1, 1, 1)
	c := newCore(testCoreConfig(2, []uint64{1, 2, 3}, log, HardState{Term: 1}), 0)
	// A delayed AppendEntries carrying entries 2-3 that the follower holds.
	c.step(&protocol.RaftMessage{From: 1, To: 2, Type: protocol.MsgAppend, Term: 1, Index: 1, LogTerm: 1,
		Entries: []protocol.Entry{{Index: 2, Term: 1}, {Index: 3, Term: 1}}}, 0)
	rd := c.takeReady()
	if len(rd.entries) != 0 {
		t.Fatalf("matching append rewrote entries %+v", rd.entries)
	}
	if c.log.lastIndex() != 5 {
		t.Fatalf("last index %d, want 5", c.log.lastIndex())
	}
	if len(rd.messages) != 1 || rd.messages[0].Index != 3 || rd.messages[0].Reject {
		t.Fatalf("reply %+v, want ack of 3", rd.messages)
	}
}

func TestStaleAppendResponseFromAnOldTermIsIgnored(t *testing.T) {
	net := newTestNet(t, 1, 2, 3)
	net.elect(1)
	net.elect(2)
	net.elect(1) // node 1 leads again, in term 3
	c := net.nodes[1].core
	p := *c.progress[3]
	// A rejection and a success from term 1 arrive late.
	c.step(&protocol.RaftMessage{From: 3, To: 1, Type: protocol.MsgAppendResponse, Term: 1, Reject: true, Index: 5, RejectHint: 0}, net.now)
	c.step(&protocol.RaftMessage{From: 3, To: 1, Type: protocol.MsgAppendResponse, Term: 1, Index: 99}, net.now)
	if q := c.progress[3]; q.match != p.match || q.next != p.next || q.state != p.state {
		t.Fatalf("progress changed by old-term replies: %+v -> %+v", p, *q)
	}
	if c.role != RoleLeader || c.commit > c.log.lastIndex() {
		t.Fatalf("role %v commit %d", c.role, c.commit)
	}
}

func TestVoteIsNeverGrantedTwiceInATermAcrossARestart(t *testing.T) {
	net := newTestNet(t, 1, 2, 3)
	c := net.nodes[3].core
	c.step(&protocol.RaftMessage{From: 1, To: 3, Type: protocol.MsgVote, Term: 5}, 0)
	net.drive(3) // saves the vote, then sends the grant
	if grants := net.nodes[3].takeMessages(protocol.MsgVoteResponse); len(grants) != 1 || grants[0].Reject {
		t.Fatalf("first vote: %+v", grants)
	}
	restarted := net.restart(3)
	restarted.core.step(&protocol.RaftMessage{From: 2, To: 3, Type: protocol.MsgVote, Term: 5}, 0)
	rd := restarted.core.takeReady()
	if len(rd.messages) != 1 || !rd.messages[0].Reject {
		t.Fatalf("restarted node granted a second vote in term 5: %+v", rd.messages)
	}
}

func TestCandidateStepsDownOnAppendEntriesFromALeaderOfItsTerm(t *testing.T) { // §5.2
	net := newTestNet(t, 1, 2, 3)
	c := net.nodes[2].core
	c.campaign(false, false)
	if c.role != RoleCandidate || c.term != 1 {
		t.Fatalf("role %v term %d", c.role, c.term)
	}
	c.step(&protocol.RaftMessage{From: 1, To: 2, Type: protocol.MsgAppend, Term: 1}, 0)
	if c.role != RoleFollower || c.leader != 1 || c.term != 1 {
		t.Fatalf("candidate: role %v leader %d term %d, want follower of 1 in term 1", c.role, c.leader, c.term)
	}
}

// The commit index is not durable and a new leader may know less of it than
// the old one did: it learns it from AppendEntries and heartbeats, and can
// advance it only by committing an entry of its own term (§5.4.2). So right
// after an election its commit index (the broker's high watermark) can
// trail what the old leader had committed, for one round trip; once its
// no-op commits it is past it. It never goes below what this replica had.
func TestNewLeaderCommitIndexTrailsTheOldOneUntilItsNoopCommits(t *testing.T) { // §5.4.2, §8
	net := newTestNet(t, 1, 2, 3)
	net.elect(1)
	net.propose(1, "a", "b")
	old := net.nodes[1].core
	// More entries reach the followers, but the old leader's next commit
	// index never does: it is cut off as soon as it commits them.
	first, _, err := old.propose([]protocol.Entry{{Type: protocol.EntryControl, Data: []byte("c")}, {Type: protocol.EntryControl, Data: []byte("d")}}, net.now)
	if err != nil {
		t.Fatal(err)
	}
	net.drive(1)
	appends := net.queue
	net.queue = nil
	for _, m := range appends {
		net.nodes[m.To].core.step(&m, net.now)
		net.drive(m.To)
	}
	net.cut[[2]uint64{1, 2}], net.cut[[2]uint64{1, 3}] = true, true
	net.deliver() // the acknowledgements reach node 1, which commits
	oldCommit := old.commit
	if oldCommit < first+1 {
		t.Fatalf("old leader commit %d, want %d", oldCommit, first+1)
	}
	c2 := net.nodes[2].core
	before := c2.commit
	if before >= oldCommit {
		t.Fatalf("node 2 already knows commit %d", before)
	}
	// Node 3 syncs only when told, so node 2's no-op waits for it.
	net.nodes[3].manualSync = true
	net.elect(2)
	if c2.commit != before {
		t.Fatalf("new leader commit %d before its no-op committed, want %d (what it knew)", c2.commit, before)
	}
	net.syncNode(3)
	net.deliver()
	if c2.commit <= oldCommit {
		t.Fatalf("new leader commit %d after its no-op committed, want past the old leader's %d", c2.commit, oldCommit)
	}
}
