package broker

import (
	"bytes"
	"context"
	"runtime"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/raftmq/raftmq/protocol"
)

// TestShutdownAnswersReceivedRequests queues requests in a broker's
// subscription (its handler is held up, so NATS has delivered them to the
// broker's client but the broker has not read them) and closes the broker:
// every request gets an answer (a status or a shutting-down error), none
// is dropped to time out at its requester.
func TestShutdownAnswersReceivedRequests(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cluster, err := StartDev(ctx, DevConfig{
		Nodes: 1, DataDir: t.TempDir(), ClientListen: "127.0.0.1:0", Registerer: prometheus.NewRegistry(),
		Configure: fastTimings,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close(context.Background())
	if err := cluster.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	b := cluster.Broker(1)
	subject := protocol.SubjectBrokerStatus(b.prefix, b.cfg.ID)
	var statusSub *nats.Subscription
	for _, sub := range b.subs {
		if sub.Subject == subject {
			statusSub = sub
		}
	}
	if statusSub == nil {
		t.Fatalf("no subscription on %s", subject)
	}

	nc, err := nats.Connect(cluster.ClientURLs()[0])
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	const requests = 20000
	replies := make(chan *nats.Msg, requests)
	inbox := nats.NewInbox()
	sub, err := nc.ChanSubscribe(inbox, replies)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()

	// The status handler takes the broker's lock for reading: while the
	// test holds it for writing, the requests pile up in the subscription.
	b.mu.Lock()
	locked := true
	defer func() {
		if locked {
			b.mu.Unlock()
		}
	}()
	for range requests {
		if err := nc.PublishRequest(subject, inbox, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := nc.FlushWithContext(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(ctx, t, "the requests to queue in the broker's subscription", func() bool {
		n, _, err := statusSub.Pending()
		return err == nil && n >= requests-1
	})
	closed := make(chan error, 1)
	go func() { closed <- b.Close(ctx) }()
	// Let Close take the lock before the held-up handler gets it back.
	waitFor(ctx, t, "Close to wait for the broker's lock", func() bool {
		buf := make([]byte, 4<<20)
		for _, g := range bytes.Split(buf[:runtime.Stack(buf, true)], []byte("\n\n")) {
			if bytes.Contains(g, []byte("(*Broker).shutdown")) && bytes.Contains(g, []byte("(*RWMutex).Lock")) {
				return true
			}
		}
		return false
	})
	b.mu.Unlock()
	locked = false

	got := 0
	for got < requests {
		select {
		case msg := <-replies:
			if len(msg.Data) == 0 {
				t.Fatalf("empty reply (no responders?) after %d answers", got)
			}
			got++
		case <-time.After(10 * time.Second):
			t.Fatalf("%d of %d requests received before shutdown were answered", got, requests)
		}
	}
	if err := <-closed; err != nil {
		t.Fatalf("close: %v", err)
	}
}
