package broker

import (
	"testing"

	"github.com/raftmq/raftmq/protocol"
)

func groupTestMetadata(partitions int) *clusterMetadata {
	m := newClusterMetadata([]uint64{1})
	t := &topicMeta{Name: "t"}
	for range partitions {
		t.Partitions = append(t.Partitions, partitionMeta{})
	}
	m.Topics["t"] = t
	return m
}

func ownedBy(g *consumerGroup) map[string]int {
	out := map[string]int{}
	for _, o := range g.Owners {
		out[o.Member]++
	}
	return out
}

func TestCooperativeAssignmentMovesOnlyWhatMust(t *testing.T) {
	m := groupTestMetadata(6)
	groups := map[string]*consumerGroup{}
	index := uint64(10)
	apply := func(op string, gc groupCommand) *protocol.Error {
		index++
		return applyGroupCommand(groups, m, index, controllerCommand{Op: op, Group: &gc})
	}
	for _, id := range []string{"a", "b", "c"} {
		if e := apply(opGroupJoin, groupCommand{Name: "g", Member: id, Topics: []string{"t"}}); e != nil {
			t.Fatal(e)
		}
	}
	g := groups["g"]
	// a took all six, then b and c joined: a must revoke four, and nothing
	// moves to b or c before a releases.
	if got := ownedBy(g); got["a"] != 6 {
		t.Fatalf("before release: %v", got)
	}
	assigned, revoke := g.assignment("a")
	if len(assigned) != 2 || len(revoke) != 4 {
		t.Fatalf("a: assigned %v revoke %v", assigned, revoke)
	}
	if e := apply(opGroupSync, groupCommand{Name: "g", Member: "a", Owned: assigned}); e != nil {
		t.Fatal(e)
	}
	if got := ownedBy(g); got["a"] != 2 || got["b"] != 2 || got["c"] != 2 {
		t.Fatalf("after release: %v", got)
	}
	before := map[partitionKey]partitionOwner{}
	for k, o := range g.Owners {
		before[k] = o
	}
	// c leaves: a and b keep theirs and get one of c's each, at once.
	if e := apply(opGroupLeave, groupCommand{Name: "g", Member: "c"}); e != nil {
		t.Fatal(e)
	}
	if got := ownedBy(g); got["a"] != 3 || got["b"] != 3 {
		t.Fatalf("after leave: %v", got)
	}
	for k, o := range before {
		if o.Member != "c" && g.Owners[k] != o {
			t.Fatalf("partition %v moved from %v to %v though its owner stayed", k, o, g.Owners[k])
		}
		if o.Member == "c" && g.Owners[k].Epoch != index {
			t.Fatalf("partition %v granted with epoch %d, want %d", k, g.Owners[k].Epoch, index)
		}
	}
	for _, who := range []string{"a", "b"} {
		if _, revoke := g.assignment(who); len(revoke) != 0 {
			t.Fatalf("%s asked to revoke %v after a leave", who, revoke)
		}
	}
	if e := apply(opGroupSync, groupCommand{Name: "g", Member: "c"}); e == nil || e.Code != protocol.CodeUnknownMember {
		t.Fatalf("sync of a departed member: %v", e)
	}
	if e := apply(opGroupDelete, groupCommand{Name: "g"}); e == nil || e.Code != protocol.CodeGroupNotEmpty {
		t.Fatalf("delete with members: %v", e)
	}
}

func TestAssignmentIsBalancedAndDeterministic(t *testing.T) {
	for _, partitions := range []int{1, 5, 6, 7, 100} {
		m := groupTestMetadata(partitions)
		run := func() *consumerGroup {
			groups := map[string]*consumerGroup{}
			for i, id := range []string{"m3", "m1", "m2", "m4"} {
				applyGroupCommand(groups, m, uint64(i+1), controllerCommand{Op: opGroupJoin, Group: &groupCommand{Name: "g", Member: id, Topics: []string{"t"}}})
			}
			return groups["g"]
		}
		first, second := run(), run()
		counts := map[string]int{}
		for k, target := range first.Targets {
			counts[target]++
			if second.Targets[k] != target {
				t.Fatalf("%d partitions: targets differ between runs", partitions)
			}
		}
		low, high := partitions, 0
		for _, id := range []string{"m1", "m2", "m3", "m4"} {
			low, high = min(low, counts[id]), max(high, counts[id])
		}
		if len(first.Targets) != partitions || high-low > 1 {
			t.Fatalf("%d partitions: unbalanced targets %v", partitions, counts)
		}
	}
}

// TestGroupRemembersTopicsAfterMembersLeave: describe and list show a group's
// committed offsets after its last member left, as Kafka's describe does.
func TestGroupRemembersTopicsAfterMembersLeave(t *testing.T) {
	m := groupTestMetadata(3)
	groups := map[string]*consumerGroup{}
	if e := applyGroupCommand(groups, m, 1, controllerCommand{Op: opGroupJoin, Group: &groupCommand{Name: "g", Member: "a", Topics: []string{"t"}}}); e != nil {
		t.Fatal(e)
	}
	if e := applyGroupCommand(groups, m, 2, controllerCommand{Op: opGroupLeave, Group: &groupCommand{Name: "g", Member: "a"}}); e != nil {
		t.Fatal(e)
	}
	g := groups["g"]
	if len(g.Members) != 0 {
		t.Fatalf("members left behind: %v", g.Members)
	}
	if got := g.topics(); len(got) != 1 || got[0] != "t" {
		t.Fatalf("topics after the last member left: %v", got)
	}
	if got := g.clone().topics(); len(got) != 1 || got[0] != "t" {
		t.Fatalf("clone lost the known topics: %v", got)
	}
}
