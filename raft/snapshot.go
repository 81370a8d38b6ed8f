package raft

import (
	"github.com/raftmq/raftmq/protocol"
)

// Snapshots and log compaction, core side (§7, thesis §5).
//
// The owner of the log compacts it (deletes a prefix) once a snapshot of
// the state machine covers that prefix; the core only reads FirstIndex. A
// leader whose follower needs an entry before its FirstIndex puts the
// follower in snapshotState and asks the driver, through ready.snapshots,
// to stream its latest snapshot; the follower's driver asks the core what
// to do with a received snapshot (snapshotAction), carries out the I/O, and
// reports the install (snapshotInstalled), which acknowledges it to the
// leader with an ordinary MsgAppendResponse. The leader then probes from
// the snapshot's index on. A snapshot that fails or stalls puts the
// follower back in probe state, which asks for a snapshot again.

// snapshotRequest asks the driver to stream a snapshot to a follower.
type snapshotRequest struct {
	to uint64
	// need is the first index the follower lacks that the leader's log no
	// longer holds: any snapshot at or past need-1 does.
	need uint64
}

// snapshotActionKind is what a follower does with a received snapshot.
type snapshotActionKind uint8

const (
	// snapshotSkip: the follower already committed the snapshot's index;
	// it acknowledges its commit index and ignores the snapshot (a
	// snapshot for an index the follower has).
	snapshotSkip snapshotActionKind = iota
	// snapshotKeepLog: the follower's log holds the snapshot's last entry
	// with its term (§7: "retain the entries following it"); it commits up
	// to it and applies from its own log; no restore is needed.
	snapshotKeepLog
	// snapshotRestore: the log lacks the snapshot's last entry or holds it
	// with another term; the follower restores the state machine from the
	// snapshot and discards its whole log (§7: "discard the entire log"),
	// conflicting suffix included, so it never asks again for the same one.
	snapshotRestore
)

// snapshotAction decides what the follower does with a snapshot whose last
// included entry is (index, term). It changes nothing.
func (c *core) snapshotAction(index, term uint64) snapshotActionKind {
	switch {
	case index <= c.commit:
		return snapshotSkip
	case c.log.matchTerm(index, term):
		return snapshotKeepLog
	}
	return snapshotRestore
}

// snapshotInstalled records that the follower holds the snapshot (index,
// term) from leader: for snapshotRestore the driver restored the state
// machine and reset the log storage to continue at index+1 with previous
// term term (durably) before calling. The follower acknowledges index to
// the leader.
func (c *core) snapshotInstalled(from, index, term uint64, action snapshotActionKind) {
	switch action {
	case snapshotSkip:
	case snapshotKeepLog:
		c.leaderMatch = max(c.leaderMatch, index)
		c.leaderCommit = max(c.leaderCommit, index)
		c.advanceFollowerCommit()
	case snapshotRestore:
		// Configurations of the discarded log above the commit index are
		// gone (the driver set the snapshot's own with
		// restoreConfiguration first).
		if c.revertConfigurations(c.commit + 1) {
			c.setConfiguration()
		}
		c.log.unstable = nil
		c.commit = index
		c.handedOut = index
		c.durable = index
		c.leaderMatch = index
		c.leaderCommit = max(c.leaderCommit, index)
		c.snapshotIndex = index
	}
	ack := max(c.commit, min(c.durable, c.leaderMatch))
	c.ackSent = max(c.ackSent, ack)
	if from != 0 {
		c.send(protocol.RaftMessage{To: from, Type: protocol.MsgAppendResponse, Index: ack})
	}
}

// needSnapshot moves a follower whose next entry was compacted away into
// snapshotState and asks the driver for a snapshot (once per attempt).
func (c *core) needSnapshot(to uint64, p *progress) {
	if p.state == snapshotState {
		return
	}
	p.becomeSnapshot(c.now)
	c.snapshotRequests = append(c.snapshotRequests, snapshotRequest{to: to, need: p.next})
}

// snapshotFailed reports that streaming a snapshot to a follower failed or
// was abandoned; the leader probes again (and asks again if still needed).
func (c *core) snapshotFailed(to uint64) {
	if p := c.progress[to]; c.role == RoleLeader && p != nil && p.state == snapshotState {
		p.becomeProbe()
		c.sendAppend(to, p)
	}
}
