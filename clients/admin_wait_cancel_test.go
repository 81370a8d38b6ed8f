package clients

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/raftmq/raftmq/protocol"
)

// TestWaitReassignmentsEndsWhenAMoveIsCancelled: a move to {1,2,4} that
// another operator cancels (the partition moves back to {1,2,3}) is no
// longer in progress; WaitReassignments says so with
// ErrReassignmentCancelled, naming where the partition stands, instead
// of polling until its context ends (30 minutes for the CLI), while the
// other moves it waits for still count: it returns once they are done.
func TestWaitReassignmentsEndsWhenAMoveIsCancelled(t *testing.T) {
	f := startFakeCluster(t, 1)
	client := newTestClient(t, f, WithSubjectPrefix("cancelled"))
	var polls atomic.Int32
	_, err := f.conn.Subscribe(protocol.SubjectAdmin("cancelled", protocol.AdminClusterStatus), func(m *nats.Msg) {
		poll := polls.Add(1)
		// orders/0 is being moved back (the cancel), then is back.
		cancelled := protocol.PartitionInfo{Partition: 0, Leader: 1, Replicas: []uint64{1, 2, 3}, Target: []uint64{1, 2, 3}, Voters: []uint64{1, 2, 3, 4}}
		// orders/1 finishes its move at the third poll.
		moving := protocol.PartitionInfo{Partition: 1, Leader: 1, Replicas: []uint64{1, 2, 3}, Target: []uint64{1, 2, 5}, Voters: []uint64{1, 2, 3}, Learners: []uint64{5}}
		if poll >= 2 {
			cancelled = protocol.PartitionInfo{Partition: 0, Leader: 1, Replicas: []uint64{1, 2, 3}, Voters: []uint64{1, 2, 3}}
		}
		if poll >= 3 {
			moving = protocol.PartitionInfo{Partition: 1, Leader: 1, Replicas: []uint64{1, 2, 5}, Voters: []uint64{1, 2, 5}}
		}
		data, _ := json.Marshal(protocol.MetadataReply{ControllerLeader: 1, Brokers: []protocol.BrokerInfo{{ID: 1, Alive: true}},
			Topics: []protocol.TopicInfo{{Name: "orders", Partitions: []protocol.PartitionInfo{cancelled, moving}}}})
		_ = m.Respond(data)
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.conn.Flush(); err != nil {
		t.Fatal(err)
	}
	moves := []Reassignment{
		{Topic: "orders", Partition: 0, From: []uint64{1, 2, 3}, To: []uint64{1, 2, 4}},
		{Topic: "orders", Partition: 1, From: []uint64{1, 2, 3}, To: []uint64{1, 2, 5}},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var pendingCounts []int
	err = client.WaitReassignments(ctx, moves, func(pending []PartitionStatus) { pendingCounts = append(pendingCounts, len(pending)) })
	if !errors.Is(err, ErrReassignmentCancelled) || !strings.Contains(err.Error(), "orders/0") || strings.Contains(err.Error(), "orders/1") {
		t.Fatalf("WaitReassignments: %v, want ErrReassignmentCancelled naming orders/0 only", err)
	}
	if n := polls.Load(); n != 3 {
		t.Fatalf("returned after %d polls, want 3 (once orders/1 is done)", n)
	}
	if len(pendingCounts) != 3 || pendingCounts[2] != 0 {
		t.Fatalf("progress reported pending %v", pendingCounts)
	}
}
