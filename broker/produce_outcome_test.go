package broker

import (
	"context"
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
	fault := &faultFS{FS: vfs.Default}
	cluster, client := startTestClusterWith(t, 3, func(cfg *Config) {
		fastTimings(cfg)
		if cfg.ID == 2 {
			cfg.FS = fault
		}
	})
	client.createTopic("disk", 1, 3)
	b2 := cluster.Broker(2)
	waitFor(ctx, t, "broker 2's replica to lead and take a record", func() bool {
		r := localReplica(b2, "disk")
		if r == nil {
			return false
		}
		if leader := leaderReplica(cluster, "disk"); leader != nil && leader != r {
			transferCtx, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			_ = leader.group.TransferLeadership(transferCtx, 2)
		}
		reply, err := client.produceTo(2, &protocol.ProduceRequest{Topic: "disk", Batch: buildBatch(t, "first")})
		return err == nil && reply.Err == nil
	})

	fault.fail.Store(true)
	reply, err := client.produceTo(2, &protocol.ProduceRequest{Topic: "disk", Batch: buildBatch(t, "unknown outcome"), Timeout: 8 * time.Second})
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
