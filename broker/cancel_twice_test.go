package broker

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/raftmq/raftmq/protocol"
)

// TestCancelOfAMoveBackIsRefused: a cancel turns a move back to the
// partition's replicas; a second cancel while that move back runs (here
// it waits for broker 2, which is down) has nothing to turn back. It was
// accepted and answered with no move, which the CLI reads as "nothing to
// move: the replicas already are the requested ones", done, while the
// move back was still in progress. It is refused, saying a move back is
// in progress, and the move back goes on.
func TestCancelOfAMoveBackIsRefused(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cluster, client := startManualRetentionCluster(t, ctx, 1)
	if info := client.createTopic("twice", 1, 3); !slices.Equal(info.Partitions[0].Replicas, []uint64{1, 2, 3}) {
		t.Fatalf("created on %v, want [1 2 3]", info.Partitions[0].Replicas)
	}
	if err := cluster.StopBroker(ctx, 2); err != nil {
		t.Fatal(err)
	}
	waitFor(ctx, t, "broker 2 to be seen down", func() bool { return !cluster.Broker(1).aliveBrokers()[2] })
	var reply protocol.ReassignReply
	client.admin(protocol.AdminReassignPartition, protocol.ReassignPartitionRequest{Version: 1, Topic: "twice", Replicas: []uint64{1, 2, 4}}, &reply)
	if reply.Error != nil {
		t.Fatal(reply.Error)
	}
	var back protocol.ReassignReply
	client.admin(protocol.AdminReassignPartition, protocol.ReassignPartitionRequest{Version: 1, Topic: "twice", Cancel: true}, &back)
	if back.Error != nil || len(back.Reassignments) != 1 || !slices.Equal(back.Reassignments[0].To, []uint64{1, 2, 3}) {
		t.Fatalf("first cancel: %+v", back)
	}
	// The move back cannot finish while broker 2 is down.
	var again protocol.ReassignReply
	client.admin(protocol.AdminReassignPartition, protocol.ReassignPartitionRequest{Version: 1, Topic: "twice", Cancel: true}, &again)
	if again.Error == nil || again.Error.Code != protocol.CodeInvalidArgument || !strings.Contains(again.Error.Message, "back") {
		t.Fatalf("second cancel while the move back runs: %+v, want invalid_argument", again)
	}
	p, _ := partitionMetaOn(cluster.Broker(1), "twice")
	if !slices.Equal(p.Target, []uint64{1, 2, 3}) {
		t.Fatalf("after the second cancel: %+v, want the move back still in progress", p)
	}
	if err := cluster.StartBroker(ctx, 2); err != nil {
		t.Fatal(err)
	}
	waitFor(ctx, t, "the move back", func() bool {
		p, ok := partitionMetaOn(cluster.Broker(1), "twice")
		return ok && p.Target == nil && p.Leaving == nil && slices.Equal(p.Replicas, []uint64{1, 2, 3})
	})
}
