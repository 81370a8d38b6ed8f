package broker

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/raftmq/raftmq/protocol"
)

// TestProduceLostByItsLeaderAfterAppendMayHaveBeenWritten: a produce whose
// entry the leader appended and sent, and whose leader then failed before
// the entry committed (its log sync failed, the replica stopped), may
// still be committed by the next leader: the followers hold the entry.
// Its reply must say so (timeout: it may have been written), not
// not_leader, which reads as "not written here, send it elsewhere".
func TestProduceLostByItsLeaderAfterAppendMayHaveBeenWritten(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// Every broker gets its own faulty file system; the one failed is the
	// partition's preferred leader's, which leads it and which leader
	// balancing never moves leadership away from (a transfer in progress
	// would answer not_ready, the entry never appended).
	faults := map[uint64]*faultFS{}
	for id := uint64(1); id <= 3; id++ {
		faults[id] = &faultFS{FS: vfs.Default}
	}
	cluster, client := startTestClusterWith(t, 3, func(cfg *Config) {
		fastTimings(cfg)
		cfg.FS = faults[cfg.ID]
	})
	info := client.createTopic("disk", 1, 3)
	preferred := info.Partitions[0].Replicas[0]
	fault := faults[preferred]
	waitFor(ctx, t, fmt.Sprintf("broker %d's replica (the preferred leader) to lead and take a record", preferred), func() bool {
		r := localReplica(cluster.Broker(preferred), "disk")
		if r == nil || leaderReplica(cluster, "disk") != r {
			return false
		}
		reply, err := client.produceTo(preferred, &protocol.ProduceRequest{Topic: "disk", Batch: buildBatch(t, "first")})
		return err == nil && reply.Err == nil
	})

	fault.fail.Store(true)
	reply, err := client.produceTo(preferred, &protocol.ProduceRequest{Topic: "disk", Batch: buildBatch(t, "unknown outcome"), Timeout: 8 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if reply.Err == nil {
		t.Skip("the followers committed the entry before the leader's sync failed: nothing to check")
	}
	if reply.Err.Code != protocol.CodeTimeout {
		t.Fatalf("produce whose leader failed after appending it: %v (%s), want %s (it may have been written)", reply.Err, reply.Err.Code, protocol.CodeTimeout)
	}
}
