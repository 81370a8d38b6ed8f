package quorum

import "math"

// Joint is a joint configuration (C_old,new, Raft §6): a decision needs a
// majority of Incoming and, when Outgoing is not empty, a majority of
// Outgoing too. With an empty Outgoing it behaves like Incoming alone.
type Joint struct {
	Incoming Majority
	Outgoing Majority
}

// Contains reports whether id is a voter of either half.
func (j Joint) Contains(id uint64) bool { return j.Incoming.Contains(id) || j.Outgoing.Contains(id) }

// CommittedIndex returns the largest index both halves have reached (the
// smaller of the two halves' committed indexes). An empty half places no
// constraint; an empty Joint commits nothing.
func (j Joint) CommittedIndex(match func(id uint64) uint64, scratch []uint64) uint64 {
	if len(j.Incoming) == 0 && len(j.Outgoing) == 0 {
		return 0
	}
	index := uint64(math.MaxUint64)
	for _, half := range [2]Majority{j.Incoming, j.Outgoing} {
		if len(half) > 0 {
			index = min(index, half.CommittedIndex(match, scratch))
		}
	}
	return index
}

// Tally counts votes in both halves: won when both halves won, lost when
// either lost. An empty half counts as won; an empty Joint loses.
func (j Joint) Tally(votes map[uint64]bool) VoteResult {
	if len(j.Incoming) == 0 && len(j.Outgoing) == 0 {
		return VoteLost
	}
	result := VoteWon
	for _, half := range [2]Majority{j.Incoming, j.Outgoing} {
		if len(half) == 0 {
			continue
		}
		switch half.Tally(votes) {
		case VoteLost:
			return VoteLost
		case VotePending:
			result = VotePending
		}
	}
	return result
}
