package raft

import (
	"fmt"

	"github.com/raftmq/raftmq/protocol"
)

// handleAppend is the follower side of AppendEntries (§5.3). Entries are
// acknowledged only once durable: the reply goes out now when everything the
// message carried is already durable, otherwise from durableNotice.
func (c *core) handleAppend(m *protocol.RaftMessage) {
	for i := range m.Entries {
		if m.Entries[i].Index != m.Index+1+uint64(i) {
			return // malformed: entries must be dense after prevLogIndex
		}
	}
	if m.Index < c.commit {
		// Everything up to our commit index matches the leader and is
		// durable; the leader can continue from there.
		c.send(protocol.RaftMessage{To: m.From, Type: protocol.MsgAppendResponse, Index: c.commit})
		return
	}
	if !c.log.matchTerm(m.Index, m.LogTerm) {
		// Consistency check failed. Hint the largest index at or below
		// the probe whose term is at most prevLogTerm, so the leader skips
		// whole terms instead of one index per round trip.
		hintIndex, hintTerm := c.log.findConflictByTerm(min(m.Index, c.log.lastIndex()), m.LogTerm)
		c.send(protocol.RaftMessage{To: m.From, Type: protocol.MsgAppendResponse, Reject: true,
			Index: m.Index, RejectHint: hintIndex, LogTerm: hintTerm})
		return
	}
	lastNew := m.Index + uint64(len(m.Entries))
	if conflict := c.log.findConflict(m.Entries); conflict != 0 {
		if conflict <= c.commit {
			panic(fmt.Sprintf("raft: node %d: entry %d conflicts with committed log (commit %d)", c.id, conflict, c.commit))
		}
		// Only a conflicting entry truncates; entries after the message's
		// last entry stay when everything matched.
		c.log.truncateAndAppend(m.Entries[conflict-m.Index-1:])
		c.configurationsAppended(conflict, m.Entries[conflict-m.Index-1:])
		c.durable = min(c.durable, conflict-1)
		c.leaderMatch = min(c.leaderMatch, conflict-1)
	}
	c.leaderMatch = max(c.leaderMatch, lastNew)
	c.leaderCommit = max(c.leaderCommit, m.Commit)
	c.advanceFollowerCommit()
	if ack := min(c.durable, c.leaderMatch); ack >= lastNew {
		c.ackSent = max(c.ackSent, ack)
		c.send(protocol.RaftMessage{To: m.From, Type: protocol.MsgAppendResponse, Index: ack})
	}
}

// advanceFollowerCommit moves the follower's commit index to what the leader
// committed, but never past what this replica holds durably and knows to
// match the leader's log.
func (c *core) advanceFollowerCommit() {
	if target := min(c.leaderCommit, c.durable, c.leaderMatch); target > c.commit {
		c.commit = target
	}
}

func (c *core) handleHeartbeat(m *protocol.RaftMessage) {
	c.leaderCommit = max(c.leaderCommit, m.Commit)
	c.advanceFollowerCommit()
	// Index tells the leader what arrived (lost appends show as no
	// progress), Commit what is durable and matches it (a lost
	// acknowledgement is repeated with every heartbeat).
	c.send(protocol.RaftMessage{To: m.From, Type: protocol.MsgHeartbeatResponse, Context: m.Context,
		Index: c.leaderMatch, Commit: min(c.durable, c.leaderMatch)})
}

func (c *core) stepLeader(m *protocol.RaftMessage) {
	p := c.progress[m.From]
	if p == nil || m.From == c.id {
		return
	}
	p.recentActive = true
	p.heard, p.heardAt = true, c.now
	switch m.Type {
	case protocol.MsgAppendResponse:
		c.handleAppendResponse(m, p)
	case protocol.MsgHeartbeatResponse:
		if m.Commit > p.match && (p.state != snapshotState || m.Commit+1 >= c.log.firstIndex()) {
			// A durable match the leader missed (its acknowledgement was
			// lost): take it as one. In snapshot state only when the log
			// continues from it (the follower installed the snapshot and
			// its acknowledgement was lost); otherwise it still needs
			// the snapshot being streamed, and probing would ask again.
			c.handleAppendResponse(&protocol.RaftMessage{From: m.From, Type: protocol.MsgAppendResponse, Index: m.Commit}, p)
			if c.role != RoleLeader {
				return // removed by the configuration it just committed
			}
		}
		if p.state == replicateState && p.match < c.log.lastIndex() && m.Index < p.next-1 && m.Index == p.receivedAtHeartbeat {
			// Nothing received for a whole heartbeat interval while
			// entries are outstanding: messages were lost, start over.
			p.becomeProbe()
			p.next = p.match + 1
		}
		if p.state == snapshotState && c.now >= p.snapshotSince+2*c.cfg.ElectionTimeout {
			// A transfer that made no progress for two election
			// timeouts is abandoned; probing asks for it again.
			p.becomeProbe()
		}
		p.receivedAtHeartbeat = m.Index
		p.probeSent = false
		switch {
		case p.match < c.log.lastIndex():
			c.sendAppend(m.From, p)
		case m.Index < p.match:
			// Nothing is outstanding, yet the follower reports less
			// than it acknowledged: it holds everything durably but
			// no longer knows that its log matches this one (it
			// restarted), so heartbeats cannot move its commit index.
			// An empty append at the match tells it, with the commit
			// index it forgot too. Index is what the follower received,
			// so one merely slow to sync never reports less than its
			// match.
			p.sentCommit = 0
			c.sendAppend(m.From, p)
		}
		c.handleHeartbeatResponseRead(m, p)
	case protocol.MsgReadIndex:
		c.handleReadIndexRequest(m)
	}
}

func (c *core) handleAppendResponse(m *protocol.RaftMessage, p *progress) {
	if m.Reject {
		probeHint, _ := c.log.findConflictByTerm(m.RejectHint, m.LogTerm)
		if p.maybeDecreaseTo(m.Index, probeHint) {
			if p.state == replicateState {
				p.becomeProbe()
			}
			c.sendAppend(m.From, p)
		}
		return
	}
	if !p.maybeUpdate(m.Index) {
		if p.state == probeState && m.Index >= p.match && m.Index == p.next-1 {
			p.becomeReplicate()
			c.sendAppend(m.From, p)
		}
		return
	}
	if p.state == probeState {
		p.becomeReplicate()
	} else if p.state == snapshotState {
		// The follower installed a snapshot (or caught up otherwise):
		// probe from what it acknowledged.
		p.becomeProbe()
	}
	if c.maybeCommit() {
		if c.role != RoleLeader {
			return // removed by the configuration it just committed
		}
		c.broadcastAppend()
	} else {
		c.sendAppend(m.From, p)
	}
	if c.transferee == m.From && p.match == c.log.lastIndex() {
		c.send(protocol.RaftMessage{To: m.From, Type: protocol.MsgTimeoutNow})
	}
}

// maybeCommit advances the commit index to the largest index a majority
// holds durably, only if that entry is of the current term (§5.4.2).
func (c *core) maybeCommit() bool {
	index := c.voters.CommittedIndex(func(id uint64) uint64 {
		if p := c.progress[id]; p != nil {
			return p.match
		}
		return 0
	}, c.matchScratch)
	if index <= c.commit || c.log.term(index) != c.term {
		return false
	}
	c.commit = index
	if len(c.reads) > 0 {
		c.maybeStartReadRound()
	}
	c.configurationCommitted()
	return true
}

func (c *core) broadcastAppend() {
	for _, id := range c.members {
		if id != c.id {
			c.sendAppend(id, c.progress[id])
		}
	}
}

// sendAppend sends the follower what it lacks: one probe in probeState, a
// pipeline of batches bounded by inflights in replicateState, or an empty
// append carrying a commit index the follower has not seen.
func (c *core) sendAppend(to uint64, p *progress) {
	last := c.log.lastIndex()
	for !p.paused() {
		prevIndex := p.next - 1
		if prevIndex+1 < c.log.firstIndex() {
			// The entries were compacted away: a snapshot is needed.
			c.needSnapshot(to, p)
			return
		}
		// The owner may delete a prefix of the log while these reads run
		// (retention does not wait for the core): entries read away
		// that way were compacted as well, and a snapshot is needed.
		prevTerm, compacted := c.log.termUnlessCompacted(prevIndex)
		var ents []protocol.Entry
		if p.next <= last && !compacted {
			ents, compacted = c.log.appendEntries(p.next, last+1, c.cfg.MaxAppendBytes)
		}
		if compacted {
			c.needSnapshot(to, p)
			return
		}
		if c.log.err != nil {
			return
		}
		if len(ents) == 0 && p.state == replicateState && p.sentCommit >= c.commit {
			return
		}
		c.send(protocol.RaftMessage{To: to, Type: protocol.MsgAppend, Index: prevIndex, LogTerm: prevTerm, Entries: ents, Commit: c.commit})
		p.sentCommit = c.commit
		if p.state == probeState {
			p.probeSent = true
			return
		}
		if len(ents) == 0 {
			return
		}
		p.next = ents[len(ents)-1].Index + 1
		p.inflights.add(p.next-1, dataSize(ents))
	}
}

func (c *core) broadcastHeartbeat() {
	for _, id := range c.members {
		if id == c.id {
			continue
		}
		p := c.progress[id]
		c.send(protocol.RaftMessage{To: id, Type: protocol.MsgHeartbeat, Commit: min(p.match, c.commit), Context: c.readRound})
	}
}
