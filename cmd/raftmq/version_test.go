package main

import (
	"context"
	"io"
	"net/http"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
	"time"
)

// TestVersion: raftmq version and --version print the module version, the
// VCS revision and the Go version the binary was built with; there was no
// way to tell which build a broker ran.
func TestVersion(t *testing.T) {
	info := &debug.BuildInfo{Main: debug.Module{Version: "v1.2.0"}, Settings: []debug.BuildSetting{
		{Key: "vcs.revision", Value: "4cadaaa"}, {Key: "vcs.time", Value: "2025-01-02T03:04:05Z"}, {Key: "vcs.modified", Value: "true"},
	}}
	suffix := ", " + runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH
	if got, want := versionText(info), "raftmq v1.2.0, revision 4cadaaa (2025-01-02T03:04:05Z) modified"+suffix; got != want {
		t.Errorf("versionText = %q, want %q", got, want)
	}
	if got := versionText(nil); !strings.HasPrefix(got, "raftmq unknown, revision unknown") || !strings.HasSuffix(got, suffix) {
		t.Errorf("versionText(nil) = %q", got)
	}
	for _, args := range [][]string{{"version"}, {"--version"}} {
		r := runCLI(t, "", args...)
		if r.status != exitOK || !strings.HasPrefix(r.stdout, "raftmq ") || !strings.HasSuffix(r.stdout, suffix+"\n") {
			t.Errorf("raftmq %v: status %d, stdout %q, stderr %q", args, r.status, r.stdout, r.stderr)
		}
	}
}

// TestDevServesMetrics: raftmq dev --metrics-addr serves every broker's
// metrics on one /metrics, and broker 1's /readyz; dev had no such flag,
// so the README's metrics endpoint could not be tried on it.
func TestDevServesMetrics(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cluster, err := startDevCluster(ctx, devConfig{nodes: 2, listen: "127.0.0.1:0", metricsAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	var welcome strings.Builder
	cluster.printWelcome(&welcome)
	url := cluster.metricsURL()
	if url == "" || !strings.Contains(welcome.String(), "metrics   "+url+"\n") {
		t.Fatalf("metrics URL %q; welcome:\n%s", url, welcome.String())
	}
	get := func(url string) string {
		t.Helper()
		request, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			t.Fatal(err)
		}
		response, err := http.DefaultClient.Do(request)
		if err != nil {
			t.Fatal(err)
		}
		defer response.Body.Close()
		body, err := io.ReadAll(response.Body)
		if err != nil || response.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %d %v\n%s", url, response.StatusCode, err, body)
		}
		return string(body)
	}
	metrics := get(url)
	for _, want := range []string{`broker="1"`, `broker="2"`, "go_goroutines"} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if got := get(strings.TrimSuffix(url, "/metrics") + "/readyz"); got != "ready\n" {
		t.Errorf("/readyz: %q", got)
	}
}
