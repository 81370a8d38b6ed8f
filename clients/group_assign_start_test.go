package clients

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/raftmq/raftmq/protocol"
)

// TestGroupStartsEveryAssignedPartitionOfASlowLeaderAtOnce: the claim of
// an assignment reads, at each partition's leader, the committed offset
// and the partition's ends, all the member needs to start fetching. Here
// eight partitions share a leader that takes 250 ms to answer list-offsets
// and the request timeout is 1 s. Every partition must start in the
// round that claimed it. Before, each was started with a Seek, a
// list-offsets request whose answer was not used, one after the other
// within the claim's request timeout: the partitions past it were dropped
// (and claimed again a heartbeat round later).
func TestGroupStartsEveryAssignedPartitionOfASlowLeaderAtOnce(t *testing.T) {
	const prefix = "groupslowstart"
	const partitions = 8
	fake := startFakeCluster(t)
	info := protocol.TopicInfo{Name: "t", Replicas: 1}
	assignment := protocol.HeartbeatReply{Version: protocol.APIVersion, Revoke: []protocol.GroupPartition{}, HeartbeatIntervalMs: 100}
	for p := range uint32(partitions) {
		info.Partitions = append(info.Partitions, protocol.PartitionInfo{Partition: p, Leader: 1, Replicas: []uint64{1}})
		assignment.Assigned = append(assignment.Assigned, protocol.GroupPartition{Topic: "t", Partition: p, Epoch: 1})
	}
	fake.subscribe(protocol.SubjectAdmin(prefix, protocol.AdminMetadata), func(m *nats.Msg) {
		fake.respondJSON(m, protocol.MetadataReply{Version: 1, ControllerLeader: 1, Brokers: []protocol.BrokerInfo{{ID: 1, Alive: true}},
			Topics: []protocol.TopicInfo{info}})
	})
	fake.serveGroupMember(prefix, assignment, func(protocol.HeartbeatRequest) bool { return true })
	fake.subscribe(protocol.SubjectBrokerCommitted(prefix, 1), func(m *nats.Msg) {
		var req protocol.OffsetFetchRequest
		_ = json.Unmarshal(m.Data, &req)
		reply := protocol.OffsetFetchReply{Version: protocol.APIVersion}
		for _, gp := range req.Partitions {
			reply.Partitions = append(reply.Partitions, protocol.CommittedOffset{Topic: gp.Topic, Partition: gp.Partition,
				Committed: true, Offset: 10, HighWatermark: 30})
		}
		fake.respondJSON(m, reply)
	})
	fake.subscribe(protocol.SubjectBrokerOffsets(prefix, 1), func(m *nats.Msg) {
		time.AfterFunc(250*time.Millisecond, func() { // a busy leader
			_ = m.Respond(protocol.AppendListOffsetsReply(nil, &protocol.ListOffsetsReply{Offset: 10, HighWatermark: 30}))
		})
	})
	fake.subscribe(protocol.SubjectBrokerFetch(prefix, 1), func(*nats.Msg) {})
	ctx, client := connectUnderPrefix(t, fake, prefix, WithRequestTimeout(time.Second))
	var mu sync.Mutex
	var rounds [][]TopicPartition
	member, err := client.NewGroupConsumer(ctx, "g", []string{"t"}, WithAutoCommitInterval(0), WithCommitOnClose(false),
		WithOnAssigned(func(_ context.Context, ps []TopicPartition) {
			mu.Lock()
			defer mu.Unlock()
			rounds = append(rounds, ps)
		}))
	if err != nil {
		t.Fatal(err)
	}
	defer member.Close(ctx)
	waitUntil(t, "a first assignment started", func() bool { mu.Lock(); defer mu.Unlock(); return len(rounds) > 0 })
	mu.Lock()
	defer mu.Unlock()
	if len(rounds[0]) != partitions {
		t.Fatalf("the first round started %d partitions %v, want all %d assigned", len(rounds[0]), rounds[0], partitions)
	}
}
