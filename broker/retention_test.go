package broker

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/raftmq/raftmq/protocol"
)

// TestRetentionSnapshotsConsumerStateBeforeDeletingSegments runs
// size-based retention on small segments while records are produced and
// offsets committed. Segments must go on every replica, a consumer-state
// snapshot must cover the new log start, and a broker restarted afterwards
// (whose state database is behind the log start) restores the group
// offsets from the snapshot and agrees with the other replicas.
func TestRetentionSnapshotsConsumerStateBeforeDeletingSegments(t *testing.T) {
	retentionScenario(t, false)
}

// retentionScenario runs the retention test. With concurrent, the brokers'
// own retention loop runs while records are produced; without, retention
// is triggered by the test once producing stopped.
func retentionScenario(t *testing.T, concurrent bool) {
	checkInterval := time.Hour
	if concurrent {
		checkInterval = 50 * time.Millisecond
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cluster, err := StartDev(ctx, DevConfig{
		Nodes: 3, DataDir: t.TempDir(), ClientListen: "127.0.0.1:0", Registerer: prometheus.NewRegistry(),
		Configure: func(c *Config) {
			fastTimings(c)
			c.Log.SegmentMaxBytes = 8 << 10
			c.Retention = RetentionConfig{MaxAge: 0, MaxBytes: 24 << 10, CheckInterval: checkInterval, SnapshotsKept: 2}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close(context.Background())
	_, client := startTestClient(t, cluster)
	client.createTopic("retained", 1, 3)
	c := &leaderClient{testClient: client, leader: 1, nodes: 3, acks: protocol.AcksApplied}
	value := strings.Repeat("r", 500)
	var committed uint64
	for i := range 200 {
		offset, err := c.produce(ctx, "retained", 0, buildBatch(t, value, value))
		if err != nil {
			t.Fatal(err)
		}
		if i%20 == 0 && i < 100 {
			committed = offset + 2
			if e := c.commitOne(ctx, "g", protocol.PartitionOffset{Topic: "retained", Offset: committed}); e != nil {
				t.Fatal(e)
			}
		}
	}
	// Segments go on every replica, each covered by a snapshot.
	for attempt := 0; ; attempt++ {
		if !concurrent {
			for id := uint64(1); id <= 3; id++ {
				cluster.Broker(id).runRetention(time.Now())
			}
		}
		done := true
		for id := uint64(1); id <= 3; id++ {
			r := cluster.Broker(id).partitions[topicPartition{"retained", 0}]
			latest, ok := r.snapshots.Latest()
			if r.log.FirstIndex() <= 1 || !ok || latest.Meta.Index+1 < r.log.FirstIndex() {
				done = false
			}
		}
		if done {
			break
		}
		if ctx.Err() != nil {
			t.Fatal("retention never deleted segments on every replica")
		}
		waitBackoff(ctx, attempt)
	}
	reply, err := c.fetch(ctx, protocol.FetchRequest{Topic: "retained", Offset: 0})
	if err == nil || reply.Err == nil || reply.Err.Code != protocol.CodeOffsetOutOfRange || reply.Err.Low == 0 {
		t.Fatalf("fetch of a deleted offset: %+v %v", reply.Err, err)
	}
	got, e := c.committed(ctx, "g", protocol.GroupPartition{Topic: "retained"}, false)
	if e != nil || got.Offset != committed {
		t.Fatalf("committed offset after retention: %+v %v (want %d)", got, e, committed)
	}

	// A follower restarts on a log that starts past its stored consumer
	// state: it must restore the snapshot.
	follower := c.leader%3 + 1
	if err := cluster.StopBroker(ctx, follower); err != nil {
		t.Fatal(err)
	}
	if err := cluster.StartBroker(ctx, follower); err != nil {
		t.Fatal(err)
	}
	for attempt := 0; ; attempt++ {
		b := cluster.Broker(follower)
		b.mu.RLock()
		r := b.partitions[topicPartition{"retained", 0}]
		b.mu.RUnlock()
		if r != nil {
			if rec, ok := r.state.consumers.get("g"); ok && rec.Offset == committed {
				break
			}
		}
		if ctx.Err() != nil {
			t.Fatal("restarted replica never held the group offset")
		}
		waitBackoff(ctx, attempt)
	}
	if e := c.commitOne(ctx, "g", protocol.PartitionOffset{Topic: "retained", Offset: committed + 2}); e != nil {
		t.Fatal(e)
	}
	state := waitReplicasAgree(ctx, t, cluster, "retained", 0)
	if state["g"].Offset != committed+2 {
		t.Fatalf("replicas agree on %+v", state["g"])
	}
	t.Logf("log start offset %d, committed %d", reply.Err.Low, committed)
}

// startTestClient connects a test client to a running cluster.
func startTestClient(t *testing.T, cluster *DevCluster) (*DevCluster, *testClient) {
	t.Helper()
	nc, err := nats.Connect(joinURLs(cluster.ClientURLs()), nats.MaxReconnects(-1), nats.ReconnectWait(20*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return cluster, &testClient{t: t, nc: nc, prefix: protocol.DefaultSubjectPrefix}
}

// TestRetentionPassPrunesSnapshotsWhenItDeletesNothing: a retention pass
// prunes the replica's snapshots to the kept count even when its policy
// deletes nothing (here: the topic retains everything), as on a follower
// that installed snapshots from its leader. Before, only a pass that
// deleted segments pruned, and such snapshots piled up.
func TestRetentionPassPrunesSnapshotsWhenItDeletesNothing(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cluster, client, r := startLeadingTopic(ctx, t, "kept", func(c *Config) {
		fastTimings(c)
		c.Retention = RetentionConfig{CheckInterval: time.Hour, SnapshotsKept: 1}
	})
	c := &leaderClient{testClient: client, leader: 1, nodes: 1, acks: protocol.AcksApplied}
	for range 4 {
		if _, err := c.produce(ctx, "kept", 0, buildBatch(t, "v")); err != nil {
			t.Fatal(err)
		}
	}
	b := cluster.Broker(1)
	applied := r.group.Status().AppliedIndex
	for index := applied - 3; index <= applied; index++ {
		if _, err := b.snapshotAtIndex(r, index); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(r.snapshots.List()); n != 4 {
		t.Fatalf("%d snapshots written, want 4", n)
	}
	if _, err := b.applyRetention(r, time.Now()); err != nil {
		t.Fatal(err)
	}
	var left []uint64
	for _, info := range r.snapshots.List() {
		left = append(left, info.Meta.Index)
	}
	if len(left) != 1 || left[0] != applied {
		t.Fatalf("after a retention pass: snapshots at indexes %v, want the newest (index %d) only", left, applied)
	}
}
