package clients

import (
	"context"
	"errors"
	"testing"
	"time"

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
