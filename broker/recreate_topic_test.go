package broker

import (
	"context"
	"testing"
	"time"
)

// TestTopicRecreatedInOneMetadataStep: a broker that learns of a topic's
// deletion and its creation again under the same name in one metadata
// version (its reconcile reads the newest metadata, so two broadcasts that
// arrive while it is busy come as one) stops the old replica before it
// starts the new one in the same directory, and runs the new one. Before,
// it started the new one first: its log was still locked by the old
// replica, the start failed, and nothing tried again until the next
// metadata change, so the partition ran a replica short.
func TestTopicRecreatedInOneMetadataStep(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cluster, client := startTestCluster(t, 3)
	client.createTopic("again", 1, 3)
	x := cluster.Broker(2)
	waitFor(ctx, t, "broker 2 to run the first replica", func() bool { return localReplica(x, "again") != nil })
	old := localReplica(x, "again")

	m := x.currentMetadata()
	deleted, e := applyCommand(m, m.Version+1, controllerCommand{Op: opDeleteTopic, Topic: "again", Time: time.Now()})
	if e != nil {
		t.Fatal(e)
	}
	created, e := applyCommand(deleted, m.Version+2, controllerCommand{Op: opCreateTopic, Topic: "again", Partitions: 1, Replicas: 3, Time: time.Now()})
	if e != nil {
		t.Fatal(e)
	}
	newGroup := created.Topics["again"].Partitions[0].GroupID
	x.adoptMetadata(created)
	waitFor(ctx, t, "broker 2 to run the new group's replica", func() bool {
		x.mu.RLock()
		defer x.mu.RUnlock()
		return x.groups[newGroup] != nil && x.groups[old.groupID] == nil
	})
	r, err := x.replicaFor("again", 0)
	if err != nil {
		t.Fatalf("replicaFor: %v", err)
	}
	if r.groupID != newGroup {
		t.Fatalf("replicaFor gives group %d, want %d", r.groupID, newGroup)
	}
}
