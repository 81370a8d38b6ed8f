package raft

import (
	"slices"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/raftmq/raftmq/protocol"
	"github.com/raftmq/raftmq/snapshot"
)

// reset drops everything and continues at next with Term(next-1)=prevTerm
// (segmentlog.Log.Reset).
func (l *memLog) reset(next, prevTerm uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.first, l.prevTerm, l.ents, l.durable = next, prevTerm, nil, next-1
}

// compact deletes the entries before index (retention behind a snapshot).
func (l *memLog) compact(index uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	drop := index - l.first
	l.prevTerm = l.ents[drop-1].Term
	l.ents = slices.Clone(l.ents[drop:])
	l.first = index
}

// installSnapshot carries out a snapshot install on a test node the way the
// driver does: decide, reset the log when restoring, report.
func (n *testNet) installSnapshot(id, from, index, term uint64) snapshotActionKind {
	node := n.nodes[id]
	action := node.core.snapshotAction(index, term)
	if action == snapshotRestore {
		node.log.reset(index+1, term)
	}
	node.core.snapshotInstalled(from, index, term, action)
	n.deliver()
	return action
}

func TestSnapshotForAnIndexTheFollowerHasIsSkipped(t *testing.T) {
	net := newTestNet(t, 1, 2, 3)
	net.elect(1)
	net.propose(1, "a", "b", "c", "d")
	follower := net.nodes[2]
	before := logTerms(follower.log)
	commit := follower.core.commit
	if action := net.installSnapshot(2, 1, 3, 1); action != snapshotSkip {
		t.Fatalf("action %v for a snapshot at 3 with commit %d, want skip", action, commit)
	}
	if got := logTerms(follower.log); !slices.Equal(got, before) || follower.log.FirstIndex() != 1 {
		t.Fatalf("log changed: %v -> %v (first %d)", before, got, follower.log.FirstIndex())
	}
	if follower.core.commit != commit {
		t.Fatalf("commit %d -> %d", commit, follower.core.commit)
	}
}

func TestSnapshotMatchingTheLogKeepsTheSuffix(t *testing.T) { // §7
	// The follower holds entry 3 with the snapshot's term but does not know
	// it committed: it keeps everything after it and applies from its log.
	c := newCore(testCoreConfig(9, []uint64{1, 2, 3}, logWith(1, 1, 1, 1), HardState{Term: 1}), 0)
	if action := c.snapshotAction(3, 1); action != snapshotKeepLog {
		t.Fatalf("uncommitted matching log: action %v, want keep-log", action)
	}
	c.snapshotInstalled(1, 3, 1, snapshotKeepLog)
	if c.log.lastIndex() != 4 || c.leaderMatch != 3 || c.commit != 3 {
		t.Fatalf("keep-log install: last %d leaderMatch %d commit %d", c.log.lastIndex(), c.leaderMatch, c.commit)
	}
}

// A follower whose log runs past the snapshot's index with another term
// there discards its whole log, and the leader's next AppendEntries
// matches: no second snapshot (no loop).
func TestSnapshotOverAConflictingSuffixDiscardsTheLog(t *testing.T) { // §7
	log := logWith(1, 1, 2, 2, 2, 2)
	c := newCore(testCoreConfig(2, []uint64{1, 2, 3}, log, HardState{Term: 3}), 0)
	c.step(&protocol.RaftMessage{From: 1, To: 2, Type: protocol.MsgHeartbeat, Term: 3}, 0)
	c.takeReady()
	if action := c.snapshotAction(4, 3); action != snapshotRestore {
		t.Fatalf("conflicting term at the snapshot index: action %v, want restore", action)
	}
	log.reset(5, 3)
	c.snapshotInstalled(1, 4, 3, snapshotRestore)
	if c.log.lastIndex() != 4 || c.log.term(4) != 3 || c.commit != 4 {
		t.Fatalf("after install: last %d term(4) %d commit %d", c.log.lastIndex(), c.log.term(4), c.commit)
	}
	rd := c.takeReady()
	if len(rd.messages) != 1 || rd.messages[0].Type != protocol.MsgAppendResponse || rd.messages[0].Index != 4 || rd.messages[0].Reject {
		t.Fatalf("install acknowledgement %+v, want MsgAppendResponse index 4", rd.messages)
	}
	c.step(&protocol.RaftMessage{From: 1, To: 2, Type: protocol.MsgAppend, Term: 3, Index: 4, LogTerm: 3,
		Entries: []protocol.Entry{{Index: 5, Term: 3}, {Index: 6, Term: 3}}}, 0)
	rd = c.takeReady()
	if err := persistReady(log, &memStable{}, &rd); err != nil {
		t.Fatal(err)
	}
	for _, m := range rd.messages {
		if m.Reject {
			t.Fatalf("append after the snapshot rejected: %+v", m)
		}
	}
	if c.snapshotAction(4, 3) != snapshotSkip {
		t.Fatalf("the same snapshot would be installed again")
	}
}

// followerBehindACompaction returns a three-node net whose leader, node 1,
// compacted its log up to the snapshot (index, term) while node 3 was cut
// off, and has since asked for a snapshot for node 3.
func followerBehindACompaction(t *testing.T) (net *testNet, snapIndex, snapTerm uint64) {
	t.Helper()
	net = newTestNet(t, 1, 2, 3)
	net.elect(1)
	net.isolate(3)
	for range 5 {
		net.propose(1, "a", "b")
	}
	leader := net.nodes[1]
	snapIndex = leader.core.commit - 1
	snapTerm = leader.core.log.term(snapIndex)
	leader.log.compact(snapIndex + 1)
	net.heal()
	net.advance(3 * testHeartbeat) // the lost appends are noticed; probing finds the gap
	return net, snapIndex, snapTerm
}

func TestSlowFollowerAfterLeaderCompactsGetsASnapshot(t *testing.T) {
	net, snapIndex, snapTerm := followerBehindACompaction(t)
	leader := net.nodes[1]
	reqs := leader.snapshots
	leader.snapshots = nil
	if len(reqs) != 1 || reqs[0].to != 3 || reqs[0].need > snapIndex+1 {
		t.Fatalf("snapshot requests %+v, want one for node 3", reqs)
	}
	if p := leader.core.progress[3]; p.state != snapshotState {
		t.Fatalf("follower 3 in %v, want snapshot", p.state)
	}
	appliedBefore := len(net.nodes[3].applied)
	if action := net.installSnapshot(3, 1, snapIndex, snapTerm); action != snapshotRestore {
		t.Fatalf("action %v, want restore", action)
	}
	net.advance(testHeartbeat)
	follower := net.nodes[3]
	if follower.log.LastIndex() != leader.log.LastIndex() || follower.core.commit != leader.core.commit {
		t.Fatalf("follower last %d commit %d, leader last %d commit %d", follower.log.LastIndex(), follower.core.commit, leader.log.LastIndex(), leader.core.commit)
	}
	if p := leader.core.progress[3]; p.state != replicateState || p.match != leader.log.LastIndex() {
		t.Fatalf("follower progress %v match %d", p.state, p.match)
	}
	if len(leader.snapshots) != 0 {
		t.Fatalf("a second snapshot was requested: %+v", leader.snapshots)
	}
	// After the install the follower applies only entries past the snapshot.
	for _, e := range follower.applied[appliedBefore:] {
		if e.Index <= snapIndex {
			t.Fatalf("applied entry %d covered by the snapshot at %d", e.Index, snapIndex)
		}
	}
	if len(follower.applied) == appliedBefore {
		t.Fatalf("follower applied nothing after the snapshot")
	}
}

// A follower installs a snapshot and its one acknowledgement is lost. Its
// heartbeat responses repeat its durable match, the snapshot's index, from
// which the leader's log continues: the leader takes it as the
// acknowledgement and replicates the rest, instead of waiting two election
// timeouts to stream the whole snapshot again.
func TestLostSnapshotAcknowledgementIsRepeatedByHeartbeats(t *testing.T) {
	net, snapIndex, snapTerm := followerBehindACompaction(t)
	leader := net.nodes[1]
	p := leader.core.progress[3]
	if len(leader.snapshots) != 1 || p.state != snapshotState {
		t.Fatalf("setup: snapshot requests %+v, follower 3 in %v", leader.snapshots, p.state)
	}
	leader.snapshots = nil
	net.cut[[2]uint64{3, 1}] = true
	if action := net.installSnapshot(3, 1, snapIndex, snapTerm); action != snapshotRestore {
		t.Fatalf("action %v, want restore", action)
	}
	net.heal()
	net.advance(testHeartbeat)
	last := leader.log.LastIndex()
	if p.state != replicateState || p.match != last || net.nodes[3].log.LastIndex() != last {
		t.Fatalf("a heartbeat after the lost acknowledgement: follower 3 in %v at match %d with log to %d, want replicate at %d",
			p.state, p.match, net.nodes[3].log.LastIndex(), last)
	}
	net.advance(2 * testElection)
	if len(leader.snapshots) != 0 {
		t.Fatalf("the snapshot was requested again: %+v", leader.snapshots)
	}
}

func TestStalledSnapshotIsRequestedAgain(t *testing.T) {
	net := newTestNet(t, 1, 2, 3)
	net.elect(1)
	net.isolate(3)
	net.propose(1, "a", "b", "c", "d")
	leader := net.nodes[1]
	leader.log.compact(leader.core.commit)
	net.heal()
	net.advance(3 * testHeartbeat)
	if len(leader.snapshots) != 1 {
		t.Fatalf("requests %+v, want 1", leader.snapshots)
	}
	net.advance(2*testElection + 2*testHeartbeat) // the transfer never finishes
	if len(leader.snapshots) != 2 {
		t.Fatalf("requests %+v after a stalled transfer, want a second", leader.snapshots)
	}
	leader.core.snapshotFailed(3)
	if p := leader.core.progress[3]; p.state != snapshotState {
		t.Fatalf("after a failure the leader should ask again at once: state %v", p.state)
	}
}

// An owner restarting after a crash in the middle of an install (the
// snapshot in the store, the log not reset yet) resets the log when the
// snapshot is past its end or disagrees with its term at the snapshot's
// index (the install was replacing a conflicting suffix, which must not
// come back as committed), and keeps a log that agrees.
func TestResumeSnapshotInstallResetsALogThatDoesNotContinueTheSnapshot(t *testing.T) { // §7
	store, err := snapshot.OpenStore(vfs.NewMem(), "snapshots")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok, err := ResumeSnapshotInstall(store, logWith(1, 1)); ok || err != nil {
		t.Fatalf("empty store: ok %v err %v", ok, err)
	}
	w, err := store.Create(snapshot.Meta{Index: 4, Term: 3, Configuration: snapshot.Configuration{Voters: []uint64{1, 2, 3}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name        string
		log         *memLog
		first, last uint64
	}{
		{"snapshot past the log's end", logWith(1, 1), 5, 4},
		{"another term at the snapshot's index", logWith(1, 1, 2, 2, 2, 2), 5, 4},
		{"the log continues the snapshot", logWith(1, 1, 3, 3, 3), 1, 5},
	} {
		latest, ok, err := ResumeSnapshotInstall(store, tc.log)
		if err != nil || !ok || latest.Meta.Index != 4 {
			t.Fatalf("%s: latest %v ok %v err %v", tc.name, latest.Meta.ID(), ok, err)
		}
		if first, last := tc.log.FirstIndex(), tc.log.LastIndex(); first != tc.first || last != tc.last {
			t.Fatalf("%s: log [%d, %d], want [%d, %d]", tc.name, first, last, tc.first, tc.last)
		}
		if term, _ := tc.log.Term(4); term != 3 {
			t.Fatalf("%s: term of index 4 is %d, want 3", tc.name, term)
		}
	}
}
