package raft

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/raftmq/raftmq/protocol"
	"github.com/raftmq/raftmq/raft/quorum"
)

// Membership changes, core side (Raft §6, thesis §4.3).
//
// The configuration is data in the log: every EntryConfig entry holds a
// whole protocol.RaftConfiguration, and a replica uses the newest one its
// log holds, committed or not — a configuration takes effect when it is
// appended, and a truncation that removes the entry reverts to the one
// before. The core keeps the configurations of its log from the newest
// committed one on (history), so a revert never needs to read the log.
//
// Voters change through a joint configuration: a change from C_old to
// C_new appends C_old,new (Voters C_new, OutgoingVoters C_old); while it is
// in effect every decision — commit, election, CheckQuorum, ReadIndex
// confirmation — needs a majority of both halves (quorum.Joint). Once the
// leader commits C_old,new it appends C_new by itself. A leader that is not
// in C_new keeps leading (without counting itself) until C_new commits and
// then steps down. Learners receive the log and snapshots but never count
// toward a quorum and never campaign; neither does a node outside the
// configuration.
//
// Vote requests: a learner (or a node outside its own configuration) still
// answers a vote request by the ordinary rules. Its vote counts only for a
// candidate whose configuration makes it a voter — such a candidate holds
// a configuration entry the learner has not received yet — and refusing
// could leave a cluster that committed the learner's promotion unable to
// elect anyone (thesis §4.2.1: servers answer requests from outside their
// configuration).
//
// One change at a time: a change is refused while the newest configuration
// is uncommitted or joint, and a new leader refuses changes until it has
// committed an entry of its own term (thesis §4.1, the single-server bug).

var (
	// ErrConfigChangeInProgress is returned for a membership change while
	// another one has not finished (committed, and out of joint consensus).
	ErrConfigChangeInProgress = errors.New("raft: a membership change is in progress")
	// ErrLeaderNotReady is returned for a membership change on a leader that
	// has not yet committed an entry of its own term; retry shortly.
	ErrLeaderNotReady = errors.New("raft: leader has not committed an entry of its term yet")
	// ErrInvalidMembership is returned for a change that names unknown or
	// duplicate servers or would leave no voter.
	ErrInvalidMembership = errors.New("raft: invalid membership change")
	// ErrLearnerBehind is returned when promoting a learner that is not
	// within the allowed number of entries of the leader's log.
	ErrLearnerBehind = errors.New("raft: learner is not caught up")
	// ErrConfigEntry is returned when Propose is given an EntryConfig entry;
	// configurations change only through the membership API.
	ErrConfigEntry = errors.New("raft: config entries are proposed through ChangeMembership")
)

// membership is the core's configuration state.
type membership struct {
	conf     protocol.RaftConfiguration // in effect: the newest in history
	history  []configurationAt          // ascending index; history[0] is never truncated
	voters   quorum.Joint
	voterIDs []uint64 // sorted voters of both halves
	members  []uint64 // sorted voters and learners
}

type configurationAt struct {
	index uint64 // the config entry's index; 0 for bootstrap
	conf  protocol.RaftConfiguration
}

// confIndex is the index of the entry that set the configuration in effect.
func (c *core) confIndex() uint64 { return c.history[len(c.history)-1].index }

// loadConfiguration sets the configuration at start: the newest config
// entry of the log, or the configured one (snapshot or bootstrap). It scans
// the log backwards until it passes a config entry at or below the commit
// index (entries above it may still be truncated and reverted), or reaches
// the base's index (a snapshot's configuration covers what precedes it).
func (c *core) loadConfiguration() {
	base, baseIndex := c.cfg.Configuration, c.cfg.ConfigurationIndex
	if len(base.Voters) == 0 {
		base, baseIndex = protocol.RaftConfiguration{Voters: sortedIDs(c.cfg.Voters)}, 0
	}
	c.history = []configurationAt{{index: baseIndex, conf: base}}
	var found []configurationAt
	// Entries up to baseIndex are covered by the base (a snapshot's).
	first := max(c.log.firstIndex(), baseIndex+1)
	const chunk = 64
	for hi := c.log.lastIndex() + 1; hi > first && c.log.err == nil; {
		lo := max(first, hi-min(hi, chunk))
		var inChunk []configurationAt
		for i := lo; i < hi && c.log.err == nil; {
			ents := c.log.entries(i, hi, 4<<20)
			for _, e := range ents {
				if e.Type == protocol.EntryConfig {
					conf, err := protocol.DecodeRaftConfiguration(e.Data)
					if err != nil {
						c.log.fail(fmt.Errorf("raft: config entry %d: %w", e.Index, err))
						return
					}
					inChunk = append(inChunk, configurationAt{index: e.Index, conf: conf})
				}
			}
			i += uint64(len(ents))
			if len(ents) == 0 {
				break
			}
		}
		found = append(inChunk, found...)
		if len(inChunk) > 0 && inChunk[0].index <= c.commit {
			break
		}
		hi = lo
	}
	c.history = append(c.history, found...)
	c.setConfiguration()
}

// setConfiguration derives the quorum and member lists from the newest
// configuration in history and, on a leader, the followers' progress and
// the ReadIndex round in flight.
func (c *core) setConfiguration() {
	c.conf = c.history[len(c.history)-1].conf
	c.voters = quorum.Joint{Incoming: c.conf.Voters, Outgoing: c.conf.OutgoingVoters}
	c.voterIDs = unionIDs(c.conf.Voters, c.conf.OutgoingVoters)
	c.members = unionIDs(c.voterIDs, c.conf.Learners)
	if c.role == RoleLeader {
		c.updateProgress()
		// The round in flight is confirmed by the new quorum's answers:
		// perhaps already (a leader left as the only voter confirms by
		// itself, and no one else would answer), as removed voters'
		// answers are dropped with their progress.
		if c.confirmReads() {
			c.maybeStartReadRound()
		}
	}
}

// updateProgress gives every member a progress and forgets removed ones
// (the leader keeps its own to track its durable log).
func (c *core) updateProgress() {
	last := c.log.lastIndex()
	for _, id := range c.members {
		if c.progress[id] == nil {
			c.progress[id] = &progress{next: last + 1, inflights: inflights{maxCount: c.cfg.MaxInflightMessages, maxBytes: c.cfg.MaxInflightBytes}}
		}
	}
	for id := range c.progress {
		if id != c.id && !slices.Contains(c.members, id) {
			delete(c.progress, id)
		}
	}
	if c.transferee != 0 && !c.voters.Incoming.Contains(c.transferee) {
		c.transferee = 0
	}
}

// appendConfiguration records a config entry just appended at index.
func (c *core) appendConfiguration(index uint64, conf protocol.RaftConfiguration) {
	// Configurations before the newest committed one are never needed.
	keep := 0
	for i, h := range c.history {
		if h.index <= c.commit {
			keep = i
		}
	}
	c.history = append(c.history[keep:], configurationAt{index: index, conf: conf})
}

// revertConfigurations drops the configurations of entries at or after
// index (they were truncated) and reports whether any was dropped.
func (c *core) revertConfigurations(index uint64) bool {
	n := len(c.history)
	for n > 1 && c.history[n-1].index >= index {
		n--
	}
	dropped := n < len(c.history)
	clear(c.history[n:])
	c.history = c.history[:n]
	return dropped
}

// configurationsAppended updates the configuration for entries a follower
// appended from index from on (truncating what was there).
func (c *core) configurationsAppended(from uint64, ents []protocol.Entry) {
	changed := c.revertConfigurations(from)
	for _, e := range ents {
		if e.Type != protocol.EntryConfig {
			continue
		}
		conf, err := protocol.DecodeRaftConfiguration(e.Data)
		if err != nil {
			c.log.fail(fmt.Errorf("raft: config entry %d: %w", e.Index, err))
			return
		}
		c.appendConfiguration(e.Index, conf)
		changed = true
	}
	if changed {
		c.setConfiguration()
	}
}

// restoreConfiguration sets the configuration from a snapshot restored at
// index (its log is discarded); the driver calls it before
// snapshotInstalled, while the commit index is still this replica's. A
// snapshot without a configuration keeps only the configurations at or
// below the commit index: a restore happens only for a snapshot past the
// commit index whose last entry the log lacks or holds with another term,
// so configurations above the commit index come from a log being thrown
// away, perhaps a deposed leader's change that never committed; committed
// ones are in every later leader's log (§5.4).
func (c *core) restoreConfiguration(index uint64, conf protocol.RaftConfiguration) {
	if len(conf.Voters) == 0 {
		c.revertConfigurations(c.commit + 1)
	} else {
		c.history = []configurationAt{{index: index, conf: conf}}
	}
	c.setConfiguration()
}

// configurationCommitted runs on a leader whose commit index advanced: it
// leaves a committed joint configuration by appending C_new, and steps down
// once a C_new without it is committed.
func (c *core) configurationCommitted() {
	if c.role != RoleLeader || c.confIndex() > c.commit {
		return
	}
	if c.conf.Joint() {
		next := protocol.RaftConfiguration{Voters: c.conf.Voters, Learners: c.conf.Learners}
		c.appendConfigEntry(next)
		c.broadcastAppend()
		return
	}
	if !c.voters.Contains(c.id) {
		// Removed: let the members learn the commit index, then stop.
		c.broadcastAppend()
		c.becomeFollower(c.term, 0)
	}
}

func (c *core) appendConfigEntry(conf protocol.RaftConfiguration) (index uint64) {
	index = c.log.lastIndex() + 1
	c.log.append(protocol.Entry{Index: index, Term: c.term, Type: protocol.EntryConfig, Data: protocol.AppendRaftConfiguration(nil, &conf)})
	c.appendConfiguration(index, conf)
	c.setConfiguration()
	return index
}

// confChangeKind is what a membership change does.
type confChangeKind uint8

const (
	// changeVoters adds voters (promoting learners among them) and removes
	// voters or learners, through a joint configuration.
	changeVoters confChangeKind = iota
	// addLearners adds learners (no joint configuration needed).
	addLearners
	// promoteLearner makes one caught-up learner a voter.
	promoteLearner
)

// confChange is a membership change request to the core.
type confChange struct {
	kind   confChangeKind
	add    []uint64
	remove []uint64
	// maxLag is how many entries a promoted learner may be behind.
	maxLag uint64
}

// changeMembership appends the first configuration of a change on the
// leader and returns its index and term. A voter change appends C_old,new;
// the core appends C_new once that commits.
func (c *core) changeMembership(change confChange, now time.Duration) (index, term uint64, err error) {
	c.now = max(c.now, now)
	switch {
	case c.log.err != nil:
		return 0, 0, c.log.err
	case c.role != RoleLeader:
		return 0, 0, &NotLeaderError{Leader: c.leader}
	case c.transferee != 0:
		return 0, 0, ErrTransferring
	case !c.committedInTerm():
		return 0, 0, ErrLeaderNotReady
	case c.confIndex() > c.commit || c.conf.Joint():
		return 0, 0, ErrConfigChangeInProgress
	}
	next, err := c.nextConfiguration(change)
	if err != nil {
		return 0, 0, err
	}
	index = c.appendConfigEntry(next)
	c.broadcastAppend()
	return index, c.term, nil
}

func (c *core) nextConfiguration(change confChange) (protocol.RaftConfiguration, error) {
	cur := c.conf
	add, remove := sortedIDs(change.add), sortedIDs(change.remove)
	if len(add)+len(remove) == 0 || len(add) != len(change.add) || len(remove) != len(change.remove) || slices.Contains(add, 0) {
		return cur, fmt.Errorf("%w: empty, duplicate or zero ids (add %v, remove %v)", ErrInvalidMembership, change.add, change.remove)
	}
	for _, id := range add {
		if slices.Contains(remove, id) {
			return cur, fmt.Errorf("%w: %d both added and removed", ErrInvalidMembership, id)
		}
	}
	switch change.kind {
	case addLearners:
		for _, id := range add {
			if slices.Contains(c.members, id) {
				return cur, fmt.Errorf("%w: %d is already a member", ErrInvalidMembership, id)
			}
		}
		return protocol.RaftConfiguration{Voters: cur.Voters, Learners: unionIDs(cur.Learners, add)}, nil
	case promoteLearner:
		id := add[0]
		if !slices.Contains(cur.Learners, id) {
			return cur, fmt.Errorf("%w: %d is not a learner", ErrInvalidMembership, id)
		}
		var match uint64
		p := c.progress[id]
		if p != nil {
			match = p.match
		}
		if match+change.maxLag < c.log.lastIndex() {
			return cur, fmt.Errorf("%w: %d matches %d of %d (allowed lag %d)", ErrLearnerBehind, id, match, c.log.lastIndex(), change.maxLag)
		}
		// The match is what the learner had when it last answered: one
		// that has stopped since would become a voter that never votes.
		// A live learner answers every heartbeat.
		if within := min(2*c.cfg.HeartbeatInterval, c.cfg.ElectionTimeout); p == nil || !c.heardWithin(p, within) {
			return cur, fmt.Errorf("%w: %d has not answered for %v", ErrLearnerBehind, id, within)
		}
	}
	for _, id := range add {
		if slices.Contains(cur.Voters, id) {
			return cur, fmt.Errorf("%w: %d is already a voter", ErrInvalidMembership, id)
		}
	}
	for _, id := range remove {
		if !slices.Contains(c.members, id) {
			return cur, fmt.Errorf("%w: %d is not a member", ErrInvalidMembership, id)
		}
	}
	voters := withoutIDs(unionIDs(cur.Voters, add), remove)
	learners := withoutIDs(withoutIDs(cur.Learners, add), remove)
	if len(voters) == 0 {
		return cur, fmt.Errorf("%w: no voter would remain", ErrInvalidMembership)
	}
	next := protocol.RaftConfiguration{Voters: voters, Learners: learners}
	if !slices.Equal(voters, cur.Voters) {
		next.OutgoingVoters = cur.Voters // C_old,new
	}
	return next, nil
}

// sortedIDs returns a sorted copy of ids without duplicates.
func sortedIDs(ids []uint64) []uint64 {
	out := slices.Clone(ids)
	slices.Sort(out)
	return slices.Compact(out)
}

func unionIDs(a, b []uint64) []uint64 {
	if len(b) == 0 {
		return a
	}
	return sortedIDs(append(slices.Clone(a), b...))
}

func withoutIDs(ids, remove []uint64) []uint64 {
	var out []uint64
	for _, id := range ids {
		if !slices.Contains(remove, id) {
			out = append(out, id)
		}
	}
	return out
}
