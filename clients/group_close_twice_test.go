package clients

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/raftmq/raftmq/protocol"
)

// TestGroupSecondCloseWaitsForTheFirst: a Close called while another runs
// (a signal handler and the poll loop's deferred Close, say) must not
// report the member closed before the first has committed and left the
// group: its caller may exit then, and the leave never happens. Here the
// coordinator holds the first Close's leave request; the second Close,
// whose context has ended, must return that context's error. Before, it
// returned nil at once.
func TestGroupSecondCloseWaitsForTheFirst(t *testing.T) {
	const prefix = "groupclosetwice"
	fake := startFakeCluster(t)
	fake.serveQuietPartition(prefix)
	empty := protocol.HeartbeatReply{Version: protocol.APIVersion, Assigned: []protocol.GroupPartition{}, Revoke: []protocol.GroupPartition{}, HeartbeatIntervalMs: 50}
	for _, op := range []string{protocol.AdminGroupJoin, protocol.AdminGroupHeartbeat} {
		fake.subscribe(protocol.SubjectAdmin(prefix, op), func(m *nats.Msg) { fake.respondJSON(m, empty) })
	}
	leaves := make(chan *nats.Msg, 4)
	fake.subscribe(protocol.SubjectAdmin(prefix, protocol.AdminGroupLeave), func(m *nats.Msg) { leaves <- m })
	ctx, client := connectUnderPrefix(t, fake, prefix, WithRequestTimeout(10*time.Second))
	member, err := client.NewGroupConsumer(ctx, "g", []string{"t"})
	if err != nil {
		t.Fatal(err)
	}
	firstClosed := make(chan error, 1)
	go func() { firstClosed <- member.Close(ctx) }()
	var leave *nats.Msg
	select {
	case leave = <-leaves:
	case <-ctx.Done():
		t.Fatal("the first Close sent no leave request")
	}
	ended, cancel := context.WithCancel(context.Background())
	cancel()
	if err := member.Close(ended); !errors.Is(err, context.Canceled) {
		t.Fatalf("a second Close while the first waits for its leave: %v, want its context's error", err)
	}
	fake.respondJSON(leave, protocol.DeleteGroupReply{Version: protocol.APIVersion})
	select {
	case err := <-firstClosed:
		if err != nil {
			t.Fatalf("the first Close: %v", err)
		}
	case <-ctx.Done():
		t.Fatal("the first Close did not return once its leave was answered")
	}
	if err := member.Close(ended); err != nil {
		t.Fatalf("a Close after the first returned: %v", err)
	}
}
