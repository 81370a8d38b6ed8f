package broker

import (
	"context"
	"encoding/json"
	"math"
	"testing"
	"time"

	"github.com/raftmq/raftmq/protocol"
	"github.com/raftmq/raftmq/raft"
)

func caughtUpControllerLeader(ctx context.Context, t *testing.T, cluster *DevCluster, n int) *Broker {
	t.Helper()
	var leader *Broker
	waitFor(ctx, t, "a caught-up controller leader", func() bool {
		for id := uint64(1); id <= uint64(n); id++ {
			if b := cluster.Broker(id); b != nil && b.controllerCaughtUp() {
				leader = b
				return true
			}
		}
		return false
	})
	return leader
}

// TestCreateOfATopicDeletedBeforeTheReplyFails: a create whose topic a
// delete committed right behind it removes before the create's proposal
// resolves (both applied in one pass) answers unknown_topic. Before, the
// create's wait for leaders read the missing topic: a nil-pointer panic on
// the admin request's goroutine, which took the controller leader's
// process down.
func TestCreateOfATopicDeletedBeforeTheReplyFails(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cluster, _ := startTestCluster(t, 3)
	leader := caughtUpControllerLeader(ctx, t, cluster, 3)
	c := leader.controller

	// Hold the controller's apply loop inside the Apply of a dummy entry,
	// so the create and the delete that follow are queued and applied in
	// one pass before the create's proposal resolves.
	c.state.mu.Lock()
	locked := true
	defer func() {
		if locked {
			c.state.mu.Unlock()
		}
	}()
	dummy, _ := json.Marshal(controllerCommand{Op: opRegisterBroker, Broker: 1, Time: time.Now()})
	if _, _, err := c.group.Propose(ctx, protocol.EntryControl, dummy, raft.AckCommitted).Wait(ctx); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // the apply loop takes the dummy and blocks on mu
	base := c.group.Status().LastIndex

	panicked := make(chan any, 1)
	var reply protocol.TopicReply
	go func() {
		defer func() { panicked <- recover() }()
		data, _ := json.Marshal(protocol.CreateTopicRequest{Version: 1, Name: "racy", Partitions: 1, Replicas: 3})
		reply = leader.createTopic(ctx, data)
	}()
	waitFor(ctx, t, "the create to be committed", func() bool { return c.group.Status().CommitIndex >= base+1 })
	del, _ := json.Marshal(controllerCommand{Op: opDeleteTopic, Topic: "racy", Time: time.Now()})
	delProposal := c.group.Propose(ctx, protocol.EntryControl, del, raft.AckApplied)
	waitFor(ctx, t, "the delete to be committed", func() bool { return c.group.Status().CommitIndex >= base+2 })
	c.state.mu.Unlock()
	locked = false
	if _, _, err := delProposal.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case p := <-panicked:
		if p != nil {
			t.Fatalf("createTopic panicked (on an admin goroutine this takes the broker down): %v", p)
		}
	case <-ctx.Done():
		t.Fatal("create did not return")
	}
	// The apply loop normally takes both entries in one pass; if it took
	// the create alone, the create succeeded before the delete.
	if reply.Error != nil && reply.Error.Code != protocol.CodeUnknownTopic || reply.Error == nil && reply.Topic == nil {
		t.Fatalf("create reply: %+v", reply)
	}
}

// TestTopicRetentionBeyondADurationIsNoLimit: a topic's retention.ms past
// what a time.Duration holds (Kafka users write Long.MAX_VALUE for
// "forever") means no age limit. Before, the product overflowed: 585 years
// became a max age of 448 µs, and retention deleted every sealed segment.
func TestTopicRetentionBeyondADurationIsNoLimit(t *testing.T) {
	for _, ms := range []int64{18446744073710, math.MaxInt64, maxRetentionMs + 1, -1} {
		m := newClusterMetadata([]uint64{1})
		next, err := applyCommand(m, 1, controllerCommand{Op: opCreateTopic, Topic: "t", Partitions: 1, Replicas: 1, RetentionMs: ms, Time: time.Now()})
		if err != nil {
			t.Fatal(err)
		}
		b := &Broker{metadata: next}
		b.cfg.Retention = DefaultRetentionConfig()
		if p := b.retentionPolicy("t"); p.MaxAge != 0 {
			t.Errorf("retention_ms %d gives max age %v, want no limit", ms, p.MaxAge)
		}
	}
	m := newClusterMetadata([]uint64{1})
	next, _ := applyCommand(m, 1, controllerCommand{Op: opCreateTopic, Topic: "t", Partitions: 1, Replicas: 1, RetentionMs: maxRetentionMs, Time: time.Now()})
	b := &Broker{metadata: next}
	if p := b.retentionPolicy("t"); p.MaxAge != time.Duration(maxRetentionMs)*time.Millisecond || p.MaxAge <= 0 {
		t.Errorf("retention_ms %d gives max age %v", maxRetentionMs, p.MaxAge)
	}
}
