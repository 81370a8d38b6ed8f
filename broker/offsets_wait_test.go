package broker

import (
	"context"
	"testing"
	"time"

	"github.com/raftmq/raftmq/protocol"
	"github.com/raftmq/raftmq/raft"
)

// TestOffsetCommitWaitsShareTheRequestTime: a commit to several partitions
// whose leader has not applied its committed entries waits for them all at
// once, within the request's time. Before, it waited up to a second per
// partition, one after another, whatever the request's deadline: six
// partitions took six seconds on a request given 1.5.
func TestOffsetCommitWaitsShareTheRequestTime(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cluster, client := startTestCluster(t, 1)
	const partitions = 6
	client.createTopic("slow", partitions, 1)
	b := cluster.Broker(1)
	var replicas []*partitionReplica
	for p := range uint32(partitions) {
		b.mu.RLock()
		r := b.partitions[topicPartition{"slow", p}]
		b.mu.RUnlock()
		if r == nil {
			t.Fatalf("no replica of slow/%d", p)
		}
		waitFor(ctx, t, "the replica to lead", func() bool { return r.group.Status().Role == raft.RoleLeader })
		replicas = append(replicas, r)
	}
	// Each partition commits a record its leader does not apply (apply
	// goes through the consumer state for every entry).
	for p, r := range replicas {
		held := &r.state.consumers.mu
		held.Lock()
		defer held.Unlock()
		c := &leaderClient{testClient: client, leader: 1, nodes: 1, acks: protocol.AcksQuorum}
		if _, err := c.produce(ctx, "slow", uint32(p), buildBatch(t, "unapplied")); err != nil {
			t.Fatal(err)
		}
	}

	req := protocol.OffsetCommitRequest{Version: 1, Group: "g", Op: protocol.CommitOpCommit}
	for p := range uint32(partitions) {
		req.Offsets = append(req.Offsets, protocol.PartitionOffset{Topic: "slow", Partition: p})
	}
	requestCtx, cancelRequest := context.WithTimeout(ctx, 1500*time.Millisecond)
	defer cancelRequest()
	start := time.Now()
	reply := b.commitOffsets(requestCtx, &req)
	took := time.Since(start)
	if took > 4*time.Second {
		t.Fatalf("a commit to %d partitions given 1.5 s answered after %v", partitions, took)
	}
	if reply.Error != nil || len(reply.Results) != partitions {
		t.Fatalf("commit reply: %+v", reply)
	}
	for _, res := range reply.Results {
		if res.Error == nil || res.Error.Code != protocol.CodeTimeout {
			t.Fatalf("commit to %s/%d with its apply held: %v, want a timeout", res.Topic, res.Partition, res.Error)
		}
	}
}
