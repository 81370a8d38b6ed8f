package clients

import (
	"context"
	"encoding/json"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/raftmq/raftmq/protocol"
)

// TestGroupHeartbeatsContinueWhileACommitIsSlowAndCommitsStayInOrder: on a
// loaded cluster an offset commit can take longer than the session
// timeout. The member must keep heartbeating meanwhile (a commit on the
// heartbeat loop let the coordinator expire a live member and give its
// partitions to another while it still consumed them), and a commit made
// while another is in flight must reach the leader after it, with the
// newer offset (two commits in flight could land newest first and wind
// the group's offset back). Auto-commit commits only records returned by
// Poll calls before the latest one.
func TestGroupHeartbeatsContinueWhileACommitIsSlowAndCommitsStayInOrder(t *testing.T) {
	const interval = 100 * time.Millisecond
	const prefix = "committest"
	fake := startFakeCluster(t)
	// The member owns t/0 (epoch 1) from the start; its committed offset
	// is 10; fetches go unanswered (the test plays Poll itself).
	assignment := protocol.HeartbeatReply{Version: protocol.APIVersion, Assigned: []protocol.GroupPartition{{Topic: "t", Partition: 0, Epoch: 1}},
		Revoke: []protocol.GroupPartition{}, HeartbeatIntervalMs: interval.Milliseconds()}
	var mu sync.Mutex
	var heartbeats []time.Time
	fake.serveGroupMember(prefix, assignment, func(protocol.HeartbeatRequest) bool {
		mu.Lock()
		heartbeats = append(heartbeats, time.Now())
		mu.Unlock()
		return true
	})
	fake.subscribe(protocol.SubjectBrokerCommitted(prefix, 1), func(m *nats.Msg) {
		fake.respondJSON(m, protocol.OffsetFetchReply{Version: protocol.APIVersion, Partitions: []protocol.CommittedOffset{{Topic: "t", Partition: 0, Committed: true, Offset: 10, HighWatermark: 30}}})
	})
	fake.serveQuietPartition(prefix)
	// The leader holds the first commit until released; every commit's
	// offset is recorded in arrival order.
	release := make(chan struct{})
	var offsets []uint64
	fake.subscribe(protocol.SubjectBrokerCommit(prefix, 1), func(m *nats.Msg) {
		var req protocol.OffsetCommitRequest
		if err := json.Unmarshal(m.Data, &req); err != nil || len(req.Offsets) != 1 {
			t.Errorf("commit request %s: %v", m.Data, err)
			return
		}
		mu.Lock()
		offsets = append(offsets, req.Offsets[0].Offset)
		first := len(offsets) == 1
		mu.Unlock()
		go func() {
			if first {
				<-release
			}
			fake.respondJSON(m, protocol.OffsetCommitReply{Version: protocol.APIVersion, Results: []protocol.PartitionResult{{Topic: "t", Partition: 0}}})
		}()
	})
	ctx, client := connectUnderPrefix(t, fake, prefix, WithRequestTimeout(10*time.Second))
	// The session timeout is long: a member whose heartbeats went
	// unanswered that long drops its partitions (and their positions), and
	// on a loaded machine the fake's answers can be late. What is checked
	// is that heartbeats go on while a commit is in flight.
	member, err := client.NewGroupConsumer(ctx, "g", []string{"t"}, WithSessionTimeout(50*interval),
		WithAutoCommitInterval(20*time.Millisecond), WithCommitOnClose(false))
	if err != nil {
		t.Fatal(err)
	}
	defer member.Close(ctx)
	waitUntil := func(what string, cond func() bool) {
		t.Helper()
		for !cond() {
			select {
			case <-ctx.Done():
				t.Fatalf("waiting for %s", what)
			case <-time.After(5 * time.Millisecond):
			}
		}
	}
	tp := TopicPartition{"t", 0}
	waitUntil("t/0 assigned", func() bool { return len(member.Assigned()) == 1 })
	// As if Poll had returned records up to offset 15 and been called
	// again: the auto-commit of 15 is then held by the leader.
	member.mu.Lock()
	member.positions[tp], member.processed[tp] = 15, 15
	member.mu.Unlock()
	waitUntil("the first commit", func() bool { mu.Lock(); defer mu.Unlock(); return len(offsets) == 1 })
	held := time.Now()
	// Heartbeats go on for more than a session timeout (five intervals)
	// while it is held: it is held until released, so this waits on the
	// count alone (a member that stops heartbeating never gets there).
	waitUntil("five heartbeats while a commit is held", func() bool {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, at := range heartbeats {
			if at.After(held) {
				n++
			}
		}
		return n >= 5
	})
	// A newer position and an explicit Commit while the first is held: it
	// must wait for the first and then send the newer offset.
	member.mu.Lock()
	member.positions[tp] = 20
	member.mu.Unlock()
	committed := make(chan error, 1)
	go func() { committed <- member.Commit(ctx) }()
	select {
	case err := <-committed:
		t.Fatalf("Commit returned (%v) while an older commit was still in flight", err)
	case <-time.After(100 * time.Millisecond):
	}
	close(release)
	if err := <-committed; err != nil {
		t.Fatal(err)
	}

	// The latest Poll returned records up to 30: auto-commit leaves them
	// alone (the application may still be processing them) until Poll is
	// called again.
	member.mu.Lock()
	member.positions[tp] = 30
	member.mu.Unlock()
	observe := time.Now()
	for time.Since(observe) < 10*20*time.Millisecond { // ten auto-commit intervals
		time.Sleep(5 * time.Millisecond) // observing that nothing happens
		mu.Lock()
		n := len(offsets)
		mu.Unlock()
		if n != 2 {
			t.Fatalf("auto-commit committed records of the latest Poll: commits %v", offsets)
		}
	}
	pollCtx, pollCancel := context.WithTimeout(ctx, 10*time.Millisecond)
	_, _ = member.Poll(pollCtx) // nothing to fetch; says the application is done
	pollCancel()
	waitUntil("the auto-commit of 30", func() bool { mu.Lock(); defer mu.Unlock(); return len(offsets) == 3 })
	if err := member.Close(ctx); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(offsets, []uint64{15, 20, 30}) {
		t.Fatalf("commits %v: want 15, then 20 (after the held 15), then 30 (after the next Poll)", offsets)
	}
}
