package broker

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/raftmq/raftmq/protocol"
)

// TestClusterStatusListsAFailedTargetReplica: a reassignment waits for
// its target brokers' replicas, so when the one on the new broker fails
// (its disk), the cluster status must say so: its failed column lists
// every broker running a replica of the partition, the target's
// included, not only the current replica set's.
func TestClusterStatusListsAFailedTargetReplica(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	faults := map[uint64]*faultFS{}
	for id := uint64(1); id <= 4; id++ {
		faults[id] = &faultFS{FS: vfs.Default}
	}
	cluster, client := startTestClusterWith(t, 4, func(cfg *Config) {
		fastTimings(cfg)
		cfg.FS = faults[cfg.ID]
	})
	info := client.createTopic("stuck-target", 1, 3)
	replicas := info.Partitions[0].Replicas
	var newBroker uint64
	for id := uint64(1); id <= 4; id++ {
		if !slices.Contains(replicas, id) {
			newBroker = id
		}
	}
	faults[newBroker].fail.Store(true)
	target := append(slices.Clone(replicas[:2]), newBroker)
	var moved protocol.ReassignReply
	client.admin(protocol.AdminReassignPartition, protocol.ReassignPartitionRequest{Version: 1, Topic: "stuck-target", Replicas: target}, &moved)
	if moved.Error != nil {
		t.Fatal(moved.Error)
	}
	waitFor(ctx, t, "the new broker to report its replica failed", func() bool {
		return len(cluster.Broker(newBroker).localStatus().FailedReplicas) > 0
	})
	reported := func() ([]uint64, []uint64) {
		var status protocol.MetadataReply
		client.admin(protocol.AdminClusterStatus, protocol.MetadataRequest{Version: 1}, &status)
		for _, topic := range status.Topics {
			if topic.Name == "stuck-target" {
				return topic.Partitions[0].Failed, topic.Partitions[0].Target
			}
		}
		return nil, nil
	}
	// Reports arrive every status interval (100 ms): a few seconds is plenty.
	statusCtx, statusCancel := context.WithTimeout(ctx, 5*time.Second)
	defer statusCancel()
	for attempt := 0; ; attempt++ {
		failed, moving := reported()
		if slices.Contains(failed, newBroker) {
			if !slices.Equal(moving, target) {
				t.Fatalf("cluster status: target %v, want %v", moving, target)
			}
			break
		}
		if statusCtx.Err() != nil {
			t.Fatalf("cluster status lists failed %v, target %v: broker %d, whose replica failed, is missing", failed, moving, newBroker)
		}
		waitBackoff(statusCtx, attempt)
	}
}
