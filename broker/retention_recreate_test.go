package broker

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/raftmq/raftmq/protocol"
)

// TestRetentionOfADeletedTopicLeavesItsSuccessorAlone: a topic deleted and
// created again under the same name gets the same directories. A
// retention run of the old replica, held just before it writes its
// consumer-state snapshot while the topic is deleted and created again,
// must not write that snapshot into the new topic's snapshot directory:
// it finds the replica stopped. Before, the new replica started
// meanwhile and got the deleted topic's snapshot, which its next start
// took as an interrupted snapshot install (the deleted topic's consumer
// groups and offsets appeared in the new topic).
func TestRetentionOfADeletedTopicLeavesItsSuccessorAlone(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const topic = "recreated"
	cluster, client, old := startLeadingTopic(ctx, t, topic, func(c *Config) {
		fastTimings(c)
		c.Log.SegmentMaxBytes = 64 << 10
		c.Retention = RetentionConfig{MaxBytes: 128 << 10, CheckInterval: time.Hour, SnapshotsKept: 2}
	})
	b := cluster.Broker(1)
	c := &leaderClient{testClient: client, leader: 1, nodes: 1, acks: protocol.AcksApplied}
	for range 20 {
		if _, err := c.produce(ctx, topic, 0, buildBatch(t, strings.Repeat("r", 8000))); err != nil {
			t.Fatal(err)
		}
	}

	reached, release := make(chan struct{}), make(chan struct{})
	hook := func(r *partitionReplica) {
		if r == old {
			close(reached)
			<-release
		}
	}
	b.beforeSnapshotCreate.Store(&hook)
	retained := make(chan error, 1)
	go func() {
		_, err := b.applyRetention(old, time.Now())
		retained <- err
	}()
	select {
	case <-reached:
	case err := <-retained:
		t.Fatalf("retention ended (%v) without taking a snapshot", err)
	case <-ctx.Done():
		t.Fatal("retention never reached its snapshot")
	}
	recreated := make(chan struct{})
	go func() {
		defer close(recreated)
		var deleted protocol.DeleteTopicReply
		client.admin(protocol.AdminDeleteTopic, protocol.TopicRequest{Version: 1, Name: topic}, &deleted)
		if deleted.Error != nil {
			t.Errorf("delete topic: %v", deleted.Error)
			return
		}
		client.createTopic(topic, 1, 1)
	}()
	// The new replica may start while the old one's retention is held
	// (it did before); give it a second.
	startedMeanwhile := false
	for deadline := time.Now().Add(time.Second); time.Now().Before(deadline) && !startedMeanwhile; time.Sleep(10 * time.Millisecond) {
		r := localReplica(b, topic)
		startedMeanwhile = r != nil && r != old
	}
	close(release)
	if err := <-retained; err != nil {
		t.Logf("the old replica's retention: %v", err)
	}
	<-recreated
	var fresh *partitionReplica
	waitFor(ctx, t, "the new topic's replica", func() bool {
		fresh = localReplica(b, topic)
		return fresh != nil && fresh != old
	})
	if fresh.dir != old.dir {
		t.Fatalf("the new replica's directory %s is not the old one's %s: the test needs them equal", fresh.dir, old.dir)
	}
	names, err := os.ReadDir(snapshotDir(fresh.dir))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	own := map[string]bool{}
	for _, info := range fresh.snapshots.List() {
		own[filepath.Base(info.Path)] = true
	}
	for _, e := range names {
		if !own[e.Name()] {
			t.Errorf("the deleted topic's retention left %s in the new topic's snapshot directory (new replica started while it ran: %v)", e.Name(), startedMeanwhile)
		}
	}
}
