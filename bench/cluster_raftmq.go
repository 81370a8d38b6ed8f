package bench

import (
	"context"
	"fmt"
	"time"

	"github.com/raftmq/raftmq/broker"
)

// inProcessCluster is the broker package's development cluster: w.Brokers
// brokers in this process, each beside an embedded NATS server, the
// servers routed into one NATS cluster, data on disk under dir.
type inProcessCluster struct{ dev *broker.DevCluster }

// startRaftmqCluster starts the brokers with data under dir and waits until
// they are ready.
func startRaftmqCluster(ctx context.Context, dir string, w Workload) (raftmqCluster, error) {
	if w.Fsync != "always" {
		return nil, fmt.Errorf("bench: the in-process raftmq cluster always fsyncs; fsync %q is not available", w.Fsync)
	}
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	dev, err := broker.StartDev(ctx, broker.DevConfig{Nodes: w.Brokers, DataDir: dir, ClientListen: "127.0.0.1:0"})
	if err != nil {
		return nil, fmt.Errorf("bench: start raftmq dev cluster: %w", err)
	}
	return &inProcessCluster{dev: dev}, nil
}

func (c *inProcessCluster) urls() []string { return c.dev.ClientURLs() }

func (c *inProcessCluster) close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return c.dev.Close(ctx)
}
