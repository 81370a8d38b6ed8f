package main

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/raftmq/raftmq/broker"
	"github.com/raftmq/raftmq/transport"
)

// TestClientCommandsAuthenticate: against a NATS system that requires a
// user and password (a broker joined it with --nats-url), client commands
// work with --user and --password (or $RAFTMQ_PASSWORD), and are refused
// without credentials or with a wrong password; inconsistent connection
// flags are refused before any dial. Before, client commands had no way
// to authenticate.
func TestClientCommandsAuthenticate(t *testing.T) {
	srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, NoLog: true, NoSigs: true,
		Users: []*server.User{{Username: "broker", Password: "b-secret"}, {Username: "app", Password: "a-secret"}}})
	if err != nil {
		t.Fatal(err)
	}
	go srv.Start()
	t.Cleanup(srv.Shutdown)
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats server not ready")
	}
	url := srv.ClientURL()

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cfg := broker.DefaultConfig()
	cfg.DataDir = filepath.Join(t.TempDir(), "broker")
	cfg.NATS = broker.NATSConfig{Connect: transport.ConnectConfig{URLs: []string{url}, User: "broker", Password: "b-secret"}}
	cfg.ElectionTimeout, cfg.HeartbeatInterval, cfg.StatusInterval = 300*time.Millisecond, 50*time.Millisecond, 100*time.Millisecond
	b, err := broker.Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		closeCtx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		_ = b.Close(closeCtx)
	})
	deadline := time.Now().Add(30 * time.Second)
	for !b.Ready() {
		if time.Now().After(deadline) {
			t.Fatal("broker not ready")
		}
		time.Sleep(20 * time.Millisecond)
	}

	create := runCLI(t, "", "topic", "create", "secured", "--server", url, "--user", "app", "--password", "a-secret")
	if create.status != exitOK {
		t.Fatalf("topic create with --user/--password: %d %s", create.status, create.stderr)
	}
	t.Setenv("RAFTMQ_PASSWORD", "a-secret")
	produce := runCLI(t, "hello\n", "produce", "secured", "--server", url, "--user", "app", "--json")
	if produce.status != exitOK || !strings.Contains(produce.stdout, `"offset":0`) {
		t.Fatalf("produce with $RAFTMQ_PASSWORD: %d %s %s", produce.status, produce.stdout, produce.stderr)
	}
	consume := runCLI(t, "", "consume", "secured", "--server", url, "--user", "app", "--from", "earliest", "--count", "1")
	if consume.status != exitOK || !strings.Contains(consume.stdout, "hello") {
		t.Fatalf("consume with $RAFTMQ_PASSWORD: %d %s %s", consume.status, consume.stdout, consume.stderr)
	}

	// bench against the existing cluster authenticates the same way.
	bench := runCLI(t, "", "bench", "produce", "--server", url, "--user", "app", "--password", "a-secret",
		"--brokers", "1", "--replicas", "1", "--count", "2000", "--warmup", "0", "--json")
	if bench.status != exitOK || !strings.Contains(bench.stdout, `"records_per_s"`) {
		t.Fatalf("bench produce --server with --user/--password: %d\n%s\n%s", bench.status, bench.stdout, bench.stderr)
	}
	if r := runCLI(t, "", "bench", "produce", "--user", "app", "--count", "10"); r.status == exitOK || !strings.Contains(r.stderr, "are for --server") {
		t.Fatalf("bench with credentials and no --server: %d %s", r.status, r.stderr)
	}

	// $RAFTMQ_TOKEN is used only without other credentials: beside
	// --user it is not sent (the server would refuse the mix).
	t.Setenv("RAFTMQ_TOKEN", "stray")
	if r := runCLI(t, "", "topic", "list", "--server", url, "--user", "app", "--password", "a-secret"); r.status != exitOK {
		t.Fatalf("topic list with --user and a stray $RAFTMQ_TOKEN: %d %s", r.status, r.stderr)
	}
	t.Setenv("RAFTMQ_TOKEN", "")
	t.Setenv("RAFTMQ_PASSWORD", "")
	for _, args := range [][]string{
		{"--user", "app", "--password", "wrong"},
		{},
	} {
		r := runCLI(t, "", append([]string{"topic", "list", "--server", url}, args...)...)
		if r.status == exitOK || !strings.Contains(strings.ToLower(r.stderr), "authorization") {
			t.Errorf("topic list %v: status %d, stderr %q: want an authorization failure", args, r.status, r.stderr)
		}
	}
	for _, args := range [][]string{
		{"--password", "x"},
		{"--tls-cert", "c.pem"},
		{"--user", "app", "--token", "t"},
		{"--creds", "x.creds", "--user", "app"},
	} {
		r := runCLI(t, "", append([]string{"topic", "list", "--server", url}, args...)...)
		if r.status == exitOK || !strings.Contains(r.stderr, "connection flags") {
			t.Errorf("topic list %v: status %d, stderr %q: want the flags refused", args, r.status, r.stderr)
		}
	}
}
