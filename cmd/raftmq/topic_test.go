package main

import (
	"testing"

	"github.com/raftmq/raftmq/clients"
)

// TestTopicSummaryCountsEachPartitionsReplicas: topic describe counts the
// replicas the partitions have now, giving a range when a reassignment
// made them differ; it said "3 replicas each", the count the topic was
// created with, after partition 0 moved to two brokers.
func TestTopicSummaryCountsEachPartitionsReplicas(t *testing.T) {
	partitions := func(replicaSets ...[]uint64) []clients.PartitionInfo {
		var infos []clients.PartitionInfo
		for i, replicas := range replicaSets {
			infos = append(infos, clients.PartitionInfo{Partition: uint32(i), Replicas: replicas})
		}
		return infos
	}
	for _, tc := range []struct {
		info clients.TopicInfo
		want string
	}{
		{clients.TopicInfo{Name: "t1", Replicas: 3, Partitions: partitions([]uint64{1, 2}, []uint64{1, 2, 3}, []uint64{2, 3, 1})},
			"topic t1: 3 partitions, 2-3 replicas per partition"},
		{clients.TopicInfo{Name: "t2", Replicas: 3, Partitions: partitions([]uint64{1, 2}, []uint64{2, 3})},
			"topic t2: 2 partitions, 2 replicas each"},
		{clients.TopicInfo{Name: "t3", Replicas: 1, Partitions: partitions([]uint64{1})},
			"topic t3: 1 partition, 1 replica each"},
	} {
		if got := topicSummary(tc.info); got != tc.want {
			t.Errorf("topicSummary = %q, want %q", got, tc.want)
		}
	}
}
