package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/raftmq/raftmq/broker"
	"github.com/raftmq/raftmq/transport"
)

// startNATSServer runs a NATS server on 127.0.0.1 that requires one of
// users and returns its client URL.
func startNATSServer(t *testing.T, users ...*server.User) string {
	t.Helper()
	srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, NoLog: true, NoSigs: true, Users: users})
	if err != nil {
		t.Fatal(err)
	}
	go srv.Start()
	t.Cleanup(srv.Shutdown)
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats server not ready")
	}
	return srv.ClientURL()
}

// TestClientCommandsAuthenticate: against a NATS system that requires a
// user and password (a broker joined it with --nats-url), client commands
// work with --user and --password (or $RAFTMQ_PASSWORD), and are refused
// without credentials or with a wrong password; inconsistent connection
// flags are refused before any dial. Before, client commands had no way
// to authenticate.
func TestClientCommandsAuthenticate(t *testing.T) {
	url := startNATSServer(t, &server.User{Username: "broker", Password: "b-secret"}, &server.User{Username: "app", Password: "a-secret"})

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

// TestServeNATSSecretFiles: raftmq serve --nats-url reads its NATS
// password from --nats-password-file and its token from --nats-token-file
// (without the trailing newline), so neither shows in ps; giving a secret
// and its file, or a file without --nats-url, is refused. Before, the
// password and token could only be given on the command line.
func TestServeNATSSecretFiles(t *testing.T) {
	url := startNATSServer(t, &server.User{Username: "broker", Password: "b-secret"})
	dir := t.TempDir()
	passwordFile, tokenFile := filepath.Join(dir, "nats-password"), filepath.Join(dir, "nats-token")
	if err := os.WriteFile(passwordFile, []byte("b-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(tokenFile, []byte("t-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	_, stderr, stop := startCommand(t, "serve", "--data", filepath.Join(dir, "data"), "--nats-url", url,
		"--nats-user", "broker", "--nats-password-file", passwordFile, "--log-level", "warn")
	if r := waitFor(t, url, "topic", "create", "secret-file", "--user", "broker", "--password", "b-secret"); r.status != exitOK {
		t.Fatalf("topic create against serve --nats-password-file: %d %s\nserve stderr: %s", r.status, r.stderr, stderr.String())
	}
	stop()

	// The token file, named in a --config file this time.
	configFile := filepath.Join(dir, "raftmq.json")
	if err := os.WriteFile(configFile, []byte(`{"nats_url":"`+url+`","nats_token_file":"`+tokenFile+`"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	options := defaultServeOptions()
	if err := readServeConfig(configFile, &options); err != nil {
		t.Fatal(err)
	}
	if config, err := options.brokerConfig(nil); err != nil || config.NATS.Connect.Token != "t-secret" {
		t.Errorf("nats_token_file: token %q, error %v; want the file's token without its newline", config.NATS.Connect.Token, err)
	}

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--nats-url", url, "--nats-user", "broker", "--nats-password", "b-secret", "--nats-password-file", passwordFile},
			"--nats-password and --nats-password-file are alternatives: give one"},
		{[]string{"--nats-url", url, "--nats-token", "t-secret", "--nats-token-file", tokenFile},
			"--nats-token and --nats-token-file are alternatives: give one"},
		{[]string{"--nats-url", url, "--nats-token-file", filepath.Join(dir, "missing")}, "--nats-token-file"},
		{[]string{"--nats-password-file", passwordFile}, "are for --nats-url"},
		{[]string{"--nats-token-file", tokenFile}, "are for --nats-url"},
	} {
		args := append([]string{"serve", "--data", filepath.Join(dir, "refused"), "--nats-listen", "127.0.0.1:0"}, tc.args...)
		if r := runCLI(t, "", args...); r.status != exitUsage || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("raftmq %q: status %d, stderr %q; want a usage error mentioning %q", args, r.status, r.stderr, tc.want)
		}
	}
}
