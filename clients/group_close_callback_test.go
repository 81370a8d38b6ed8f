package clients

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/raftmq/raftmq/protocol"
)

// startCloseMember serves one member of group g owning t/0 (heartbeats
// answered after onHeartbeat, committed offset 10) under prefix and
// returns the fake cluster, a context and a client.
func startCloseMember(t *testing.T, prefix string, onHeartbeat func(protocol.HeartbeatRequest) bool) (*fakeCluster, context.Context, *Client) {
	fake := startFakeCluster(t)
	fake.serveQuietPartition(prefix)
	assignment := protocol.HeartbeatReply{Version: protocol.APIVersion, Assigned: []protocol.GroupPartition{{Topic: "t", Partition: 0, Epoch: 1}},
		Revoke: []protocol.GroupPartition{}, HeartbeatIntervalMs: 50}
	fake.serveGroupMember(prefix, assignment, onHeartbeat)
	fake.subscribe(protocol.SubjectBrokerCommitted(prefix, 1), func(m *nats.Msg) {
		fake.respondJSON(m, protocol.OffsetFetchReply{Version: protocol.APIVersion, Partitions: []protocol.CommittedOffset{
			{Topic: "t", Partition: 0, Committed: true, Offset: 10, HighWatermark: 30}}})
	})
	ctx, client := connectUnderPrefix(t, fake, prefix, WithRequestTimeout(5*time.Second))
	return fake, ctx, client
}

// A Close from a callback while another Close runs returns at once: the
// first Close waits for the member's goroutine, which runs the callback,
// so waiting for the first would never end.
func TestGroupCloseFromACallbackWhileAnotherCloseRuns(t *testing.T) {
	_, ctx, client := startCloseMember(t, "closecallback", func(protocol.HeartbeatRequest) bool { return true })
	var member *GroupConsumer
	created, entered, closed := make(chan struct{}), make(chan struct{}), make(chan struct{})
	var callbackErr error
	var callbackTook time.Duration
	m, err := client.NewGroupConsumer(ctx, "g", []string{"t"}, WithAutoCommitInterval(0), WithCommitOnClose(false),
		WithOnAssigned(func(context.Context, []TopicPartition) {
			<-created
			close(entered)
			waitUntil(t, "the first Close to start", func() bool {
				member.mu.Lock()
				defer member.mu.Unlock()
				return member.closed
			})
			closeCtx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			defer cancel()
			start := time.Now()
			callbackErr = member.Close(closeCtx)
			callbackTook = time.Since(start)
			close(closed)
		}))
	if err != nil {
		t.Fatal(err)
	}
	member = m
	close(created)
	<-entered
	first := make(chan error, 1)
	go func() { first <- member.Close(ctx) }()
	<-closed
	if err := <-first; err != nil {
		t.Logf("first Close: %v", err)
	}
	if callbackErr != nil || callbackTook > time.Second {
		t.Fatalf("Close from OnAssigned while another Close ran: %v after %v, want nil at once", callbackErr, callbackTook.Round(time.Millisecond))
	}
}

// Close heartbeats while it commits only until its own context ends: a
// commit held up past it (here behind an application commit at a leader
// that does not answer) must not keep the member's partitions from moving.
func TestGroupCloseStopsHeartbeatingWhenItsContextEnds(t *testing.T) {
	var mu sync.Mutex
	var heartbeats []time.Time
	fake, ctx, client := startCloseMember(t, "closeheartbeat", func(protocol.HeartbeatRequest) bool {
		mu.Lock()
		heartbeats = append(heartbeats, time.Now())
		mu.Unlock()
		return true
	})
	commits := make(chan *nats.Msg, 8)
	fake.subscribe(protocol.SubjectBrokerCommit("closeheartbeat", 1), func(m *nats.Msg) { commits <- m })
	member, err := client.NewGroupConsumer(ctx, "g", []string{"t"}, WithAutoCommitInterval(0))
	if err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "t/0 assigned", func() bool { return len(member.Assigned()) == 1 })
	appCtx, appCancel := context.WithTimeout(context.Background(), 4*time.Second)
	defer appCancel()
	go func() { _ = member.CommitOffsets(appCtx, map[TopicPartition]uint64{{"t", 0}: 20}) }()
	<-commits
	closeCtx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	err = member.Close(closeCtx)
	mu.Lock()
	late := 0
	for _, at := range heartbeats {
		if at.After(start.Add(400 * time.Millisecond)) {
			late++
		}
	}
	mu.Unlock()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Close behind a commit that never ends: %v, want its context's deadline", err)
	}
	if late > 0 {
		t.Fatalf("Close heartbeated %d times after its 300 ms context ended", late)
	}
}
