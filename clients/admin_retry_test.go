package clients

import (
	"context"
	"encoding/json"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/raftmq/raftmq/protocol"
)

// TestReadOnlyAdminRequestsAreSentAgainOnTimeout: an admin request that
// changes nothing (a topic list, say) is sent again when no reply comes
// within its attempt's share of the request timeout, as when it reached a
// broker that stopped answering; one that changes something (a topic
// create) is not, since the first may have taken effect. Before, the
// topic list failed after the whole timeout.
func TestReadOnlyAdminRequestsAreSentAgainOnTimeout(t *testing.T) {
	fake := startFakeCluster(t)
	// The brokers under this prefix ignore every other request, as a
	// queue group with a frozen member loses its share.
	const prefix = "flaky"
	var seen atomic.Int64
	var creates atomic.Int64
	ctx, client := connectToAdminResponder(t, fake, prefix, func(m *nats.Msg) {
		if m.Subject == protocol.SubjectAdmin(prefix, protocol.AdminCreateTopic) {
			creates.Add(1)
		}
		if seen.Add(1)%2 == 1 {
			return
		}
		respondOneTopic(m)
	})

	start := time.Now()
	topics, err := client.ListTopics(ctx)
	if err != nil || len(topics) != 1 || topics[0].Name != "orders" {
		t.Fatalf("topic list: %v, %v", topics, err)
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Fatalf("topic list took %v: the second attempt should follow the first's 1s", took)
	}

	seen.Store(0) // the create is the next request, ignored
	_, err = client.CreateTopic(ctx, "orders")
	var apiErr *protocol.Error
	if !errors.As(err, &apiErr) || apiErr.Code != protocol.CodeTimeout {
		t.Fatalf("create whose request went unanswered: %v, want a timeout", err)
	}
	if n := creates.Load(); n != 1 {
		t.Fatalf("the create was sent %d times, want once", n)
	}
}

// TestReadOnlyAdminRequestsKeepEarlierAttemptsOpen: a broker that answers
// a request that changes nothing after longer than an attempt's share of
// the request timeout (as one with no controller leader answers a cluster
// status from its own view only after several election timeouts) still
// has its reply taken, since sending again keeps the earlier attempts
// open. Before, each attempt was abandoned when the next went out, and the
// request failed after the whole timeout although every broker answered.
func TestReadOnlyAdminRequestsKeepEarlierAttemptsOpen(t *testing.T) {
	fake := startFakeCluster(t)
	const prefix = "slow"
	const answerAfter = 1500 * time.Millisecond // past the 1 s per attempt
	var seen atomic.Int64
	ctx, client := connectToAdminResponder(t, fake, prefix, func(m *nats.Msg) {
		seen.Add(1)
		go func() {
			time.Sleep(answerAfter)
			respondOneTopic(m)
		}()
	})

	start := time.Now()
	topics, err := client.ListTopics(ctx)
	if err != nil || len(topics) != 1 || topics[0].Name != "orders" {
		t.Fatalf("topic list from a slow broker, after %v: %v, %v", time.Since(start), topics, err)
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Fatalf("topic list took %v: the first attempt's reply comes after %v", took, answerAfter)
	}
	if n := seen.Load(); n != 2 {
		t.Fatalf("the broker saw %d requests, want 2 (the first, and the one sent again after 1 s)", n)
	}
}

// connectToAdminResponder answers the admin requests under prefix with
// handle and returns a client using that prefix with a 4 s request timeout.
func connectToAdminResponder(t *testing.T, fake *fakeCluster, prefix string, handle nats.MsgHandler) (context.Context, *Client) {
	t.Helper()
	sub, err := fake.conn.QueueSubscribe(protocol.SubjectAdmin(prefix, ">"), protocol.APIQueue, handle)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	return connectUnderPrefix(t, fake, prefix, WithRequestTimeout(4*time.Second))
}

// respondOneTopic answers a topic list with the topic "orders".
func respondOneTopic(m *nats.Msg) {
	data, _ := json.Marshal(protocol.ListTopicsReply{Version: protocol.APIVersion, Topics: []protocol.TopicInfo{{Name: "orders"}}})
	_ = m.Respond(data)
}
