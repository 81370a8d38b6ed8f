package broker

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/raftmq/raftmq/protocol"
	"github.com/raftmq/raftmq/transport"
)

// singleBrokerConfig is the `raftmq serve` shape with fast timings: one
// broker, its own embedded NATS server, metrics over HTTP, on loopback.
func singleBrokerConfig(t *testing.T) Config {
	t.Helper()
	cfg := DefaultConfig()
	fastTimings(&cfg)
	cfg.DataDir = t.TempDir()
	cfg.NATS.Embedded = &transport.EmbeddedConfig{ClientListen: "127.0.0.1:0"}
	cfg.MetricsAddr = "127.0.0.1:0"
	cfg.Registerer = prometheus.NewRegistry()
	return cfg
}

// TestSingleBrokerWithEmbeddedNATS runs the `raftmq serve` shape: one
// broker, its own embedded NATS server, metrics over HTTP.
func TestSingleBrokerWithEmbeddedNATS(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cfg := singleBrokerConfig(t)
	b, err := Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close(context.Background())
	get := func(path string) (int, string) {
		t.Helper()
		resp, err := http.Get("http://" + b.HTTPAddr() + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	if code, _ := get("/healthz"); code != http.StatusOK {
		t.Fatalf("/healthz %d", code)
	}
	for !b.Ready() {
		select {
		case <-ctx.Done():
			t.Fatal("broker never became ready")
		case <-time.After(10 * time.Millisecond):
		}
	}
	if code, _ := get("/readyz"); code != http.StatusOK {
		t.Fatalf("/readyz %d once ready", code)
	}

	nc, err := nats.Connect(b.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	client := &testClient{t: t, nc: nc, prefix: protocol.DefaultSubjectPrefix}
	topic := client.createTopic("solo", 0, 0)
	if len(topic.Partitions) != 1 || len(topic.Partitions[0].Replicas) != 1 || topic.Partitions[0].Leader != 1 {
		t.Fatalf("defaults: %+v", topic)
	}
	for i := 0; i < 3; i++ {
		msg, err := nc.Request(protocol.SubjectProduce(client.prefix, "solo"), []byte("hello"), 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		var reply protocol.PublishReply
		if err := json.Unmarshal(msg.Data, &reply); err != nil || reply.Error != nil || reply.Offset != uint64(i) {
			t.Fatalf("publish %d: %s %v", i, msg.Data, err)
		}
	}
	_, metrics := get("/metrics")
	for _, want := range []string{
		`raftmq_produce_requests_total{broker="1",result="ok"} 3`,
		`raftmq_produce_records_total{broker="1"} 3`,
		`raftmq_partition_leader{broker="1",partition="0",topic="solo"} 1`,
		`raftmq_partition_high_watermark{broker="1",partition="0",topic="solo"}`,
		`raftmq_partition_segments{broker="1",partition="0",topic="solo"}`,
		`raftmq_controller_leader{broker="1"} 1`,
		`raftmq_log_sync_latency_seconds_count{broker="1"}`,
		`raftmq_produce_latency_seconds_bucket{broker="1"`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}

	if err := b.Close(ctx); err != nil {
		t.Fatalf("close: %v", err)
	}
	if b.Ready() {
		t.Fatal("closed broker reports ready")
	}
	// The data directory is free again: a new broker opens it and finds the topic.
	cfg.MetricsAddr = ""
	cfg.Registerer = nil
	again, err := Start(ctx, cfg)
	if err != nil {
		t.Fatalf("restart on the same directory: %v", err)
	}
	defer again.Close(context.Background())
	nc2, err := nats.Connect(again.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc2.Close()
	msg, err := nc2.Request(protocol.SubjectProduce(client.prefix, "solo"), []byte("again"), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var reply protocol.PublishReply
	if err := json.Unmarshal(msg.Data, &reply); err != nil || reply.Error != nil || reply.Offset != 3 {
		t.Fatalf("publish after restart: %s %v", msg.Data, err)
	}
}

// TestReadyzSaysWhyNotReady: a broker that cannot get cluster metadata
// (here the only running one of two bootstrap brokers, so its controller
// has no quorum) answers /readyz with 503 and the reason; before, the body
// was only "not ready".
func TestReadyzSaysWhyNotReady(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cfg := singleBrokerConfig(t)
	cfg.Bootstrap = []uint64{1, 2}
	b, err := Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close(context.Background())
	resp, err := http.Get("http://" + b.HTTPAddr() + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), "no cluster metadata yet") {
		t.Fatalf("/readyz: %d %q, want 503 saying there is no cluster metadata yet", resp.StatusCode, body)
	}
}
