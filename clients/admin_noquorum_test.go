package clients_test

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/raftmq/raftmq/broker"
	"github.com/raftmq/raftmq/clients"
)

// TestClusterStatusWithoutControllerQuorum: with two of three brokers
// stopped, the controller has no quorum, and the surviving broker answers
// a cluster status from its own view, with no controller leader, after
// waiting several election timeouts for one (3.2 s here). The SDK takes
// that answer although it sends the request again meanwhile; it failed
// after its whole request timeout when each attempt was abandoned.
func TestClusterStatusWithoutControllerQuorum(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cluster, err := broker.StartDev(ctx, broker.DevConfig{Nodes: 3, DataDir: t.TempDir(), ClientListen: "127.0.0.1:0",
		Registerer: prometheus.NewRegistry(),
		Configure: func(c *broker.Config) {
			c.ElectionTimeout = 300 * time.Millisecond
			c.HeartbeatInterval = 50 * time.Millisecond
			c.StatusInterval = 100 * time.Millisecond
			c.ShutdownTimeout = 3 * time.Second
		}})
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close(context.Background())
	client, err := clients.Connect(ctx, cluster.ClientURLs()[0])
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	for _, id := range []uint64{2, 3} {
		if err := cluster.StopBroker(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	// Broker 1, if it led the controller, steps down within a few election
	// timeouts without a quorum (CheckQuorum).
	time.Sleep(2 * time.Second)

	start := time.Now()
	status, err := client.ClusterStatus(ctx)
	if err != nil {
		t.Fatalf("cluster status with the controller's quorum gone failed after %v: %v", time.Since(start), err)
	}
	if status.ControllerLeader != 0 {
		t.Fatalf("cluster status names controller leader %d with two of three brokers stopped", status.ControllerLeader)
	}
	if len(status.Brokers) == 0 {
		t.Fatal("cluster status lists no broker")
	}
}
