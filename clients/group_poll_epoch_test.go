package clients

import (
	"encoding/json"
	"sync/atomic"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/raftmq/raftmq/protocol"
)

// TestGroupPollDropsRecordsOfALostClaim: records a Poll got from the
// fetcher of a claim the member lost while that Poll ran (the coordinator
// granted the partition again, at a new epoch, and the member claimed it
// anew at the committed offset) are not returned, nor do they move the
// position: the new claim's fetcher reads them again from the committed
// offset, so returning them too would hand out the same offsets twice in
// one session (and, with the position moved past them, commit records not
// yet returned by the new claim).
func TestGroupPollDropsRecordsOfALostClaim(t *testing.T) {
	const prefix = "grouplostclaim"
	const committed = 10
	fake := startFakeCluster(t)
	var epoch atomic.Uint64
	epoch.Store(1)
	assignment := func() protocol.HeartbeatReply {
		return protocol.HeartbeatReply{Version: protocol.APIVersion, HeartbeatIntervalMs: 100, Revoke: []protocol.GroupPartition{},
			Assigned: []protocol.GroupPartition{{Topic: "t", Partition: 0, Epoch: epoch.Load()}}}
	}
	fake.subscribe(protocol.SubjectAdmin(prefix, protocol.AdminGroupJoin), func(m *nats.Msg) { fake.respondJSON(m, assignment()) })
	fake.subscribe(protocol.SubjectAdmin(prefix, protocol.AdminGroupHeartbeat), func(m *nats.Msg) {
		var req protocol.HeartbeatRequest
		if err := json.Unmarshal(m.Data, &req); err != nil {
			t.Error(err)
			return
		}
		fake.respondJSON(m, assignment())
	})
	fake.subscribe(protocol.SubjectAdmin(prefix, protocol.AdminGroupLeave), func(m *nats.Msg) {
		fake.respondJSON(m, protocol.DeleteGroupReply{Version: protocol.APIVersion})
	})
	fake.subscribe(protocol.SubjectBrokerCommitted(prefix, 1), func(m *nats.Msg) {
		fake.respondJSON(m, protocol.OffsetFetchReply{Version: protocol.APIVersion, Partitions: []protocol.CommittedOffset{
			{Topic: "t", Partition: 0, Committed: true, Offset: committed, HighWatermark: 100}}})
	})
	fake.serveOnePartitionMetadata(prefix)
	fake.subscribe(protocol.SubjectBrokerFetch(prefix, 1), func(m *nats.Msg) {
		req, _ := protocol.DecodeFetchRequest(m.Data)
		if req.Offset >= committed+3 {
			return // nothing more: left unanswered
		}
		reply := protocol.FetchReply{HighWatermark: 100, Batches: oneRecordBatch(req.Offset), NextOffset: req.Offset + 1}
		_ = m.Respond(protocol.AppendFetchReply(nil, &reply))
	})
	ctx, client := connectUnderPrefix(t, fake, prefix)
	member, err := client.NewGroupConsumer(ctx, "g", []string{"t"}, WithAutoCommitInterval(0), WithCommitOnClose(false))
	if err != nil {
		t.Fatal(err)
	}
	defer member.Close(ctx)
	epochOf := func() uint64 {
		member.mu.Lock()
		defer member.mu.Unlock()
		return member.owned[TopicPartition{"t", 0}]
	}
	waitUntil(t, "t/0 is claimed at epoch 1", func() bool { return epochOf() == 1 })

	polls := 0
	member.testAfterConsumerPoll = func() {
		polls++
		if polls != 1 {
			return
		}
		// The first Poll has records of the epoch 1 claim: the
		// coordinator grants t/0 again at epoch 2 before Poll takes them.
		epoch.Store(2)
		select {
		case member.wake <- struct{}{}:
		default:
		}
		waitUntil(t, "t/0 is claimed again at epoch 2", func() bool { return epochOf() == 2 })
	}
	seen := map[uint64]int{} // offset -> polls that returned it
	for polls < 10 && len(seen) < 3 {
		records, err := member.Poll(ctx)
		if err != nil {
			t.Fatalf("Poll: %v", err)
		}
		for _, r := range records {
			seen[r.Offset]++
			if seen[r.Offset] > 1 {
				t.Fatalf("offset %d returned again in the same session (Poll %d; the first time by the fetcher of the lost claim)", r.Offset, polls)
			}
		}
	}
	if len(seen) < 3 {
		t.Fatalf("offsets returned in %d polls: %v, want %d to %d", polls, seen, committed, committed+2)
	}
}
