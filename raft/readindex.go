package raft

import (
	"time"

	"github.com/raftmq/raftmq/protocol"
)

// Linearizable reads with ReadIndex (thesis §6.4).
//
// The leader answers a read with its commit index as of a heartbeat round
// that started after the read arrived; the round is confirmed once a
// majority (the leader included) has answered a heartbeat of that round or
// a later one, which proves nobody else led a newer term when the round
// started. The reader then waits until its state machine applied up to that
// index. A leader that has not yet committed an entry of its own term does
// not know the commit index (§5.4.2) and holds reads until it does.
//
// At most one round is in flight: reads that arrive meanwhile wait for the
// next one, so concurrent reads share rounds. Periodic heartbeats carry the
// newest round too, so a round whose heartbeats were lost is confirmed by the
// next periodic heartbeat. A follower forwards reads to the leader
// (MsgReadIndex) and re-forwards those unanswered for an election timeout.
// A follower that hears from no leader for an election timeout fails its
// forwarded reads: a voter when it campaigns, a non-voter at the same
// deadline (a leader that removed it ignores its reads).

// pendingRead is a read the leader has not confirmed yet.
type pendingRead struct {
	id    uint64 // the requester's read id
	from  uint64 // the requesting node (this leader for local reads)
	round uint64 // the heartbeat round that confirms it; 0 until one starts
	index uint64 // the commit index when its round started
}

// forwardedRead is a follower's read waiting for the leader's answer.
type forwardedRead struct {
	id     uint64
	sentAt time.Duration
}

// readState is the outcome of a read: the index the reader must have
// applied before it reads, or an error (*NotLeaderError).
type readState struct {
	id    uint64
	index uint64
	err   error
}

// requestRead starts a linearizable read with the driver's id; the outcome
// comes out in ready.reads.
func (c *core) requestRead(id uint64, now time.Duration) {
	c.now = max(c.now, now)
	switch {
	case c.log.err != nil:
		c.readStates = append(c.readStates, readState{id: id, err: c.log.err})
	case c.role == RoleLeader:
		c.reads = append(c.reads, pendingRead{id: id, from: c.id})
		c.maybeStartReadRound()
	case c.role == RoleFollower && c.leader != 0:
		c.forwarded = append(c.forwarded, forwardedRead{id: id, sentAt: c.now})
		c.send(protocol.RaftMessage{To: c.leader, Type: protocol.MsgReadIndex, Context: id})
	default:
		c.readStates = append(c.readStates, readState{id: id, err: &NotLeaderError{Leader: c.leader}})
	}
}

// committedInTerm reports whether the leader committed an entry of its own
// term, so its commit index is the cluster's (§5.4.2, thesis §6.4 step 1).
func (c *core) committedInTerm() bool { return c.log.term(c.commit) == c.term }

// maybeStartReadRound starts a heartbeat round for the reads waiting for
// one, unless a round is in flight or the leader cannot serve reads yet.
func (c *core) maybeStartReadRound() {
	if c.role != RoleLeader || c.readRound > c.readConfirmed || !c.committedInTerm() {
		return
	}
	waiting := false
	for i := range c.reads {
		if c.reads[i].round == 0 {
			c.reads[i].round = c.readRound + 1
			c.reads[i].index = c.commit
			waiting = true
		}
	}
	if !waiting {
		return
	}
	c.readRound++
	c.readRounds++
	if c.confirmReads() {
		return // a single voter confirms its own round
	}
	c.broadcastHeartbeat()
}

// confirmReads releases the reads whose round a quorum acknowledged and
// reports whether any was released.
func (c *core) confirmReads() bool {
	confirmed := c.quorumReadRound()
	if confirmed <= c.readConfirmed {
		return false
	}
	c.readConfirmed = confirmed
	kept := c.reads[:0]
	for _, r := range c.reads {
		if r.round == 0 || r.round > confirmed {
			kept = append(kept, r)
			continue
		}
		if r.from == c.id {
			c.readStates = append(c.readStates, readState{id: r.id, index: r.index})
		} else {
			c.send(protocol.RaftMessage{To: r.from, Type: protocol.MsgReadIndexResponse, Index: r.index, Context: r.id})
		}
	}
	clear(c.reads[len(kept):])
	c.reads = kept
	return true
}

// quorumReadRound is the newest round a quorum of voters acknowledged.
func (c *core) quorumReadRound() uint64 {
	return c.voters.CommittedIndex(func(id uint64) uint64 {
		if id == c.id {
			return c.readRound
		}
		if p := c.progress[id]; p != nil {
			return p.readAck
		}
		return 0
	}, c.matchScratch)
}

// handleHeartbeatResponseRead records the round a follower acknowledged.
func (c *core) handleHeartbeatResponseRead(m *protocol.RaftMessage, p *progress) {
	if m.Context > p.readAck && m.Context <= c.readRound {
		p.readAck = m.Context
		if c.confirmReads() {
			c.maybeStartReadRound()
		}
	}
}

// handleReadIndexRequest queues a follower's read on the leader.
func (c *core) handleReadIndexRequest(m *protocol.RaftMessage) {
	c.reads = append(c.reads, pendingRead{id: m.Context, from: m.From})
	c.maybeStartReadRound()
}

// handleReadIndexResponse resolves a forwarded read on a follower.
func (c *core) handleReadIndexResponse(m *protocol.RaftMessage) {
	for i, f := range c.forwarded {
		if f.id != m.Context {
			continue
		}
		c.forwarded = append(c.forwarded[:i], c.forwarded[i+1:]...)
		if m.Reject {
			c.readStates = append(c.readStates, readState{id: f.id, err: &NotLeaderError{Leader: c.leader}})
		} else {
			c.readStates = append(c.readStates, readState{id: f.id, index: m.Index})
		}
		return
	}
}

// refreshForwardedReads re-forwards reads the leader did not answer within an
// election timeout (the request or the answer was lost). A read is
// idempotent, so a duplicate answer is ignored.
func (c *core) refreshForwardedReads() {
	for i := range c.forwarded {
		f := &c.forwarded[i]
		if c.now >= f.sentAt+c.cfg.ElectionTimeout {
			f.sentAt = c.now
			c.send(protocol.RaftMessage{To: c.leader, Type: protocol.MsgReadIndex, Context: f.id})
		}
	}
}

// failReads fails every read in progress: the leader stepped down or the
// follower's leader changed. Reads forwarded to this former leader are
// answered with a rejection.
func (c *core) failReads() {
	for _, r := range c.reads {
		if r.from == c.id {
			c.readStates = append(c.readStates, readState{id: r.id, err: &NotLeaderError{Leader: c.leader}})
		} else {
			c.send(protocol.RaftMessage{To: r.from, Type: protocol.MsgReadIndexResponse, Reject: true, Context: r.id})
		}
	}
	for _, f := range c.forwarded {
		c.readStates = append(c.readStates, readState{id: f.id, err: &NotLeaderError{Leader: c.leader}})
	}
	c.reads, c.forwarded = nil, nil
	c.readRound, c.readConfirmed = 0, 0
}
