package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/raftmq/raftmq/transport/transporttest"
)

// syncBuffer is a bytes.Buffer safe for one writer and concurrent readers.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startCommand runs a long-running command until the returned stop is
// called (as SIGINT would), then checks that it exited cleanly.
func startCommand(t *testing.T, args ...string) (stdout, stderr *syncBuffer, stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	stdout, stderr = &syncBuffer{}, &syncBuffer{}
	done := make(chan int, 1)
	go func() { done <- run(ctx, args, strings.NewReader(""), stdout, stderr) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case status := <-done:
			if status != exitOK {
				t.Errorf("raftmq %q exited with %d; stderr:\n%s", args, status, stderr.String())
			}
		case <-time.After(60 * time.Second):
			t.Errorf("raftmq %q did not stop within 60s", args)
		}
	}
	t.Cleanup(stop)
	return stdout, stderr, stop
}

// waitFor polls a client command until it succeeds.
func waitFor(t *testing.T, server string, args ...string) result {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		r := runCLI(t, "", append(args, "--server", server)...)
		if r.status == exitOK || time.Now().After(deadline) {
			return r
		}
		time.Sleep(100 * time.Millisecond) // polling an external process-like server
	}
}

// waitForOutput waits up to 30 s for a command to print text (a line that
// follows the readiness a test waited for).
func waitForOutput(t *testing.T, output *syncBuffer, text string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(output.String(), text) {
		if time.Now().After(deadline) {
			t.Errorf("after 30 s the output lacks %q:\n%s", text, output.String())
			return
		}
		time.Sleep(20 * time.Millisecond) // polling a running command's output
	}
}

func TestServeRunsASingleBrokerAndStopsOnSignal(t *testing.T) {
	port := freePort(t)
	server := fmt.Sprintf("nats://127.0.0.1:%d", port)
	_, stderr, stop := startCommand(t, "serve", "--data", t.TempDir(), "--nats-listen", fmt.Sprintf("127.0.0.1:%d", port), "--log-level", "warn")
	if r := waitFor(t, server, "topic", "create", "serve-test"); r.status != exitOK {
		t.Fatalf("topic create against serve: %d %s\nserve stderr: %s", r.status, r.stderr, stderr.String())
	}
	waitForOutput(t, stderr, "NATS clients connect to "+server+";")
	runCLIOK := func(stdin string, args ...string) result {
		r := runCLI(t, stdin, append(args, "--server", server)...)
		if r.status != exitOK {
			t.Fatalf("raftmq %q: %d %s", args, r.status, r.stderr)
		}
		return r
	}
	runCLIOK("", "produce", "serve-test", "one", "two")
	if got := runCLIOK("", "consume", "serve-test", "--count", "2").stdout; got != "one\ntwo\n" {
		t.Errorf("consumed %q", got)
	}
	stop()
	if !strings.Contains(stderr.String(), "broker 1 stopping") {
		t.Errorf("serve stderr: %s", stderr.String())
	}
}

func TestDevPrintsWhatToTypeNext(t *testing.T) {
	port := freePort(t)
	server := fmt.Sprintf("nats://127.0.0.1:%d", port)
	stdout, _, stop := startCommand(t, "dev", "--nodes", "1", "--nats-listen", fmt.Sprintf("127.0.0.1:%d", port))
	if r := waitFor(t, server, "cluster", "status"); r.status != exitOK {
		t.Fatalf("cluster status against dev: %d %s", r.status, r.stderr)
	}
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(stdout.String(), "Press Ctrl-C to stop.") && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond) // the welcome follows readiness
	}
	out := stdout.String()
	for _, want := range []string{"1 broker running", "raftmq topic create orders --partitions 3 --server " + server, "raftmq consume orders"} {
		if !strings.Contains(out, want) {
			t.Errorf("dev output lacks %q:\n%s", want, out)
		}
	}
	stop()
}

// TestServeWithTLS: a broker whose embedded server's client port requires
// TLS serves client commands that trust its CA (--tls-ca, tls:// URL) and
// refuses plain ones; the embedded server's routes take mutual TLS
// settings too; inconsistent TLS flags are refused.
func TestServeWithTLS(t *testing.T) {
	dir := t.TempDir()
	pki := transporttest.NewPKI(t, dir, "broker")
	port := freePort(t)
	server := fmt.Sprintf("tls://127.0.0.1:%d", port)
	_, stderr, stop := startCommand(t, "serve", "--data", filepath.Join(dir, "data"), "--nats-listen", fmt.Sprintf("127.0.0.1:%d", port),
		"--nats-listen-tls-cert", pki.CertFile, "--nats-listen-tls-key", pki.KeyFile,
		"--nats-cluster-listen", "127.0.0.1:0",
		"--nats-cluster-tls-cert", pki.CertFile, "--nats-cluster-tls-key", pki.KeyFile, "--nats-cluster-tls-ca", pki.CAFile,
		"--log-level", "warn")
	if r := waitFor(t, server, "topic", "create", "tls-test", "--tls-ca", pki.CAFile); r.status != exitOK {
		t.Fatalf("topic create over TLS: %d %s\nserve stderr: %s", r.status, r.stderr, stderr.String())
	}
	waitForOutput(t, stderr, "NATS clients connect to "+server+";")
	r := runCLI(t, "", "produce", "tls-test", "one", "--server", server, "--tls-ca", pki.CAFile)
	if r.status != exitOK {
		t.Fatalf("produce over TLS: %d %s", r.status, r.stderr)
	}
	r = runCLI(t, "", "topic", "list", "--server", fmt.Sprintf("nats://127.0.0.1:%d", port))
	if r.status == exitOK {
		t.Fatal("a client without the CA reached the TLS port")
	}
	stop()

	for _, args := range [][]string{
		{"--nats-listen-tls-cert", pki.CertFile},
		{"--nats-listen-tls-ca", pki.CAFile},
		{"--nats-cluster-listen", "127.0.0.1:0", "--nats-cluster-tls-cert", pki.CertFile, "--nats-cluster-tls-key", pki.KeyFile},
		{"--nats-url", "nats://127.0.0.1:1", "--nats-listen-tls-cert", pki.CertFile, "--nats-listen-tls-key", pki.KeyFile},
		{"--nats-tls-ca", pki.CAFile},
	} {
		// A free port, so that one accepted by mistake does not take 4222.
		r := runCLI(t, "", append([]string{"serve", "--data", filepath.Join(dir, "refused"), "--nats-listen", "127.0.0.1:0"}, args...)...)
		if r.status == exitOK {
			t.Errorf("serve %v: accepted", args)
		}
	}
}

// TestServeLogsARefusedRoute: a broker whose route password differs from
// its peer's is refused by the peer's NATS server, and the refusal is in
// the brokers' logs: before, the embedded servers logged nothing, and a
// typo in a password file left a broker that never got ready with nothing
// saying why.
func TestServeLogsARefusedRoute(t *testing.T) {
	dir := t.TempDir()
	routes := []int{freePort(t), freePort(t)}
	var stderrs []*syncBuffer
	for i, password := range []string{"right-password", "wrong-password"} {
		file := filepath.Join(dir, fmt.Sprintf("password-%d", i))
		if err := os.WriteFile(file, []byte(password+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		_, stderr, _ := startCommand(t, "serve", "--id", fmt.Sprint(i+1), "--bootstrap", "1",
			"--data", filepath.Join(dir, fmt.Sprintf("data-%d", i)), "--nats-listen", "127.0.0.1:0",
			"--nats-cluster-listen", fmt.Sprintf("127.0.0.1:%d", routes[i]),
			"--nats-routes", fmt.Sprintf("nats://127.0.0.1:%d", routes[1-i]),
			"--nats-cluster-password-file", file, "--log-level", "warn")
		stderrs = append(stderrs, stderr)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		logs := strings.ToLower(stderrs[0].String() + stderrs[1].String())
		if strings.Contains(logs, "authorization") || strings.Contains(logs, "authentication") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no broker logged the refused route in 30s; logs:\n%s\n%s", stderrs[0].String(), stderrs[1].String())
		}
		time.Sleep(100 * time.Millisecond) // polling the brokers' logs
	}
}

// TestServeInterruptedWhileStartingExitsCleanly: a broker stopped (Ctrl-C)
// while it starts (its NATS server, its stores) exits 0 saying so, as a
// stop once it serves does. Before, it failed with "context canceled" and
// exit status 1 (which made TestServeLogsARefusedRoute fail now and then:
// it stops its brokers as soon as the refusal is logged).
func TestServeInterruptedWhileStartingExitsCleanly(t *testing.T) {
	_, stderr, stop := startCommand(t, "serve", "--id", "1", "--bootstrap", "1",
		"--data", t.TempDir(), "--nats-listen", "127.0.0.1:0", "--log-level", "warn")
	stop() // at once: serve is parsing its flags or starting
	if !strings.Contains(stderr.String(), "stopped before it was ready") {
		t.Fatalf("stderr of a broker stopped while starting:\n%s", stderr.String())
	}
}

// TestServeNamesAReachableClientURL: serve's startup line gives a client
// URL a client can dial; one listening on all interfaces (0.0.0.0, ::)
// is given with the host name, saying so. Before, it printed
// nats://0.0.0.0:4222.
func TestServeNamesAReachableClientURL(t *testing.T) {
	host := func() (string, error) { return "broker-1.example", nil }
	noHost := func() (string, error) { return "", errors.New("no host name") }
	for _, tc := range []struct {
		url      string
		hostname func() (string, error)
		want     string
	}{
		{"nats://0.0.0.0:4222", host, "nats://broker-1.example:4222 (all interfaces)"},
		{"tls://[::]:4222", host, "tls://broker-1.example:4222 (all interfaces)"},
		{"nats://0.0.0.0:4222", noHost, "nats://0.0.0.0:4222 (all interfaces)"},
		{"nats://127.0.0.1:4222", host, "nats://127.0.0.1:4222"},
		{"nats://10.0.0.7:4222", host, "nats://10.0.0.7:4222"},
		{"", host, ""},
	} {
		if got := reachableClientURL(tc.url, tc.hostname); got != tc.want {
			t.Errorf("reachableClientURL(%q) = %q, want %q", tc.url, got, tc.want)
		}
	}
}
