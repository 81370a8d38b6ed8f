package bench

import (
	"context"
	"errors"
)

// startRaftmqCluster starts brokers in process. Placeholder until the
// broker package's dev cluster lands.
func startRaftmqCluster(ctx context.Context, dir string, w Workload) (raftmqCluster, error) {
	return nil, errors.New("bench: in-process raftmq cluster not available yet; use --server")
}
