package broker

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/raftmq/raftmq/protocol"
)

func TestAssignmentSpreadsLeadersAndReplicasEvenly(t *testing.T) {
	m := newClusterMetadata([]uint64{1, 2, 3})
	var err *protocol.Error
	index := uint64(1)
	for _, topic := range []string{"a", "b", "c"} {
		m, err = applyCommand(m, index, controllerCommand{Op: opCreateTopic, Topic: topic, Partitions: 4, Replicas: 2, Time: time.Unix(0, 0)})
		if err != nil {
			t.Fatal(err)
		}
		index++
	}
	leaders := map[uint64]int{}
	replicas := map[uint64]int{}
	groups := map[uint64]bool{}
	for _, topic := range m.Topics {
		for _, p := range topic.Partitions {
			if len(p.Replicas) != 2 || p.Replicas[0] == p.Replicas[1] {
				t.Fatalf("bad replica set %v", p.Replicas)
			}
			if groups[p.GroupID] || p.GroupID == controllerGroupID {
				t.Fatalf("group id %d reused", p.GroupID)
			}
			groups[p.GroupID] = true
			leaders[p.Replicas[0]]++
			for _, id := range p.Replicas {
				replicas[id]++
			}
		}
	}
	for _, id := range []uint64{1, 2, 3} {
		if leaders[id] != 4 || replicas[id] != 8 {
			t.Fatalf("uneven spread: leaders %v replicas %v", leaders, replicas)
		}
	}
	if m.Version != 3 || m.NextGroupID != firstPartitionGroupID+12 {
		t.Fatalf("version %d next group %d", m.Version, m.NextGroupID)
	}
}

func TestApplyCommandRejectsBadInputWithoutChange(t *testing.T) {
	m := newClusterMetadata([]uint64{1, 2, 3})
	m, _ = applyCommand(m, 1, controllerCommand{Op: opCreateTopic, Topic: "t", Partitions: 1, Replicas: 1})
	cases := []struct {
		cmd  controllerCommand
		code protocol.ErrorCode
	}{
		{controllerCommand{Op: opCreateTopic, Topic: "t", Partitions: 1, Replicas: 1}, protocol.CodeTopicExists},
		{controllerCommand{Op: opCreateTopic, Topic: "bad name", Partitions: 1, Replicas: 1}, protocol.CodeInvalidArgument},
		{controllerCommand{Op: opCreateTopic, Topic: "u", Partitions: 0, Replicas: 1}, protocol.CodeInvalidArgument},
		{controllerCommand{Op: opCreateTopic, Topic: "u", Partitions: 1, Replicas: 4}, protocol.CodeInvalidArgument},
		{controllerCommand{Op: opDeleteTopic, Topic: "nope"}, protocol.CodeUnknownTopic},
		{controllerCommand{Op: "frobnicate"}, protocol.CodeInvalidArgument},
	}
	for _, c := range cases {
		next, err := applyCommand(m, 9, c.cmd)
		if !errors.Is(err, c.code) || next != m {
			t.Errorf("%+v: got %v, metadata changed %v", c.cmd, err, next != m)
		}
	}
	next, err := applyCommand(m, 10, controllerCommand{Op: opDeleteTopic, Topic: "t"})
	if err != nil || len(next.Topics) != 0 || len(m.Topics) != 1 {
		t.Fatalf("delete: %v; the old metadata must stay unchanged", err)
	}
	next, err = applyCommand(next, 11, controllerCommand{Op: opRegisterBroker, Broker: 7})
	if err != nil || !slices.Equal(next.Brokers, []uint64{1, 2, 3, 7}) {
		t.Fatalf("register: %v %v", err, next.Brokers)
	}
}
