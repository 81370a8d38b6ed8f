package quorum

import "testing"

func TestJointCommittedIndexNeedsBothMajorities(t *testing.T) {
	j := Joint{Incoming: Majority{1, 4, 5}, Outgoing: Majority{1, 2, 3}}
	match := map[uint64]uint64{1: 9, 2: 9, 3: 9, 4: 2, 5: 1}
	got := j.CommittedIndex(func(id uint64) uint64 { return match[id] }, nil)
	if got != 2 {
		t.Fatalf("joint committed %d, want 2 (the new half holds 9 only on node 1)", got)
	}
	if got := (Joint{Incoming: Majority{1, 2, 3}}).CommittedIndex(func(id uint64) uint64 { return match[id] }, nil); got != 9 {
		t.Fatalf("simple committed %d, want 9", got)
	}
	if got := (Joint{}).CommittedIndex(func(uint64) uint64 { return 5 }, nil); got != 0 {
		t.Fatalf("empty joint committed %d", got)
	}
}

func TestJointTallyNeedsBothMajorities(t *testing.T) {
	j := Joint{Incoming: Majority{1, 4, 5}, Outgoing: Majority{1, 2, 3}}
	if r := j.Tally(map[uint64]bool{1: true, 2: true, 3: true}); r != VotePending {
		t.Fatalf("old majority only: %v, want pending", r)
	}
	if r := j.Tally(map[uint64]bool{1: true, 2: true, 4: true}); r != VoteWon {
		t.Fatalf("both majorities: %v, want won", r)
	}
	if r := j.Tally(map[uint64]bool{1: true, 2: true, 3: true, 4: false, 5: false}); r != VoteLost {
		t.Fatalf("new half rejected: %v, want lost", r)
	}
	if r := (Joint{}).Tally(map[uint64]bool{1: true}); r != VoteLost {
		t.Fatalf("empty joint: %v", r)
	}
	if !j.Contains(2) || !j.Contains(5) || j.Contains(6) {
		t.Fatal("Contains")
	}
}
