package raft

import (
	"slices"
	"testing"
	"time"

	"github.com/raftmq/raftmq/protocol"
)

// One test per rule of the Raft paper (and thesis) the core implements.

func TestElectionTimeoutIsRandomizedWithinOneToTwoTimeouts(t *testing.T) {
	net := newTestNet(t, 1, 2, 3)
	seen := map[time.Duration]bool{}
	for _, id := range net.ids {
		c := net.nodes[id].core
		for range 20 {
			d := c.randomizedElectionTimeout()
			if d < testElection || d >= 2*testElection {
				t.Fatalf("timeout %v outside [%v, %v)", d, testElection, 2*testElection)
			}
			seen[d] = true
		}
	}
	if len(seen) < 30 {
		t.Fatalf("only %d distinct timeouts in 60 draws", len(seen))
	}
}

func TestLeaderElectedByMajority(t *testing.T) { // §5.2
	net := newTestNet(t, 1, 2, 3)
	net.isolate(3)
	net.elect(1)
	if c := net.nodes[1].core; c.term != 1 || c.leader != 1 {
		t.Fatalf("leader term %d leader %d", c.term, c.leader)
	}
	if l := net.nodes[2].core.leader; l != 1 {
		t.Fatalf("node 2 follows %d", l)
	}
}

func TestVoteIsDurableBeforeTheReply(t *testing.T) { // §5.2, Figure 2
	net := newTestNet(t, 1, 2, 3)
	c := net.nodes[2].core
	c.step(&protocol.RaftMessage{From: 1, To: 2, Type: protocol.MsgVote, Term: 1}, 0)
	rd := c.takeReady()
	if !rd.saveHardState || rd.hardState.Term != 1 || rd.hardState.Vote != 1 {
		t.Fatalf("ready does not save the vote: %+v", rd)
	}
	if len(rd.messages) != 1 || rd.messages[0].Type != protocol.MsgVoteResponse || rd.messages[0].Reject {
		t.Fatalf("want the grant in the same ready (sent after the save): %+v", rd.messages)
	}
}

func TestAtMostOneVotePerTerm(t *testing.T) { // §5.2
	net := newTestNet(t, 1, 2, 3)
	c := net.nodes[3].core
	c.step(&protocol.RaftMessage{From: 1, To: 3, Type: protocol.MsgVote, Term: 1}, 0)
	c.step(&protocol.RaftMessage{From: 2, To: 3, Type: protocol.MsgVote, Term: 1}, 0)
	c.step(&protocol.RaftMessage{From: 1, To: 3, Type: protocol.MsgVote, Term: 1}, 0) // a retry is granted again
	rd := c.takeReady()
	got := []bool{}
	for _, m := range rd.messages {
		got = append(got, !m.Reject)
	}
	if !slices.Equal(got, []bool{true, false, true}) {
		t.Fatalf("grants %v, want [true false true]", got)
	}
}

func TestVoteRequiresAnUpToDateLog(t *testing.T) { // §5.4.1
	net := newTestNet(t, 1, 2, 3)
	net.addNode(3, logWith(1, 2, 2), &memStable{hs: HardState{Term: 2}}, nil)
	c := net.nodes[3].core
	cases := []struct {
		lastIndex, lastTerm uint64
		grant               bool
	}{
		{3, 1, false}, {2, 2, false}, {3, 2, true}, {1, 3, true}, {9, 2, true},
	}
	for i, tc := range cases {
		term := uint64(3 + i)
		c.step(&protocol.RaftMessage{From: 1, To: 3, Type: protocol.MsgVote, Term: term, Index: tc.lastIndex, LogTerm: tc.lastTerm}, 0)
		rd := c.takeReady()
		if m := rd.messages[len(rd.messages)-1]; m.Reject == tc.grant {
			t.Errorf("candidate log (%d, t%d): grant=%v, want %v", tc.lastIndex, tc.lastTerm, !m.Reject, tc.grant)
		}
	}
}

func TestPreVoteDoesNotIncreaseTheTerm(t *testing.T) { // thesis §9.6
	net := newTestNet(t, 1, 2, 3)
	net.elect(1)
	net.isolate(3)
	before := net.nodes[3].core.term
	net.advance(20 * testElection)
	if c := net.nodes[3].core; c.term != before || c.role != RolePreCandidate {
		t.Fatalf("isolated node: term %d (was %d) role %v; pre-vote must not raise the term", c.term, before, c.role)
	}
}

func TestPreVoteGrantedOnlyOutsideTheLeaderLease(t *testing.T) { // thesis §4.2.3, §9.6
	net := newTestNet(t, 1, 2, 3)
	net.elect(1)
	c := net.nodes[2].core
	pv := protocol.RaftMessage{From: 3, To: 2, Type: protocol.MsgPreVote, Term: c.term + 1, Index: c.log.lastIndex(), LogTerm: c.log.lastTerm()}
	c.step(&pv, net.now)
	if rd := c.takeReady(); len(rd.messages) != 0 {
		t.Fatalf("pre-vote answered inside the lease: %+v", rd.messages)
	}
	net.isolate(1)
	net.now += testElection + 1
	c.step(&pv, net.now)
	if rd := c.takeReady(); len(rd.messages) != 1 || rd.messages[0].Reject {
		t.Fatalf("pre-vote after the lease expired: %+v", rd.messages)
	}
}

func TestCheckQuorumLeaderStepsDownWithoutAMajority(t *testing.T) {
	net := newTestNet(t, 1, 2, 3)
	net.elect(1)
	net.isolate(1)
	net.advance(2*testElection + testHeartbeat)
	if c := net.nodes[1].core; c.role == RoleLeader {
		t.Fatalf("leader cut off from the majority still leads")
	}
}

func TestNewLeaderAppendsANoop(t *testing.T) { // §5.4.2, §8
	net := newTestNet(t, 1, 2, 3)
	net.elect(1)
	ents, _ := net.nodes[2].log.Entries(1, 2, 1<<20)
	if len(ents) != 1 || ents[0].Type != protocol.EntryNoop || ents[0].Term != 1 {
		t.Fatalf("follower log %+v, want the leader's no-op", ents)
	}
	if net.nodes[1].core.commit != 1 {
		t.Fatalf("no-op not committed")
	}
}

func TestLeaderCommitsOnlyCurrentTermEntriesByCounting(t *testing.T) { // §5.4.2, Figure 8
	ids := []uint64{1, 2, 3}
	log := logWith(1, 2)
	c := newCore(testCoreConfig(1, ids, log, HardState{Term: 3}), 0)
	c.campaign(false, false)
	c.step(&protocol.RaftMessage{From: 2, To: 1, Type: protocol.MsgVoteResponse, Term: 4}, 0)
	if c.role != RoleLeader {
		t.Fatalf("role %v", c.role)
	}
	rd := c.takeReady() // the no-op at index 3, term 4
	if err := persistReady(log, &memStable{}, &rd); err != nil {
		t.Fatal(err)
	}
	c.durableNotice(2, 2, 0) // index 2 (term 2) is durable here already
	c.progress[2].becomeReplicate()
	c.step(&protocol.RaftMessage{From: 2, To: 1, Type: protocol.MsgAppendResponse, Term: 4, Index: 2}, 0)
	if c.commit != 0 {
		t.Fatalf("committed %d by counting replicas of an old-term entry", c.commit)
	}
	c.durableNotice(4, 3, 0)
	c.step(&protocol.RaftMessage{From: 2, To: 1, Type: protocol.MsgAppendResponse, Term: 4, Index: 3}, 0)
	if c.commit != 3 {
		t.Fatalf("commit %d, want 3 once the current-term entry is on a majority", c.commit)
	}
}

func TestConsistencyCheckRejectsAMismatchedPrevEntry(t *testing.T) { // §5.3
	c := newCore(testCoreConfig(2, []uint64{1, 2, 3}, logWith(1, 1, 2), HardState{Term: 3}), 0)
	c.step(&protocol.RaftMessage{From: 1, To: 2, Type: protocol.MsgAppend, Term: 3, Index: 3, LogTerm: 3,
		Entries: []protocol.Entry{{Index: 4, Term: 3}}}, 0)
	rd := c.takeReady()
	if len(rd.entries) != 0 || len(rd.messages) != 1 || !rd.messages[0].Reject {
		t.Fatalf("want a rejection and nothing appended: %+v", rd)
	}
	// The hint is the largest index at or below the probe whose term is at
	// most the probe's term: (3, t2). The leader continues from its own
	// largest index with a term at most 2.
	if m := rd.messages[0]; m.RejectHint != 3 || m.LogTerm != 2 {
		t.Fatalf("hint (%d, t%d), want (3, t2)", m.RejectHint, m.LogTerm)
	}
}

func TestConflictingEntriesAreTruncatedAndReplaced(t *testing.T) { // §5.3
	net := newTestNet(t, 1, 2, 3)
	net.addNode(2, logWith(1, 1, 2, 2, 2), &memStable{hs: HardState{Term: 2}}, nil)
	net.addNode(1, logWith(1, 1, 3), &memStable{hs: HardState{Term: 3}}, nil)
	net.addNode(3, logWith(1, 1, 3), &memStable{hs: HardState{Term: 3}}, nil)
	net.elect(1)
	if got := logTerms(net.nodes[2].log); !slices.Equal(got, []uint64{1, 1, 3, 4}) {
		t.Fatalf("follower log terms %v, want [1 1 3 4]", got)
	}
}

func TestFastBacktrackingSkipsWholeTerms(t *testing.T) { // §5.3 optimization
	terms := []uint64{1}
	for range 200 {
		terms = append(terms, 2) // 200 entries the leader does not have
	}
	net := newTestNet(t, 1, 2, 3)
	net.addNode(2, logWith(terms...), &memStable{hs: HardState{Term: 2}}, nil)
	leaderTerms := []uint64{1}
	for range 100 {
		leaderTerms = append(leaderTerms, 3)
	}
	net.addNode(1, logWith(leaderTerms...), &memStable{hs: HardState{Term: 3}}, nil)
	net.addNode(3, logWith(leaderTerms...), &memStable{hs: HardState{Term: 3}}, nil)
	net.elect(1)
	rejects := 0
	for _, m := range net.nodes[2].sent {
		if m.Type == protocol.MsgAppendResponse && m.Reject {
			rejects++
		}
	}
	if rejects > 2 {
		t.Fatalf("%d rejections to find the match point; the hint should take at most 2", rejects)
	}
	if got := logTerms(net.nodes[2].log); len(got) != 102 || got[101] != 4 {
		t.Fatalf("follower not repaired: %d entries", len(got))
	}
}

func TestProbeStateSendsOneAppendAtATime(t *testing.T) {
	net := newTestNet(t, 1, 2, 3)
	net.elect(1)
	c := net.nodes[1].core
	c.progress[2].becomeProbe()
	net.isolate(2)
	net.nodes[1].takeMessages(protocol.MsgAppend)
	for range 5 {
		net.propose(1, "x")
	}
	n := 0
	for _, m := range net.nodes[1].takeMessages(protocol.MsgAppend) {
		if m.To == 2 {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("%d appends to a probing follower, want 1", n)
	}
}

func TestPipelinedReplicationIsBoundedByInflightMessagesAndBytes(t *testing.T) {
	for _, bound := range []string{"messages", "bytes"} {
		net := newTestNet(t, 1, 2, 3)
		net.addNode(1, newMemLog(), &memStable{}, func(c *coreConfig) {
			c.MaxInflightMessages = 4
			c.MaxInflightBytes = 1 << 30
			if bound == "bytes" {
				c.MaxInflightMessages = 100
				c.MaxInflightBytes = 300
			}
		})
		net.elect(1)
		net.isolate(2)
		net.nodes[1].takeMessages(protocol.MsgAppend)
		for range 10 {
			net.propose(1, string(make([]byte, 100)))
		}
		n := 0
		for _, m := range net.nodes[1].takeMessages(protocol.MsgAppend) {
			if m.To == 2 && len(m.Entries) > 0 {
				n++
			}
		}
		if n != 4 && bound == "messages" || n != 3 && bound == "bytes" {
			t.Fatalf("bound by %s: %d appends in flight", bound, n)
		}
	}
}

// TestAppendEntriesBatchUpToMaxAppendBytes: an AppendEntries carries as
// many entries as fit MaxAppendBytes as they are encoded
// (protocol.RaftEntrySize: data plus index, term, type and length), so
// that a transport frame of MaxAppendBytes plus protocol.MaxRaftHeaderSize
// holds it. Small entries cost a quarter more than their data: counting
// data alone, a leader catching a follower up from its log sent messages
// larger than the transport's frame, which dropped them, every heartbeat.
func TestAppendEntriesBatchUpToMaxAppendBytes(t *testing.T) {
	const maxAppend = 1000
	net := newTestNet(t, 1, 2, 3)
	net.addNode(1, newMemLog(), &memStable{}, func(c *coreConfig) { c.MaxAppendBytes = maxAppend })
	net.elect(1)
	checkAppends := func(what string) (sent int) {
		t.Helper()
		last := net.nodes[1].core.log.lastIndex()
		for _, m := range net.nodes[1].takeMessages(protocol.MsgAppend) {
			if m.To != 2 || len(m.Entries) == 0 {
				continue
			}
			sent++
			size := 0
			for i := range m.Entries {
				size += protocol.RaftEntrySize(&m.Entries[i])
			}
			if size > maxAppend || protocol.RaftMessageSize(&m) > maxAppend+protocol.MaxRaftHeaderSize {
				t.Fatalf("%s: append of %d entries (%d bytes of data) encodes its entries in %d bytes, the message in %d; limit %d",
					what, len(m.Entries), dataSize(m.Entries), size, protocol.RaftMessageSize(&m), maxAppend)
			}
			if next := m.Entries[len(m.Entries)-1].Index + 1; next <= last {
				e := protocol.Entry{Index: next, Term: net.nodes[1].core.log.term(next), Data: make([]byte, len(m.Entries[0].Data))}
				if size+protocol.RaftEntrySize(&e) <= maxAppend {
					t.Fatalf("%s: append of %d entries ending at %d (%d bytes encoded) has room for %d", what, len(m.Entries), next-1, size, next)
				}
			}
		}
		return sent
	}

	// Proposed entries, sent from the leader's unstable tail.
	net.isolate(3)
	net.nodes[1].takeMessages(protocol.MsgAppend)
	net.propose(1, slices.Repeat([]string{string(make([]byte, 100))}, 25)...)
	if checkAppends("proposed") == 0 {
		t.Fatal("no append sent to the follower")
	}
	net.heal()

	// Entries a lagging follower lacks, read from the leader's log.
	net.isolate(2)
	net.propose(1, slices.Repeat([]string{"0123456789abcdef"}, 300)...)
	net.nodes[1].takeMessages(protocol.MsgAppend)
	net.heal()
	last := net.nodes[1].core.log.lastIndex()
	for range 20 {
		net.advance(testHeartbeat)
		if net.nodes[2].log.LastIndex() == last {
			break
		}
	}
	if got := net.nodes[2].log.LastIndex(); got != last {
		t.Fatalf("follower's log ends at %d, the leader's at %d", got, last)
	}
	if sent := checkAppends("catch-up"); sent < 300*20/maxAppend {
		t.Fatalf("follower caught up with %d appends", sent)
	}
}

func TestLeaderCountsItselfOnlyOnceDurable(t *testing.T) { // thesis §10.2.1
	net := newTestNet(t, 1, 2, 3)
	net.elect(1)
	net.nodes[1].manualSync = true
	net.isolate(3)
	index := net.propose(1, "x")
	if c := net.nodes[1].core; c.commit >= index {
		t.Fatalf("committed %d with the leader's copy not durable and one follower", c.commit)
	}
	net.syncNode(1)
	if c := net.nodes[1].core; c.commit != index {
		t.Fatalf("commit %d, want %d once the leader's write is durable", c.commit, index)
	}
}

func TestFollowerAcknowledgesOnlyDurableEntries(t *testing.T) {
	net := newTestNet(t, 1, 2, 3)
	net.elect(1)
	f := net.nodes[2]
	f.manualSync = true
	f.takeMessages(protocol.MsgAppendResponse)
	index := net.propose(1, "x")
	for _, m := range f.takeMessages(protocol.MsgAppendResponse) {
		if m.Index >= index {
			t.Fatalf("acknowledged %d before it was durable", m.Index)
		}
	}
	net.syncNode(2)
	acks := f.takeMessages(protocol.MsgAppendResponse)
	if len(acks) == 0 || acks[len(acks)-1].Index != index {
		t.Fatalf("no acknowledgement after sync: %+v", acks)
	}
}

func TestFollowerCommitNeverExceedsItsDurableMatchingLog(t *testing.T) {
	log := newMemLog()
	c := newCore(testCoreConfig(2, []uint64{1, 2, 3}, log, HardState{Term: 1}), 0)
	c.step(&protocol.RaftMessage{From: 1, To: 2, Type: protocol.MsgAppend, Term: 1, Index: 0, LogTerm: 0, Commit: 3,
		Entries: []protocol.Entry{{Index: 1, Term: 1}, {Index: 2, Term: 1}, {Index: 3, Term: 1}}}, 0)
	rd := c.takeReady()
	_ = persistReady(log, &memStable{}, &rd)
	if c.commit != 0 {
		t.Fatalf("commit %d before anything is durable", c.commit)
	}
	c.step(&protocol.RaftMessage{From: 1, To: 2, Type: protocol.MsgHeartbeat, Term: 1, Commit: 50}, 0)
	c.durableNotice(1, 2, 0)
	if c.commit != 2 {
		t.Fatalf("commit %d, want 2 (durable) despite the leader's 50", c.commit)
	}
}

func TestDurableNoticeForATruncatedEntryIsIgnored(t *testing.T) {
	log := logWith(1, 1)
	c := newCore(testCoreConfig(2, []uint64{1, 2, 3}, log, HardState{Term: 1}), 0)
	c.step(&protocol.RaftMessage{From: 1, To: 2, Type: protocol.MsgAppend, Term: 1, Index: 2, LogTerm: 1,
		Entries: []protocol.Entry{{Index: 3, Term: 1}}}, 0)
	rd := c.takeReady()
	_ = persistReady(log, &memStable{}, &rd)
	// A new leader of term 2 replaces index 3 before the sync finished.
	c.step(&protocol.RaftMessage{From: 3, To: 2, Type: protocol.MsgAppend, Term: 2, Index: 2, LogTerm: 1,
		Entries: []protocol.Entry{{Index: 3, Term: 2}}}, 0)
	rd = c.takeReady()
	_ = persistReady(log, &memStable{}, &rd)
	c.durableNotice(1, 3, 0) // the old write's notice arrives late
	if c.durable >= 3 {
		t.Fatalf("durable %d: the notice for (t1, 3) was taken for the new entry (t2, 3)", c.durable)
	}
	c.durableNotice(2, 3, 0)
	if c.durable != 3 {
		t.Fatalf("durable %d after the right notice", c.durable)
	}
}

func TestLeadershipTransferSendsTimeoutNowToAnUpToDateTarget(t *testing.T) { // thesis §3.10
	net := newTestNet(t, 1, 2, 3)
	net.elect(1)
	net.propose(1, "x")
	if err := net.nodes[1].core.transferLeadership(2, net.now); err != nil {
		t.Fatal(err)
	}
	net.deliver()
	if c := net.nodes[2].core; c.role != RoleLeader {
		t.Fatalf("target role %v", c.role)
	}
	if c := net.nodes[1].core; c.role != RoleFollower || c.leader != 2 {
		t.Fatalf("old leader role %v leader %d", c.role, c.leader)
	}
}

func TestLeadershipTransferCatchesUpTheTargetFirst(t *testing.T) {
	net := newTestNet(t, 1, 2, 3)
	net.elect(1)
	net.isolate(3)
	net.propose(1, "a", "b")
	net.heal()
	c := net.nodes[1].core
	c.progress[3].becomeProbe()
	if err := c.transferLeadership(3, net.now); err != nil {
		t.Fatal(err)
	}
	if len(net.nodes[1].takeMessages(protocol.MsgTimeoutNow)) != 0 {
		t.Fatalf("TimeoutNow to a target that lacks entries")
	}
	net.deliver()
	if n3 := net.nodes[3].core; n3.role != RoleLeader || n3.log.lastIndex() < 3 {
		t.Fatalf("target role %v last %d", n3.role, n3.log.lastIndex())
	}
}

func TestLeadershipTransferRefusesProposalsAndIsAbandonedAfterAnElectionTimeout(t *testing.T) {
	net := newTestNet(t, 1, 2, 3)
	net.elect(1)
	net.isolate(3)
	c := net.nodes[1].core
	if err := c.transferLeadership(3, net.now); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.propose([]protocol.Entry{{Type: protocol.EntryControl}}, net.now); err != ErrTransferring {
		t.Fatalf("proposal during transfer: %v", err)
	}
	net.advance(testElection + testHeartbeat)
	if c.role != RoleLeader || c.transferee != 0 {
		t.Fatalf("transfer not abandoned: role %v transferee %d", c.role, c.transferee)
	}
	if _, _, err := c.propose([]protocol.Entry{{Type: protocol.EntryControl}}, net.now); err != nil {
		t.Fatalf("proposal after abandoning: %v", err)
	}
}

func TestHeartbeatCarriesTheCommitIndex(t *testing.T) {
	net := newTestNet(t, 1, 2, 3)
	net.elect(1)
	index := net.propose(1, "x")
	net.advance(testHeartbeat)
	for _, id := range []uint64{2, 3} {
		if c := net.nodes[id].core; c.commit != index {
			t.Fatalf("node %d commit %d, want %d", id, c.commit, index)
		}
	}
	hbs := net.nodes[1].takeMessages(protocol.MsgHeartbeat)
	if len(hbs) == 0 || hbs[len(hbs)-1].Commit != index {
		t.Fatalf("heartbeats %+v", hbs)
	}
}

func TestEveryNodeAppliesTheSameEntriesInOrder(t *testing.T) { // state machine safety
	net := newTestNet(t, 1, 2, 3)
	net.elect(1)
	net.propose(1, "a", "b", "c")
	net.advance(testHeartbeat)
	want := net.nodes[1].applied
	if len(want) != 4 {
		t.Fatalf("leader applied %d entries", len(want))
	}
	for _, id := range []uint64{2, 3} {
		got := net.nodes[id].applied
		if len(got) != len(want) {
			t.Fatalf("node %d applied %d", id, len(got))
		}
		for i := range got {
			if got[i].Index != want[i].Index || got[i].Term != want[i].Term || string(got[i].Data) != string(want[i].Data) {
				t.Fatalf("node %d applied %+v at %d", id, got[i], i)
			}
		}
	}
}

// A follower that received everything but syncs slowly is not sent the
// same entries again on every heartbeat: only a follower that received
// nothing over a heartbeat interval lost messages.
func TestSlowSyncingFollowerIsNotResentEntries(t *testing.T) {
	net := newTestNet(t, 1, 2, 3)
	net.elect(1)
	net.nodes[2].manualSync = true
	index := net.propose(1, "x", "y") + 1
	if c := net.nodes[1].core; c.commit < index {
		t.Fatalf("commit %d, want %d with the leader and node 3 durable", c.commit, index)
	}
	net.nodes[1].takeMessages(protocol.MsgAppend)
	net.advance(5 * testHeartbeat)
	for _, m := range net.nodes[1].takeMessages(protocol.MsgAppend) {
		if m.To == 2 && len(m.Entries) > 0 {
			t.Fatalf("resent %d entries from %d to a follower that holds them", len(m.Entries), m.Entries[0].Index)
		}
	}
	net.syncNode(2)
	net.deliver()
	if p := net.nodes[1].core.progress[2]; p.match != index {
		t.Fatalf("match %d after the follower synced, want %d", p.match, index)
	}
}

// An append lost on the way is sent again once a heartbeat shows the
// follower received nothing.
func TestLostAppendIsResentAfterAHeartbeat(t *testing.T) {
	net := newTestNet(t, 1, 2, 3)
	net.elect(1)
	net.cut[[2]uint64{1, 2}] = true
	index := net.propose(1, "x")
	delete(net.cut, [2]uint64{1, 2})
	net.advance(3 * testHeartbeat)
	if last := net.nodes[2].log.LastIndex(); last < index {
		t.Fatalf("follower's log ends at %d, want %d", last, index)
	}
	if p := net.nodes[1].core.progress[2]; p.match != index {
		t.Fatalf("match %d, want %d", p.match, index)
	}
}

// A lost acknowledgement is repeated by the next heartbeat response: with
// the third node down, the entry commits on it alone.
func TestLostAcknowledgementIsRecoveredFromAHeartbeat(t *testing.T) {
	net := newTestNet(t, 1, 2, 3)
	net.elect(1)
	net.isolate(3)
	net.cut[[2]uint64{2, 1}] = true
	index := net.propose(1, "x")
	if c := net.nodes[1].core; c.commit >= index {
		t.Fatalf("committed %d without an acknowledgement", c.commit)
	}
	delete(net.cut, [2]uint64{2, 1})
	net.nodes[1].takeMessages(protocol.MsgAppend)
	net.advance(testHeartbeat)
	if c := net.nodes[1].core; c.commit != index {
		t.Fatalf("commit %d after a heartbeat round, want %d", c.commit, index)
	}
	for _, m := range net.nodes[1].takeMessages(protocol.MsgAppend) {
		if m.To == 2 && len(m.Entries) > 0 {
			t.Fatalf("resent entries to a follower that holds them durably")
		}
	}
}

// A follower that restarts while the group is idle holds every entry
// durably but no longer knows that its log matches the leader's, so
// heartbeats alone cannot move its commit index (its restart hint is 0
// here). Its heartbeat response reports less than the match the leader
// has for it; the leader answers with an empty append at that match, and
// within a heartbeat the follower commits and applies everything, so a
// read it forwards finds the read index applied. Once it knows, idle
// heartbeats send it nothing more.
func TestRestartedFollowerLearnsTheCommitIndexWithinAHeartbeat(t *testing.T) {
	net := newTestNet(t, 1, 2, 3)
	net.elect(1)
	index := net.propose(1, "a", "b", "c") + 2
	net.advance(testHeartbeat)
	node := net.restart(2)
	if c := node.core; c.commit != 0 || c.log.lastIndex() != index {
		t.Fatalf("setup: restarted with commit %d and log to %d, want 0 and %d", c.commit, c.log.lastIndex(), index)
	}
	net.advance(testHeartbeat)
	if c := node.core; c.commit != index || len(node.applied) != int(index) {
		t.Fatalf("restarted follower: commit %d, applied %d entries a heartbeat later, want %d", c.commit, len(node.applied), index)
	}
	node.core.requestRead(7, net.now)
	net.deliver()
	if len(node.reads) != 1 || node.reads[0].err != nil || node.reads[0].index > uint64(len(node.applied)) {
		t.Fatalf("read %+v with %d entries applied", node.reads, len(node.applied))
	}
	net.nodes[1].takeMessages(protocol.MsgAppend)
	net.advance(5 * testHeartbeat)
	for _, m := range net.nodes[1].takeMessages(protocol.MsgAppend) {
		if m.To == 2 {
			t.Fatalf("idle heartbeats sent an append to a follower that knows its match: %+v", m)
		}
	}
}
