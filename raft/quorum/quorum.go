// Package quorum computes majority decisions for a Raft configuration: the
// highest index a majority has durably (commit, §5.3/§5.4.2) and the outcome
// of an election (§5.2). The functions are pure and allocation-light; a
// joint configuration (C_old,new, §6) combines two Majority values (Joint).
package quorum

import "slices"

// Majority is a set of voter ids; a decision needs more than half of them.
type Majority []uint64

// Size is the number of votes that make a majority.
func (c Majority) Size() int { return len(c)/2 + 1 }

// Contains reports whether id is a voter of c.
func (c Majority) Contains(id uint64) bool { return slices.Contains(c, id) }

// CommittedIndex returns the largest index that a majority of voters have
// reached, given each voter's match index (missing voters count as 0).
// scratch is reused to avoid an allocation when it has room.
func (c Majority) CommittedIndex(match func(id uint64) uint64, scratch []uint64) uint64 {
	if len(c) == 0 {
		return 0
	}
	s := scratch[:0]
	for _, id := range c {
		s = append(s, match(id))
	}
	slices.Sort(s)
	// Ascending order: the element at len-Size is reached by Size voters.
	return s[len(s)-c.Size()]
}

// VoteResult is the outcome of counting votes.
type VoteResult int

const (
	// VotePending means neither a majority of grants nor of rejections yet.
	VotePending VoteResult = iota
	// VoteWon means a majority granted.
	VoteWon
	// VoteLost means a majority rejected (or can no longer grant).
	VoteLost
)

// Tally counts votes: votes maps voter id to granted. Votes from ids
// outside c are ignored.
func (c Majority) Tally(votes map[uint64]bool) VoteResult {
	granted, rejected := 0, 0
	for _, id := range c {
		v, ok := votes[id]
		switch {
		case !ok:
		case v:
			granted++
		default:
			rejected++
		}
	}
	switch {
	case granted >= c.Size():
		return VoteWon
	case len(c)-rejected < c.Size():
		return VoteLost
	}
	return VotePending
}
