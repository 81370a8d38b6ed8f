package raft

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/raftmq/raftmq/protocol"
	"github.com/raftmq/raftmq/raft/quorum"
)

// Role is a replica's role in its group.
type Role uint8

const (
	RoleFollower Role = iota
	RolePreCandidate
	RoleCandidate
	RoleLeader
)

func (r Role) String() string {
	switch r {
	case RoleFollower:
		return "follower"
	case RolePreCandidate:
		return "pre-candidate"
	case RoleCandidate:
		return "candidate"
	case RoleLeader:
		return "leader"
	}
	return fmt.Sprintf("role(%d)", uint8(r))
}

// coreConfig configures the deterministic core of one replica.
type coreConfig struct {
	ID     uint64
	Voters []uint64
	// Configuration, when it has voters, replaces Voters: the configuration
	// as of the log's FirstIndex-1 (from a snapshot's metadata). Config
	// entries in the log override it.
	Configuration protocol.RaftConfiguration
	// ConfigurationIndex is the index Configuration is as of (a
	// snapshot's); the start-up scan of the log stops there.
	ConfigurationIndex  uint64
	Log                 LogReader
	HardState           HardState
	Applied             uint64 // last index the state machine already holds
	ElectionTimeout     time.Duration
	HeartbeatInterval   time.Duration
	CampaignEarly       bool // election timer in [ET/2, ET) (GroupConfig.CampaignEarly)
	MaxAppendBytes      uint64
	MaxInflightMessages int
	MaxInflightBytes    uint64
	MaxApplyBytes       uint64
	DisablePreVote      bool
	DisableCheckQuorum  bool
	Seed                uint64
}

// ready is what the core decided since the last call to takeReady. The
// driver must, in this order: append entries to the log (truncating after
// entries[0].Index-1 first when that is at or below the log's last index)
// and save the hard state when saveHardState is set, before it calls the
// core again or sends any message; then send messages; then apply committed.
// It syncs the log when it likes and reports what became durable with
// core.durable(term, index).
type ready struct {
	entries       []protocol.Entry
	hardState     HardState
	saveHardState bool
	messages      []protocol.RaftMessage
	committed     []protocol.Entry
	// snapshots asks the driver to stream snapshots to followers
	// (snapshot.go).
	snapshots []snapshotRequest
	// reads are finished ReadIndex requests (readindex.go).
	reads []readState
	err   error
}

// core is the deterministic Raft state machine of one replica: no
// goroutines, no I/O besides reading the log, no clock (time comes in as an
// argument) and randomness from a seeded generator.
type core struct {
	cfg  coreConfig
	id   uint64
	log  raftLog
	rand *rand.Rand

	term, vote uint64
	role       Role
	leader     uint64
	commit     uint64
	handedOut  uint64 // committed entries given to the driver to apply
	durable    uint64 // highest index known durable in the local log

	// Follower state for the current term.
	leaderMatch  uint64 // highest index known to match the leader's log
	leaderCommit uint64 // highest commit index heard from the leader
	ackSent      uint64

	now               time.Duration
	electionDeadline  time.Duration
	lastLeaderContact time.Duration
	heartbeatDeadline time.Duration
	checkQuorumAt     time.Duration

	votes map[uint64]bool

	progress         map[uint64]*progress
	transferee       uint64
	transferDeadline time.Duration
	matchScratch     []uint64

	// ReadIndex state (readindex.go): reads waiting on the leader, the
	// newest heartbeat round started and the newest a quorum confirmed,
	// reads a follower forwarded, and finished reads for the driver.
	reads         []pendingRead
	readRound     uint64
	readConfirmed uint64
	readRounds    uint64 // rounds started, for benchmarks
	forwarded     []forwardedRead
	readStates    []readState

	snapshotRequests []snapshotRequest
	snapshotIndex    uint64 // last snapshot installed into this replica

	// Membership (membership.go).
	membership

	hardStateDirty bool
	msgs           []protocol.RaftMessage
}

var (
	// ErrTransferring is returned for proposals while the leader hands over
	// leadership (thesis §3.10); retry shortly, at the new leader.
	ErrTransferring = errors.New("raft: leadership transfer in progress")
	// ErrProposalDropped means the proposed entry was overwritten by another
	// leader's entry and will never commit.
	ErrProposalDropped = errors.New("raft: proposal dropped")
	// ErrNotVoter is returned when a transfer names a node outside the group.
	ErrNotVoter = errors.New("raft: not a voter of the group")
)

// NotLeaderError is returned for proposals and transfers on a non-leader.
// Leader is the leader this replica knows, 0 when it knows none.
type NotLeaderError struct {
	Leader uint64
}

func (e *NotLeaderError) Error() string {
	if e.Leader == 0 {
		return "raft: not leader (leader unknown)"
	}
	return fmt.Sprintf("raft: not leader (leader is %d)", e.Leader)
}

func newCore(cfg coreConfig, now time.Duration) *core {
	c := &core{
		cfg:  cfg,
		id:   cfg.ID,
		log:  raftLog{storage: cfg.Log},
		rand: rand.New(rand.NewPCG(cfg.Seed, cfg.ID)),
		term: cfg.HardState.Term,
		vote: cfg.HardState.Vote,
		now:  now,
	}
	last := c.log.lastIndex()
	// What the log holds when the replica starts is what survived, so it
	// is durable. The commit hint never exceeds it: a replica that lost
	// unsynced entries must not believe a commit index past its log.
	c.durable = last
	c.commit = min(max(cfg.HardState.Commit, cfg.Applied), last)
	c.handedOut = min(cfg.Applied, last)
	c.loadConfiguration()
	c.becomeFollower(c.term, 0)
	return c
}

func (c *core) randomizedElectionTimeout() time.Duration {
	et := c.cfg.ElectionTimeout
	if c.cfg.CampaignEarly {
		return et/2 + time.Duration(c.rand.Int64N(int64(et/2)))
	}
	return et + time.Duration(c.rand.Int64N(int64(et)))
}

func (c *core) send(m protocol.RaftMessage) {
	m.From = c.id
	if m.Term == 0 {
		m.Term = c.term
	}
	c.msgs = append(c.msgs, m)
}

func (c *core) setTerm(term uint64) {
	if term != c.term {
		c.term = term
		c.vote = 0
		c.hardStateDirty = true
		c.leaderMatch, c.leaderCommit, c.ackSent = 0, 0, 0
	}
}

func (c *core) becomeFollower(term, leader uint64) {
	c.setTerm(term)
	c.failReads()
	c.role = RoleFollower
	c.leader = leader
	c.progress = nil
	c.transferee = 0
	c.votes = nil
	c.electionDeadline = c.now + c.randomizedElectionTimeout()
	if leader != 0 {
		c.lastLeaderContact = c.now
	}
}

// campaign starts a pre-vote (thesis §9.6) or an election (§5.2).
func (c *core) campaign(preVote, force bool) {
	if !c.voters.Contains(c.id) {
		return
	}
	c.votes = map[uint64]bool{c.id: true}
	c.failReads()
	c.leader = 0 // a pre-candidate forgets the leader it knew
	c.progress = nil
	c.transferee = 0
	c.electionDeadline = c.now + c.randomizedElectionTimeout()
	voteType, campaignTerm := protocol.MsgVote, c.term+1
	if preVote {
		c.role = RolePreCandidate
		voteType = protocol.MsgPreVote
	} else {
		c.setTerm(c.term + 1)
		c.vote = c.id
		c.hardStateDirty = true
		c.role = RoleCandidate
	}
	if c.voters.Tally(c.votes) == quorum.VoteWon {
		c.winCampaign()
		return
	}
	lastIndex, lastTerm := c.log.lastIndex(), c.log.lastTerm()
	for _, id := range c.voterIDs {
		if id != c.id {
			c.send(protocol.RaftMessage{To: id, Type: voteType, Term: campaignTerm, Index: lastIndex, LogTerm: lastTerm, Force: force})
		}
	}
}

func (c *core) winCampaign() {
	if c.role == RolePreCandidate {
		c.campaign(false, false)
		return
	}
	c.becomeLeader()
}

func (c *core) becomeLeader() {
	c.role = RoleLeader
	c.leader = c.id
	c.votes = nil
	c.transferee = 0
	last := c.log.lastIndex()
	c.progress = make(map[uint64]*progress, len(c.members)+1)
	c.matchScratch = make([]uint64, 0, len(c.members))
	self := &progress{match: c.durable, next: last + 1, state: replicateState}
	c.progress[c.id] = self
	c.updateProgress()
	c.heartbeatDeadline = c.now + c.cfg.HeartbeatInterval
	c.checkQuorumAt = c.now + c.cfg.ElectionTimeout
	// A new leader appends a no-op so that it can commit entries of
	// earlier terms by committing one of its own (§5.4.2, §8).
	c.log.append(protocol.Entry{Index: last + 1, Term: c.term, Type: protocol.EntryNoop})
	c.maybeCommit()
	if c.role == RoleLeader {
		c.broadcastAppend()
	}
}

// inLease reports whether this replica heard from a live leader within an
// election timeout; such a replica ignores vote requests (thesis §4.2.3),
// which with CheckQuorum keeps a rejoining node from deposing a healthy leader.
func (c *core) inLease() bool {
	if c.cfg.DisableCheckQuorum || c.leader == 0 {
		return false
	}
	if c.role == RoleLeader {
		return true
	}
	return c.now < c.lastLeaderContact+c.cfg.ElectionTimeout
}

// step handles one message from a peer.
func (c *core) step(m *protocol.RaftMessage, now time.Duration) {
	c.now = max(c.now, now)
	if c.log.err != nil || m.Term == 0 || m.To != c.id {
		return
	}
	switch {
	case m.Term > c.term:
		isVote := m.Type == protocol.MsgVote || m.Type == protocol.MsgPreVote
		if isVote && !m.Force && c.inLease() {
			return
		}
		switch {
		case m.Type == protocol.MsgPreVote:
			// Answer without changing term.
		case m.Type == protocol.MsgPreVoteResponse && !m.Reject:
			// A granted pre-vote carries the future term.
		case m.Type == protocol.MsgAppend || m.Type == protocol.MsgHeartbeat:
			c.becomeFollower(m.Term, m.From)
		default:
			c.becomeFollower(m.Term, 0)
		}
	case m.Term < c.term:
		switch m.Type {
		case protocol.MsgAppend, protocol.MsgHeartbeat:
			// A leader of an older term: tell it the newer term, so that a
			// node whose term ran ahead is not stuck forever.
			c.send(protocol.RaftMessage{To: m.From, Type: protocol.MsgAppendResponse, Reject: true})
		case protocol.MsgPreVote:
			c.send(protocol.RaftMessage{To: m.From, Type: protocol.MsgPreVoteResponse, Reject: true})
		}
		// Everything else from an old term is stale and ignored.
		return
	}

	switch m.Type {
	case protocol.MsgVote, protocol.MsgPreVote:
		c.handleVoteRequest(m)
		return
	}
	switch c.role {
	case RoleFollower:
		c.stepFollower(m)
	case RolePreCandidate, RoleCandidate:
		c.stepCandidate(m)
	case RoleLeader:
		c.stepLeader(m)
	}
}

// handleVoteRequest grants at most one vote per term, to a candidate whose
// log is at least as up-to-date (§5.2, §5.4.1). The vote is recorded in the
// hard state, which the driver saves before it sends the reply.
func (c *core) handleVoteRequest(m *protocol.RaftMessage) {
	pre := m.Type == protocol.MsgPreVote
	respType := protocol.MsgVoteResponse
	if pre {
		respType = protocol.MsgPreVoteResponse
	}
	canVote := c.vote == m.From || (c.vote == 0 && c.leader == 0) || (pre && m.Term > c.term)
	if canVote && c.log.isUpToDate(m.Index, m.LogTerm) {
		c.send(protocol.RaftMessage{To: m.From, Type: respType, Term: m.Term})
		if !pre {
			c.vote = m.From
			c.hardStateDirty = true
			c.electionDeadline = c.now + c.randomizedElectionTimeout()
		}
		return
	}
	c.send(protocol.RaftMessage{To: m.From, Type: respType, Reject: true})
}

func (c *core) stepFollower(m *protocol.RaftMessage) {
	switch m.Type {
	case protocol.MsgAppend:
		c.heardFromLeader(m.From)
		c.handleAppend(m)
	case protocol.MsgHeartbeat:
		c.heardFromLeader(m.From)
		c.handleHeartbeat(m)
		c.refreshForwardedReads()
	case protocol.MsgReadIndex:
		c.send(protocol.RaftMessage{To: m.From, Type: protocol.MsgReadIndexResponse, Reject: true, Context: m.Context})
	case protocol.MsgReadIndexResponse:
		c.handleReadIndexResponse(m)
	case protocol.MsgTimeoutNow:
		// Leadership transfer: campaign at once, skipping pre-vote and
		// overriding the others' leader lease (thesis §3.10).
		c.campaign(false, true)
	}
}

func (c *core) heardFromLeader(leader uint64) {
	c.leader = leader
	c.lastLeaderContact = c.now
	c.electionDeadline = c.now + c.randomizedElectionTimeout()
}

func (c *core) stepCandidate(m *protocol.RaftMessage) {
	switch m.Type {
	case protocol.MsgAppend, protocol.MsgHeartbeat:
		// A leader of our own term exists: a candidate steps down (§5.2).
		c.becomeFollower(m.Term, m.From)
		c.stepFollower(m)
	case protocol.MsgReadIndex:
		c.send(protocol.RaftMessage{To: m.From, Type: protocol.MsgReadIndexResponse, Reject: true, Context: m.Context})
	case protocol.MsgVoteResponse, protocol.MsgPreVoteResponse:
		want := protocol.MsgVoteResponse
		if c.role == RolePreCandidate {
			want = protocol.MsgPreVoteResponse
		}
		if m.Type != want {
			return
		}
		if c.role == RolePreCandidate && m.Term != c.term+1 && !m.Reject {
			return
		}
		c.votes[m.From] = !m.Reject
		switch c.voters.Tally(c.votes) {
		case quorum.VoteWon:
			c.winCampaign()
		case quorum.VoteLost:
			c.becomeFollower(c.term, 0)
		}
	}
}

// tick handles the passage of time; the driver calls it at (or after) the
// deadline the core asked for.
func (c *core) tick(now time.Duration) {
	c.now = max(c.now, now)
	if c.log.err != nil {
		return
	}
	if c.role != RoleLeader {
		if c.now >= c.electionDeadline {
			if !c.voters.Contains(c.id) {
				// A learner, or a node outside the configuration, never
				// campaigns; it just waits for the next deadline. Its
				// forwarded reads fail, as a campaign fails a voter's:
				// a leader that removed it drops them and sends it no
				// heartbeats, which would send them again.
				c.failReads()
				c.electionDeadline = c.now + c.randomizedElectionTimeout()
				return
			}
			c.campaign(!c.cfg.DisablePreVote, false)
		}
		return
	}
	if c.transferee != 0 && c.now >= c.transferDeadline {
		c.transferee = 0 // abandoned: it did not finish in an election timeout
	}
	if c.now >= c.checkQuorumAt {
		c.checkQuorumAt = c.now + c.cfg.ElectionTimeout
		if !c.cfg.DisableCheckQuorum && !c.quorumActive() {
			c.becomeFollower(c.term, 0)
			return
		}
	}
	if c.now >= c.heartbeatDeadline {
		c.heartbeatDeadline = c.now + c.cfg.HeartbeatInterval
		c.broadcastHeartbeat()
	}
}

// quorumActive reports whether a majority (this leader included) was heard
// from since the previous check, and starts a new round (CheckQuorum).
func (c *core) quorumActive() bool {
	active := make(map[uint64]bool, len(c.progress))
	for id, p := range c.progress {
		if id == c.id || p.recentActive {
			active[id] = true
		}
		p.recentActive = false
	}
	// Under a joint configuration both halves must be active.
	return c.voters.Tally(active) == quorum.VoteWon
}

// heardWithin reports whether the leader had a message from the follower
// of p within d.
func (c *core) heardWithin(p *progress, d time.Duration) bool {
	return p.heard && c.now-p.heardAt <= d
}

// unconfirmedMembers lists, on a leader, the other members that have not
// acknowledged the entry of the configuration in effect or that it has not
// heard from within the election timeout, in order (nil otherwise).
func (c *core) unconfirmedMembers() []uint64 {
	if c.role != RoleLeader {
		return nil
	}
	var out []uint64
	confIndex := c.confIndex()
	for id, p := range c.progress {
		if id != c.id && (p.match < confIndex || !c.heardWithin(p, c.cfg.ElectionTimeout)) {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out
}

// deadline is the time the core wants tick to be called next.
func (c *core) deadline() time.Duration {
	if c.role != RoleLeader {
		return c.electionDeadline
	}
	d := min(c.heartbeatDeadline, c.checkQuorumAt)
	if c.transferee != 0 {
		d = min(d, c.transferDeadline)
	}
	return d
}

// propose appends entries (Type and Data set; Index and Term assigned here)
// to the leader's log and returns the index of the first and the term.
func (c *core) propose(ents []protocol.Entry, now time.Duration) (first, term uint64, err error) {
	c.now = max(c.now, now)
	if c.log.err != nil {
		return 0, 0, c.log.err
	}
	if c.role != RoleLeader {
		return 0, 0, &NotLeaderError{Leader: c.leader}
	}
	if c.transferee != 0 {
		return 0, 0, ErrTransferring
	}
	for i := range ents {
		if ents[i].Type == protocol.EntryConfig {
			return 0, 0, ErrConfigEntry
		}
	}
	first = c.log.lastIndex() + 1
	for i := range ents {
		ents[i].Index = first + uint64(i)
		ents[i].Term = c.term
	}
	c.log.append(ents...)
	c.broadcastAppend()
	return first, c.term, nil
}

// transferLeadership starts handing leadership to a voter (thesis §3.10).
func (c *core) transferLeadership(to uint64, now time.Duration) error {
	c.now = max(c.now, now)
	if c.role != RoleLeader {
		return &NotLeaderError{Leader: c.leader}
	}
	if to == c.id {
		return nil
	}
	if !c.voters.Incoming.Contains(to) {
		return fmt.Errorf("%w: %d", ErrNotVoter, to)
	}
	if c.transferee == to {
		return nil
	}
	c.transferee = to
	c.transferDeadline = c.now + c.cfg.ElectionTimeout
	p := c.progress[to]
	if p.match == c.log.lastIndex() {
		c.send(protocol.RaftMessage{To: to, Type: protocol.MsgTimeoutNow})
	} else {
		c.sendAppend(to, p)
	}
	return nil
}

// durableNotice records that the log holds (term, index) durably. Carrying
// the term means a truncate-and-reappend at the same index is never
// mistaken for the old entry being durable.
func (c *core) durableNotice(term, index uint64, now time.Duration) {
	c.now = max(c.now, now)
	if c.log.err != nil || index <= c.durable || index > c.log.lastIndex() || c.log.term(index) != term {
		return
	}
	c.durable = index
	if c.role == RoleLeader {
		c.progress[c.id].match = index
		c.maybeCommit()
		return
	}
	c.advanceFollowerCommit()
	if ack := min(c.durable, c.leaderMatch); c.leader != 0 && ack > c.ackSent {
		c.ackSent = ack
		c.send(protocol.RaftMessage{To: c.leader, Type: protocol.MsgAppendResponse, Index: ack})
	}
}

func (c *core) hasReady() bool {
	return len(c.log.unstable) > 0 || c.hardStateDirty || len(c.msgs) > 0 || c.commit > c.handedOut || c.log.err != nil || len(c.readStates) > 0 || len(c.snapshotRequests) > 0
}

// takeReady returns the decisions made since the previous call.
func (c *core) takeReady() ready {
	if c.log.err != nil {
		return ready{err: c.log.err}
	}
	rd := ready{
		entries:   c.log.takeUnstable(),
		messages:  c.msgs,
		reads:     c.readStates,
		snapshots: c.snapshotRequests,
	}
	c.msgs, c.readStates, c.snapshotRequests = nil, nil, nil
	if c.hardStateDirty {
		rd.hardState = HardState{Term: c.term, Vote: c.vote, Commit: c.commit}
		rd.saveHardState = true
		c.hardStateDirty = false
	}
	if c.commit > c.handedOut {
		rd.committed = c.log.entries(c.handedOut+1, c.commit+1, c.cfg.MaxApplyBytes)
		if c.log.err != nil {
			return ready{err: c.log.err}
		}
		c.handedOut += uint64(len(rd.committed))
	}
	return rd
}

// status is a snapshot of the replica's state.
func (c *core) status() Status {
	return Status{
		ID:          c.id,
		Role:        c.role,
		Term:        c.term,
		Leader:      c.leader,
		CommitIndex: c.commit,
		LastIndex:   c.log.lastIndex(),
		Transferee:  c.transferee,
		ReadRounds:  c.readRounds,

		Configuration:      c.conf,
		ConfigurationIndex: c.confIndex(),
		Unconfirmed:        c.unconfirmedMembers(),
	}
}
