package clients

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/raftmq/raftmq/protocol"
)

func TestAdminTopicLifecycle(t *testing.T) {
	f := startFakeCluster(t, 1, 2, 3)
	client := newTestClient(t, f)
	ctx := testContext(t)

	info, err := client.CreateTopic(ctx, "orders", WithPartitions(3), WithReplicas(3))
	if err != nil {
		t.Fatal(err)
	}
	if info.Name != "orders" || len(info.Partitions) != 3 {
		t.Fatalf("created %+v", info)
	}
	if _, err := client.CreateTopic(ctx, "orders"); !errors.Is(err, protocol.CodeTopicExists) {
		t.Errorf("second create: %v", err)
	}
	if _, err := client.CreateTopic(ctx, "bad topic"); err == nil {
		t.Error("invalid topic name accepted")
	}
	if _, err := client.CreateTopic(ctx, "x", WithPartitions(0)); err == nil {
		t.Error("0 partitions accepted")
	}
	topics, err := client.ListTopics(ctx)
	if err != nil || len(topics) != 1 || topics[0].Name != "orders" {
		t.Fatalf("list: %v %v", topics, err)
	}
	described, err := client.DescribeTopic(ctx, "orders")
	if err != nil || len(described.Partitions) != 3 || described.Partitions[1].Leader != 2 {
		t.Fatalf("describe: %+v %v", described, err)
	}

	status, err := client.ClusterStatus(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if status.ControllerLeader != 1 || len(status.Brokers) != 3 || len(status.Partitions) != 3 {
		t.Errorf("status %+v", status)
	}

	if err := client.DeleteTopic(ctx, "orders"); err != nil {
		t.Fatal(err)
	}
	if _, err := client.DescribeTopic(ctx, "orders"); !errors.Is(err, protocol.CodeUnknownTopic) {
		t.Errorf("describe after delete: %v", err)
	}
}

func TestAdminWithoutBrokersFailsFast(t *testing.T) {
	f := startFakeCluster(t)
	client := newTestClient(t, f, WithSubjectPrefix("elsewhere"))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := client.ListTopics(ctx); !errors.Is(err, ErrNoBrokers) {
		t.Errorf("got %v, want ErrNoBrokers", err)
	}
}

func TestConnectHonoursContext(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	// Port 1 on loopback refuses connections.
	if _, err := Connect(ctx, "nats://127.0.0.1:1"); err == nil {
		t.Error("connect to a closed port succeeded")
	}
}

// TestAdminMembership checks the membership methods against a stand-in
// controller (on its own subject prefix): requests carry what the caller
// gave, replies and errors come back, and WaitReassignments reports
// progress until the partition's replicas are the target.
func TestAdminMembership(t *testing.T) {
	f := startFakeCluster(t, 1)
	client := newTestClient(t, f, WithSubjectPrefix("member"))
	ctx := testContext(t)
	var mu sync.Mutex
	moved := false
	var got []string
	serve := func(op string, handle func(data []byte) any) {
		_, err := f.conn.Subscribe(protocol.SubjectAdmin("member", op), func(m *nats.Msg) {
			mu.Lock()
			got = append(got, op+" "+string(m.Data))
			reply := handle(m.Data)
			mu.Unlock()
			data, _ := json.Marshal(reply)
			_ = m.Respond(data)
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	serve(protocol.AdminReassignPartition, func(data []byte) any {
		var req protocol.ReassignPartitionRequest
		_ = json.Unmarshal(data, &req)
		if req.Cancel {
			return protocol.ReassignReply{Reassignments: []protocol.Reassignment{{Topic: req.Topic, Partition: req.Partition, From: []uint64{1, 2, 4}, To: []uint64{1, 2, 3}}}}
		}
		if slices.Contains(req.Replicas, 9) {
			return protocol.ReassignReply{Error: protocol.Errorf(protocol.CodeInvalidArgument, "unknown broker 9")}
		}
		return protocol.ReassignReply{Reassignments: []protocol.Reassignment{{Topic: req.Topic, Partition: req.Partition, From: []uint64{1, 2, 3}, To: req.Replicas}}}
	})
	polls := 0
	serve(protocol.AdminClusterStatus, func([]byte) any {
		polls++
		p := protocol.PartitionInfo{Partition: 0, Leader: 1, Replicas: []uint64{1, 2, 3}, Target: []uint64{1, 2, 4}, Voters: []uint64{1, 2, 3}, Learners: []uint64{4}}
		if polls >= 3 {
			moved = true
			p = protocol.PartitionInfo{Partition: 0, Leader: 1, Replicas: []uint64{1, 2, 4}, Voters: []uint64{1, 2, 4}}
		}
		return protocol.MetadataReply{ControllerLeader: 1, Brokers: []protocol.BrokerInfo{{ID: 1, Alive: true}},
			Topics: []protocol.TopicInfo{{Name: "orders", Partitions: []protocol.PartitionInfo{p}}}, Controller: &protocol.GroupMembership{Voters: []uint64{1, 2, 3}}}
	})
	serve(protocol.AdminReplaceBroker, func(data []byte) any {
		return protocol.ReassignReply{Error: protocol.Errorf(protocol.CodeInvalidArgument, "broker 5 holds no replica")}
	})
	serve(protocol.AdminAddController, func(data []byte) any {
		return protocol.ControllerMemberReply{Controller: &protocol.GroupMembership{Voters: []uint64{1, 2, 3, 4}}}
	})
	serve(protocol.AdminRemoveController, func(data []byte) any {
		return protocol.ControllerMemberReply{Error: protocol.Errorf(protocol.CodeInvalidArgument, "broker 1 is the last controller voter; add another first")}
	})
	if err := f.conn.Flush(); err != nil {
		t.Fatal(err)
	}

	if _, err := client.ReassignPartition(ctx, "orders", 0, nil); err == nil {
		t.Error("empty replica list accepted")
	}
	if _, err := client.ReassignPartition(ctx, "orders", 0, []uint64{1, 2, 9}); !errors.Is(err, protocol.CodeInvalidArgument) {
		t.Errorf("unknown broker: %v", err)
	}
	moves, err := client.ReassignPartition(ctx, "orders", 0, []uint64{1, 2, 4})
	if err != nil || len(moves) != 1 || !slices.Equal(moves[0].To, []uint64{1, 2, 4}) {
		t.Fatalf("reassign: %+v %v", moves, err)
	}
	var seen [][]PartitionStatus
	if err := client.WaitReassignments(ctx, moves, func(pending []PartitionStatus) { seen = append(seen, pending) }); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	done := moved
	mu.Unlock()
	if !done || len(seen) != 3 || len(seen[0]) != 1 || !slices.Equal(seen[0][0].Learners, []uint64{4}) || len(seen[2]) != 0 {
		t.Fatalf("progress %+v (moved %v)", seen, done)
	}
	status, err := client.ClusterStatus(ctx)
	if err != nil || status.Controller == nil || !slices.Equal(status.Controller.Voters, []uint64{1, 2, 3}) || !slices.Equal(status.Partitions[0].Voters, []uint64{1, 2, 4}) {
		t.Fatalf("status %+v %v", status, err)
	}
	back, err := client.CancelReassignment(ctx, "orders", 0)
	if err != nil || len(back) != 1 || !slices.Equal(back[0].To, []uint64{1, 2, 3}) {
		t.Errorf("cancel: %+v %v", back, err)
	}
	if _, err := client.ReplaceBroker(ctx, 5, 6); !errors.Is(err, protocol.CodeInvalidArgument) {
		t.Errorf("replace-broker: %v", err)
	}
	membership, err := client.AddController(ctx, 4)
	if err != nil || !slices.Equal(membership.Voters, []uint64{1, 2, 3, 4}) {
		t.Errorf("add-controller: %+v %v", membership, err)
	}
	if _, err := client.RemoveController(ctx, 1); !errors.Is(err, protocol.CodeInvalidArgument) {
		t.Errorf("remove-controller: %v", err)
	}
	if _, err := client.AddController(ctx, 0); err == nil {
		t.Error("broker 0 accepted")
	}
	mu.Lock()
	defer mu.Unlock()
	want := `partition.reassign {"v":1,"topic":"orders","partition":0,"replicas":[1,2,4]}`
	if !slices.Contains(got, want) || !slices.Contains(got, `broker.replace {"v":1,"old":5,"new":6}`) || !slices.Contains(got, `controller.add {"v":1,"broker":4}`) ||
		!slices.Contains(got, `partition.reassign {"v":1,"topic":"orders","partition":0,"replicas":null,"cancel":true}`) {
		t.Errorf("requests %q", got)
	}
}
