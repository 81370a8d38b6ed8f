package broker

import (
	"context"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/raftmq/raftmq/protocol"
)

// TestTopicsDeletedWhileABrokerWasDownAreRemovedWhenItReturns: broker 3 is
// down while two topics are deleted and one is created again under the same
// name. When it comes back it drops the old groups' data, says so in its
// log, and holds only the new topic's records.
func TestTopicsDeletedWhileABrokerWasDownAreRemovedWhenItReturns(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	logs := newLogRecorder()
	cluster, client := startTestClusterWith(t, 3, func(c *Config) {
		fastTimings(c)
		c.Logger = slog.New(logs)
	})
	old := client.createTopic("gone", 1, 3)
	client.createTopic("gone2", 1, 3)
	producer := &leaderClient{testClient: client, leader: 1, nodes: 3, acks: protocol.AcksApplied}
	for _, v := range []string{"old0", "old1", "old2"} {
		if _, err := producer.produce(ctx, "gone", 0, buildBatch(t, v)); err != nil {
			t.Fatal(err)
		}
	}
	x := cluster.Broker(3)
	waitFor(ctx, t, "broker 3 to apply the old records", func() bool {
		r := localReplica(x, "gone")
		return r != nil && r.group.Status().AppliedIndex >= 4
	})
	oldDir := x.replicaDir("gone", 0)
	gone2Dir := x.replicaDir("gone2", 0)
	if err := cluster.StopBroker(ctx, 3); err != nil {
		t.Fatal(err)
	}
	var del protocol.DeleteTopicReply
	client.admin(protocol.AdminDeleteTopic, protocol.TopicRequest{Name: "gone"}, &del)
	if del.Error != nil {
		t.Fatal(del.Error)
	}
	client.admin(protocol.AdminDeleteTopic, protocol.TopicRequest{Name: "gone2"}, &del)
	if del.Error != nil {
		t.Fatal(del.Error)
	}
	var created protocol.TopicReply
	client.admin(protocol.AdminCreateTopic, protocol.CreateTopicRequest{Version: 1, Name: "gone", Partitions: 1, Replicas: 3}, &created)
	if created.Error != nil {
		t.Fatal(created.Error)
	}
	newGroup := created.Topic.Partitions[0].GroupID
	if newGroup == old.Partitions[0].GroupID {
		t.Fatal("group reused")
	}
	producer.nodes = 2
	producer.leader = 1
	if _, err := producer.produce(ctx, "gone", 0, buildBatch(t, "new0")); err != nil {
		t.Fatal(err)
	}
	if err := cluster.StartBroker(ctx, 3); err != nil {
		t.Fatal(err)
	}
	x = cluster.Broker(3)
	waitFor(ctx, t, "broker 3 to run the new group and apply its record", func() bool {
		r := localReplica(x, "gone")
		return r != nil && r.groupID == newGroup && r.group.Status().AppliedIndex >= 2 && r.group.Status().AppliedIndex == r.group.Status().CommitIndex
	})
	if _, err := os.Stat(gone2Dir); !os.IsNotExist(err) {
		t.Errorf("deleted topic gone2's directory %s still on broker 3 (%v)", gone2Dir, err)
	}
	if _, err := os.Stat(snapshotDir(gone2Dir)); !os.IsNotExist(err) {
		t.Errorf("deleted topic gone2's snapshot directory still on broker 3 (%v)", err)
	}
	recorded, err := x.store.replicaGroups()
	if err != nil {
		t.Fatal(err)
	}
	for id, dir := range recorded {
		if id != newGroup {
			t.Errorf("broker 3 still records group %d at %s", id, dir)
		}
	}
	r := localReplica(x, "gone")
	batches, _, err := r.log.ReadBatches(nil, 0, r.log.LastIndex(), 1<<20)
	if err != nil {
		t.Fatalf("read: %v (dir %s)", err, oldDir)
	}
	for _, rec := range decodeFetched(t, batches) {
		if rec.value != "new0" {
			t.Errorf("broker 3's replica of the new topic holds %q at %d", rec.value, rec.offset)
		}
	}
	if n := len(logs.logged(removedAtStartMessage)); n < 2 {
		t.Errorf("%q logged %d times, want once for each deleted topic's replica at least", removedAtStartMessage, n)
	}
}
