package broker

import (
	"context"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/raftmq/raftmq/protocol"
	"github.com/raftmq/raftmq/raft"
)

// TestFollowerBehindRetentionCatchesUpBySnapshot stops a follower, lets the
// leader's retention (small topic retention bytes, small segments) delete
// entries the follower never received, and restarts the follower: it must
// catch up by InstallSnapshot (its log then starts past everything it had,
// and its state machine counts a restore) and end with the leader's records
// at the leader's offsets and the leader's group offsets, then keep
// replicating normally.
func TestFollowerBehindRetentionCatchesUpBySnapshot(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// The test runs retention itself; the topic's settings apply.
	cluster, client := startManualRetentionCluster(t, ctx, 0)
	var created protocol.TopicReply
	client.admin(protocol.AdminCreateTopic, protocol.CreateTopicRequest{Version: 1, Name: "caught", Partitions: 1, Replicas: 3, RetentionBytes: 24 << 10}, &created)
	if created.Error != nil {
		t.Fatalf("create topic: %v", created.Error)
	}
	c := &leaderClient{testClient: client, leader: 1, nodes: 3, acks: protocol.AcksApplied}
	value := strings.Repeat("s", 500)
	if _, err := c.produce(ctx, "caught", 0, buildBatch(t, value)); err != nil {
		t.Fatal(err)
	}
	if e := c.commitOne(ctx, "g", protocol.PartitionOffset{Topic: "caught", Offset: 1}); e != nil {
		t.Fatal(e)
	}
	// Any follower will do; the leader may change while it is down, so
	// retention runs on both other replicas.
	follower := currentLeader(t, client, "caught")%3 + 1
	followerLastIndex := replicaOf(t, cluster, follower, "caught").log.LastIndex()
	if err := cluster.StopBroker(ctx, follower); err != nil {
		t.Fatal(err)
	}

	// Produce and commit while the follower is down, until the leader's
	// retention deleted entries past the follower's log.
	committed := uint64(0)
	for i := range 150 {
		offset, err := c.produce(ctx, "caught", 0, buildBatch(t, value, value))
		if err != nil {
			t.Fatal(err)
		}
		if i%25 == 0 {
			committed = offset + 1
			if e := c.commitOne(ctx, "g", protocol.PartitionOffset{Topic: "caught", Offset: committed}); e != nil {
				t.Fatal(e)
			}
		}
	}
	var others []*partitionReplica
	for id := uint64(1); id <= 3; id++ {
		if id != follower {
			others = append(others, replicaOf(t, cluster, id, "caught"))
		}
	}
	for attempt := 0; min(others[0].log.FirstIndex(), others[1].log.FirstIndex()) <= followerLastIndex+1; attempt++ {
		for id := uint64(1); id <= 3; id++ {
			if id != follower {
				cluster.Broker(id).runRetention(time.Now())
			}
		}
		if ctx.Err() != nil {
			t.Fatalf("retention never passed the follower's last index %d (logs start at %d and %d)",
				followerLastIndex, others[0].log.FirstIndex(), others[1].log.FirstIndex())
		}
		waitBackoff(ctx, attempt)
	}
	leaderReplica := others[0]
	if others[1].group.Status().Role == raft.RoleLeader {
		leaderReplica = others[1]
	}

	if err := cluster.StartBroker(ctx, follower); err != nil {
		t.Fatal(err)
	}
	// Caught up: applied as far as the leader, by a restore.
	var caughtUp *partitionReplica
	for attempt := 0; ; attempt++ {
		b := cluster.Broker(follower)
		b.mu.RLock()
		r := b.partitions[topicPartition{"caught", 0}]
		b.mu.RUnlock()
		if r != nil && r.state.restores.Load() > 0 &&
			r.group.Status().AppliedIndex == leaderReplica.group.Status().AppliedIndex {
			caughtUp = r
			break
		}
		if ctx.Err() != nil {
			if r != nil {
				t.Logf("follower: %d restores, %+v, log %d..%d", r.state.restores.Load(), r.group.Status(), r.log.FirstIndex(), r.log.LastIndex())
			}
			t.Fatal("the restarted follower never caught up by snapshot")
		}
		waitBackoff(ctx, attempt)
	}
	if first := caughtUp.log.FirstIndex(); first <= followerLastIndex+1 {
		t.Fatalf("follower log starts at %d, but it had entries up to %d before the snapshot", first, followerLastIndex)
	}
	if rec, ok := caughtUp.state.consumers.get("g"); !ok || rec.Offset != committed {
		t.Fatalf("follower's group offset %+v (ok %v), want %d", rec, ok, committed)
	}

	// Ordinary replication after the snapshot: a new record and a new
	// commit land on the follower too.
	last, err := c.produce(ctx, "caught", 0, buildBatch(t, "after"))
	if err != nil {
		t.Fatal(err)
	}
	if e := c.commitOne(ctx, "g", protocol.PartitionOffset{Topic: "caught", Offset: last + 1}); e != nil {
		t.Fatal(e)
	}
	state := waitReplicasAgree(ctx, t, cluster, "caught", 0)
	if state["g"].Offset != last+1 {
		t.Fatalf("replicas agree on %+v, want offset %d", state["g"], last+1)
	}
	for _, other := range others {
		assertSameRecords(t, other, caughtUp, last+1)
	}
}

// replicaOf returns broker id's replica of partition 0 of topic.
func replicaOf(t *testing.T, cluster *DevCluster, id uint64, topic string) *partitionReplica {
	t.Helper()
	b := cluster.Broker(id)
	b.mu.RLock()
	defer b.mu.RUnlock()
	r := b.partitions[topicPartition{topic, 0}]
	if r == nil {
		t.Fatalf("broker %d has no replica of %s/0", id, topic)
	}
	return r
}

// assertSameRecords reads both replicas' logs from the follower's first
// offset up to end (the other replica's log may start earlier) and requires identical records at identical offsets.
func assertSameRecords(t *testing.T, other, follower *partitionReplica, end uint64) {
	t.Helper()
	from := follower.log.FirstOffset()
	if from < other.log.FirstOffset() || from >= end {
		t.Fatalf("follower's log starts at offset %d; the other's at %d, end %d", from, other.log.FirstOffset(), end)
	}
	want, got := readReplica(t, other, from, end), readReplica(t, follower, from, end)
	if uint64(len(want)) != end-from || !reflect.DeepEqual(got, want) {
		t.Fatalf("follower holds %d records from offset %d, the other replica %d (want %d), or they differ",
			len(got), from, len(want), end-from)
	}
}
