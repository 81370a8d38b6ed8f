package broker

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/raftmq/raftmq/transport"
)

// TestDropCollectorCountsSlowConsumerDrops: messages NATS drops for a
// subscription over its pending limits show up in
// raftmq_subscription_dropped_messages_total, labelled by subject.
func TestDropCollectorCountsSlowConsumerDrops(t *testing.T) {
	server, err := transport.StartEmbedded(transport.EmbeddedConfig{ClientListen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer server.Shutdown()
	nc, err := nats.Connect(server.ClientURL(), nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {}))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()

	release := make(chan struct{})
	defer close(release)
	handling := make(chan struct{}, 1)
	sub, err := nc.Subscribe("slow", func(*nats.Msg) {
		select {
		case handling <- struct{}{}:
		default:
		}
		<-release
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := sub.SetPendingLimits(2, -1); err != nil {
		t.Fatal(err)
	}
	b := &Broker{subs: []*nats.Subscription{sub}, cfg: Config{ID: 7}, metrics: &brokerMetrics{}}
	registry := prometheus.NewRegistry()
	b.metrics.registerer = registry
	if err := b.registerDropMetrics(); err != nil {
		t.Fatal(err)
	}
	publish := func(n int) {
		t.Helper()
		for range n {
			if err := nc.Publish("slow", []byte("x")); err != nil {
				t.Fatal(err)
			}
		}
		if err := nc.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	publish(1)
	select {
	case <-handling: // the handler holds the first message
	case <-ctx.Done():
		t.Fatal("the handler never got the first message")
	}
	publish(9)
	for {
		// Of the ten messages, those not pending were dropped (NATS counts
		// the one in the handler as pending until the handler returns).
		pending, _, err := sub.Pending()
		if err != nil {
			t.Fatal(err)
		}
		want := float64(10 - pending)
		dropped, err := gatherCounter(registry, "raftmq_subscription_dropped_messages_total", map[string]string{"broker": "7", "subject": "slow"})
		if err != nil {
			t.Fatal(err)
		}
		if pending > 0 && dropped == want {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("dropped messages counted %v, want %v (%d pending)", dropped, want, pending)
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// gatherCounter returns the value of the counter name with exactly labels.
func gatherCounter(g prometheus.Gatherer, name string, labels map[string]string) (float64, error) {
	families, err := g.Gather()
	if err != nil {
		return 0, err
	}
	for _, family := range families {
		if family.GetName() != name {
			continue
		}
	metrics:
		for _, metric := range family.GetMetric() {
			if len(metric.GetLabel()) != len(labels) {
				continue
			}
			for _, label := range metric.GetLabel() {
				if labels[label.GetName()] != label.GetValue() {
					continue metrics
				}
			}
			return metric.GetCounter().GetValue(), nil
		}
	}
	return 0, fmt.Errorf("no counter %s%v", name, labels)
}
