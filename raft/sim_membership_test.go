package raft

import (
	"slices"
	"testing"
	"time"

	"github.com/raftmq/raftmq/protocol"
	"github.com/raftmq/raftmq/raft/quorum"
)

// Random membership changes in the simulation (issue 4): the leader adds
// learners, promotes them, removes voters (itself included) and swaps
// several servers at once, never going below 3 voters, while the network
// is faulty and nodes crash. Election safety, log matching, state machine
// safety and leader completeness are checked as in every run; liveness at
// the end requires every member of the final configuration to apply.

const simMinVoters = 3

// isMember reports whether n is a voter or learner in leader's configuration.
func (s *sim) isMember(leader, n *simNode) bool {
	return leader == nil || slices.Contains(leader.core.members, n.id)
}

func (s *sim) changeMembership() {
	var leader *simNode
	for _, n := range s.nodes {
		if n.alive && n.core.role == RoleLeader && n.core.inLease() {
			leader = n
		}
	}
	if leader == nil {
		return
	}
	c := leader.core
	voters, learners := c.conf.Voters, c.conf.Learners
	var outside []uint64
	for _, id := range s.voters {
		if !slices.Contains(c.members, id) {
			outside = append(outside, id)
		}
	}
	pick := func(ids []uint64) uint64 { return ids[s.rand.IntN(len(ids))] }
	var change confChange
	ops := 5
	if s.cfg.replaceNodes {
		ops = 6
	}
	switch op := s.rand.IntN(ops); {
	case op == 5:
		if s.replaceNode(leader) {
			s.stats.membershipChanges++
		}
		return
	case op == 0 && len(outside) > 0:
		change = confChange{kind: addLearners, add: []uint64{pick(outside)}}
	case op == 1 && len(learners) > 0:
		change = confChange{kind: promoteLearner, add: []uint64{pick(learners)}, maxLag: 64}
	case op == 2 && len(voters) > simMinVoters:
		change = confChange{kind: changeVoters, remove: []uint64{pick(voters)}}
	case op == 3 && len(voters) > simMinVoters-1 && len(voters) > 1:
		// Remove the leader itself when that leaves enough voters, else
		// swap it for another server.
		change = confChange{kind: changeVoters, remove: []uint64{c.id}}
		if len(voters) == simMinVoters {
			candidates := append(slices.Clone(learners), outside...)
			if len(candidates) == 0 {
				return
			}
			change.add = []uint64{pick(candidates)}
		}
	case op == 4:
		// Several at once: swap up to two voters for two other servers.
		candidates := append(slices.Clone(learners), outside...)
		s.rand.Shuffle(len(candidates), func(i, j int) { candidates[i], candidates[j] = candidates[j], candidates[i] })
		gone := slices.Clone(voters)
		s.rand.Shuffle(len(gone), func(i, j int) { gone[i], gone[j] = gone[j], gone[i] })
		k := min(2, len(candidates))
		if k == 0 {
			return
		}
		change = confChange{kind: changeVoters, add: candidates[:k], remove: gone[:min(k, len(gone)+k-simMinVoters)]}
	default:
		return
	}
	if _, _, err := c.changeMembership(change, s.now); err == nil {
		s.stats.membershipChanges++
	}
	s.drive(leader)
	if len(c.voters.Incoming) < simMinVoters {
		s.violate("membership", "node %d changed to %d voters: %+v", c.id, len(c.voters.Incoming), c.conf)
	}
}

func TestSimulationWithMembershipChanges(t *testing.T) {
	var total simStats
	start := time.Now()
	for i, seed := range simCorpus {
		if i%(2*simCorpusScale) != 0 {
			continue
		}
		cfg := defaultSimConfig(seed, 5)
		cfg.membershipEvery = 30 * time.Millisecond
		total.add(runSimSeed(t, cfg))
		if t.Failed() {
			t.FailNow()
		}
	}
	if total.membershipChanges == 0 {
		t.Fatal("no membership change was made")
	}
	t.Logf("membership simulation: changes=%d elections=%d committed=%d wall=%v", total.membershipChanges, total.elections, total.committed, time.Since(start).Round(time.Millisecond))
}

// checkCommitQuorum checks, when a leader's commit index advances, that
// the voters holding the committed entry durably (by the simulation's own
// view of every node's log) form a quorum of the leader's configuration —
// both majorities under a joint configuration; learners are never counted.
func (s *sim) checkCommitQuorum(leader *simNode) {
	c := leader.core
	index := c.commit
	if uint64(len(leader.chain)) <= index || c.log.term(index) != c.term {
		return
	}
	want := leader.chain[index]
	holders := map[uint64]bool{}
	for _, m := range s.nodes {
		if m.core.durable >= index && uint64(len(m.chain)) > index && m.chain[index] == want {
			holders[m.id] = true
		}
	}
	if c.voters.Tally(holders) != quorum.VoteWon {
		s.violate("commit quorum", "node %d committed %d in term %d held durably only by %v; configuration %+v", leader.id, index, c.term, holders, c.conf)
	}
}

// checkConfigurationPerPrefix checks that at most one configuration is in
// effect per log prefix: nodes whose logs end in the same prefix (same
// prefix hash) use the same configuration, whether they hold the whole log
// or restored a snapshot and hold only its suffix. A node with no voters
// in its configuration (an empty-disk server not yet told the base) is
// left out: it neither votes nor campaigns.
func (s *sim) checkConfigurationPerPrefix(n *simNode) {
	c := n.core
	last := c.log.lastIndex()
	if last == 0 || uint64(len(n.chain)) != last+1 || len(c.conf.Voters) == 0 {
		return
	}
	conf := string(protocol.AppendRaftConfiguration(nil, &c.conf))
	key := n.chain[last]
	if s.confByPrefix == nil {
		s.confByPrefix = map[uint64]string{}
	}
	if other, ok := s.confByPrefix[key]; !ok {
		s.confByPrefix[key] = conf
	} else if other != conf {
		got, _ := protocol.DecodeRaftConfiguration([]byte(conf))
		want, _ := protocol.DecodeRaftConfiguration([]byte(other))
		s.violate("configuration per prefix", "node %d with log ending at %d (term %d) uses %+v, another node with the same log used %+v", n.id, last, c.log.term(last), got, want)
	}
}
