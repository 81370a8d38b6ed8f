package quorum

import "testing"

func TestCommittedIndexIsReachedByAMajority(t *testing.T) {
	cases := []struct {
		match map[uint64]uint64
		want  uint64
	}{
		{map[uint64]uint64{1: 5}, 5},
		{map[uint64]uint64{1: 5, 2: 3, 3: 1}, 3},
		{map[uint64]uint64{1: 5, 2: 5, 3: 1}, 5},
		{map[uint64]uint64{1: 9, 2: 1, 3: 1, 4: 7}, 1},
		{map[uint64]uint64{1: 9, 2: 8, 3: 1, 4: 7, 5: 2}, 7},
	}
	for i, tc := range cases {
		var c Majority
		for id := range tc.match {
			c = append(c, id)
		}
		if got := c.CommittedIndex(func(id uint64) uint64 { return tc.match[id] }, nil); got != tc.want {
			t.Errorf("case %d: got %d want %d", i, got, tc.want)
		}
	}
}

func TestTallyNeedsAMajority(t *testing.T) {
	c := Majority{1, 2, 3, 4, 5}
	if r := c.Tally(map[uint64]bool{1: true, 2: true}); r != VotePending {
		t.Fatalf("2/5 granted: %v", r)
	}
	if r := c.Tally(map[uint64]bool{1: true, 2: true, 3: true}); r != VoteWon {
		t.Fatalf("3/5 granted: %v", r)
	}
	if r := c.Tally(map[uint64]bool{1: true, 2: false, 3: false, 4: false}); r != VoteLost {
		t.Fatalf("3/5 rejected: %v", r)
	}
	if r := c.Tally(map[uint64]bool{1: true, 9: true, 8: true}); r != VotePending {
		t.Fatalf("non-voters counted: %v", r)
	}
}
