//go:build linux

package chaos

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// buildDir holds the raftmq binary, built once per test binary run and
// removed by TestMain.
var (
	buildOnce   sync.Once
	buildDir    string
	buildBinary string
	buildErr    error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// raftmqBinary builds cmd/raftmq from this module once and returns its path.
func raftmqBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		goTool, err := exec.LookPath("go")
		if err != nil {
			buildErr = fmt.Errorf("the go tool is not on PATH: %w", err)
			return
		}
		buildDir, err = os.MkdirTemp("", "raftmq-chaos-bin-")
		if err != nil {
			buildErr = err
			return
		}
		buildBinary = filepath.Join(buildDir, "raftmq")
		// A cold build of the broker and its dependencies is slow on a busy
		// machine; it is bounded on its own, outside the chaos budget.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		started := time.Now()
		cmd := exec.CommandContext(ctx, goTool, "build", "-o", buildBinary, "github.com/raftmq/raftmq/cmd/raftmq")
		output, err := cmd.CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build cmd/raftmq: %w\n%s", err, output)
			return
		}
		t.Logf("built raftmq in %v", time.Since(started).Round(time.Millisecond))
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return buildBinary
}

// brokerProcess is one `raftmq serve` child process. Its ports and data
// directory stay the same across restarts.
type brokerProcess struct {
	id          uint64
	dataDir     string
	logPath     string
	natsPort    int
	clusterPort int
	metricsPort int
	args        []string

	cmd    *exec.Cmd
	exited chan struct{} // closed when cmd has been waited for
}

func (b *brokerProcess) natsURL() string { return fmt.Sprintf("nats://127.0.0.1:%d", b.natsPort) }

func (b *brokerProcess) running() bool {
	if b.cmd == nil {
		return false
	}
	select {
	case <-b.exited:
		return false
	default:
		return true
	}
}

// processCluster runs the brokers of one test.
type processCluster struct {
	t       *testing.T
	binary  string
	brokers []*brokerProcess // brokers[i].id == i+1
}

// freePorts reserves n distinct loopback ports by listening on them at once,
// then releases them for the brokers to take.
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	listeners := make([]net.Listener, 0, n)
	defer func() {
		for _, l := range listeners {
			l.Close()
		}
	}()
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("reserve a loopback port: %v", err)
		}
		listeners = append(listeners, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports
}

// startProcessCluster starts size brokers that bootstrap the controller
// together. Cleanup kills every broker still running (even a paused one)
// and, if the test failed, logs the tail of each broker's log.
func startProcessCluster(t *testing.T, binary string, size int) *processCluster {
	t.Helper()
	c := &processCluster{t: t, binary: binary}
	ports := freePorts(t, 3*size)
	logDir := t.TempDir()
	if *flagLogDir != "" {
		logDir = filepath.Join(*flagLogDir, fmt.Sprintf("%s-%s", t.Name(), time.Now().Format("20060102-150405.000")))
		if err := os.MkdirAll(logDir, 0o755); err != nil {
			t.Fatal(err)
		}
		t.Logf("broker logs in %s", logDir)
	}
	ids := make([]string, size)
	for i := range size {
		ids[i] = strconv.Itoa(i + 1)
		c.brokers = append(c.brokers, &brokerProcess{
			id:          uint64(i + 1),
			dataDir:     t.TempDir(),
			logPath:     filepath.Join(logDir, fmt.Sprintf("broker-%d.log", i+1)),
			natsPort:    ports[3*i],
			clusterPort: ports[3*i+1],
			metricsPort: ports[3*i+2],
		})
	}
	// The brokers' servers route with the password the README's
	// deployment gives them.
	passwordFile := filepath.Join(t.TempDir(), "route-password")
	if err := os.WriteFile(passwordFile, []byte("chaos-route-password\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, b := range c.brokers {
		var routes []string
		for _, other := range c.brokers {
			if other != b {
				routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", other.clusterPort))
			}
		}
		b.args = []string{"serve",
			"--id", strconv.FormatUint(b.id, 10),
			"--bootstrap", strings.Join(ids, ","),
			"--data", b.dataDir,
			"--nats-listen", fmt.Sprintf("127.0.0.1:%d", b.natsPort),
			"--nats-cluster-listen", fmt.Sprintf("127.0.0.1:%d", b.clusterPort),
			"--nats-routes", strings.Join(routes, ","),
			"--nats-cluster-password-file", passwordFile,
			"--metrics-addr", fmt.Sprintf("127.0.0.1:%d", b.metricsPort),
		}
	}
	t.Cleanup(func() {
		for _, b := range c.brokers {
			c.stopForGood(b)
		}
		if t.Failed() {
			for _, b := range c.brokers {
				t.Logf("last lines of broker %d's log (%s):\n%s", b.id, b.logPath, tail(b.logPath, 40))
			}
		}
	})
	for _, b := range c.brokers {
		c.start(b)
	}
	return c
}

// urls lists every broker's NATS client URL, broker 1 first.
func (c *processCluster) urls() string {
	urls := make([]string, len(c.brokers))
	for i, b := range c.brokers {
		urls[i] = b.natsURL()
	}
	return strings.Join(urls, ",")
}

func (c *processCluster) broker(id uint64) *brokerProcess { return c.brokers[id-1] }

// start runs the broker's process with its fixed arguments, appending its
// output to its log file.
func (c *processCluster) start(b *brokerProcess) {
	c.t.Helper()
	logFile, err := os.OpenFile(b.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		c.t.Fatalf("open broker %d log: %v", b.id, err)
	}
	fmt.Fprintf(logFile, "=== chaos: starting broker %d at %s\n", b.id, time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command(c.binary, b.args...)
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	// If the test binary dies, its brokers die with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		c.t.Fatalf("start broker %d: %v", b.id, err)
	}
	b.cmd = cmd
	b.exited = make(chan struct{})
	go func(exited chan struct{}) {
		cmd.Wait()
		logFile.Close()
		close(exited)
	}(b.exited)
}

// kill sends SIGKILL to the broker and waits until the process is gone.
func (c *processCluster) kill(ctx context.Context, b *brokerProcess) {
	c.t.Helper()
	if !b.running() {
		c.t.Fatalf("kill broker %d: not running", b.id)
	}
	if err := b.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		c.t.Fatalf("SIGKILL broker %d: %v", b.id, err)
	}
	select {
	case <-b.exited:
	case <-ctx.Done():
		c.t.Fatalf("broker %d did not exit after SIGKILL: %v", b.id, ctx.Err())
	}
}

// signal sends sig (SIGSTOP, SIGCONT) to a running broker.
func (c *processCluster) signal(b *brokerProcess, sig syscall.Signal) {
	c.t.Helper()
	if !b.running() {
		c.t.Fatalf("%v broker %d: not running", sig, b.id)
	}
	if err := b.cmd.Process.Signal(sig); err != nil {
		c.t.Fatalf("%v broker %d: %v", sig, b.id, err)
	}
}

// stopForGood kills the broker if it runs (SIGKILL ends a stopped process
// too) and waits for it; used at cleanup, so it never fails the test.
func (c *processCluster) stopForGood(b *brokerProcess) {
	if !b.running() {
		return
	}
	b.cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-b.exited:
	case <-time.After(10 * time.Second):
		c.t.Errorf("broker %d (pid %d) did not exit after SIGKILL", b.id, b.cmd.Process.Pid)
	}
}

// exitedEarly reports brokers that should be running but whose process
// ended on its own (a crash).
func (c *processCluster) exitedEarly() error {
	var errs []error
	for _, b := range c.brokers {
		if b.cmd != nil && !b.running() && b.cmd.ProcessState != nil && !killedBySignal(b.cmd.ProcessState) {
			errs = append(errs, fmt.Errorf("broker %d exited on its own: %v", b.id, b.cmd.ProcessState))
		}
	}
	return errors.Join(errs...)
}

func killedBySignal(state *os.ProcessState) bool {
	status, ok := state.Sys().(syscall.WaitStatus)
	return ok && status.Signaled() && status.Signal() == syscall.SIGKILL
}

// metrics scrapes a broker's /metrics and returns the samples of name whose
// labels include match, keyed by the value of the label keyBy.
func (c *processCluster) metrics(ctx context.Context, b *brokerProcess, name string, match map[string]string, keyBy string) (map[string]float64, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	request, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d/metrics", b.metricsPort), nil)
	if err != nil {
		return nil, err
	}
	response, err := http.DefaultClient.Do(request)
	if err != nil {
		return nil, err
	}
	defer response.Body.Close()
	if response.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("broker %d /metrics: %s", b.id, response.Status)
	}
	body, err := io.ReadAll(response.Body)
	if err != nil {
		return nil, err
	}
	return parseSamples(body, name, match, keyBy), nil
}

// parseSamples picks samples out of the Prometheus text format. Label
// values are assumed free of commas and escaped quotes (true of the topic
// names and numbers this test uses).
func parseSamples(body []byte, name string, match map[string]string, keyBy string) map[string]float64 {
	out := map[string]float64{}
	scanner := bufio.NewScanner(bytes.NewReader(body))
	scanner.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for scanner.Scan() {
		line := scanner.Text()
		rest, ok := strings.CutPrefix(line, name+"{")
		if !ok {
			continue
		}
		labelText, valueText, ok := strings.Cut(rest, "} ")
		if !ok {
			continue
		}
		labels := map[string]string{}
		for _, pair := range strings.Split(labelText, ",") {
			key, value, ok := strings.Cut(pair, "=")
			if !ok {
				continue
			}
			if unquoted, err := strconv.Unquote(value); err == nil {
				value = unquoted
			}
			labels[key] = value
		}
		matches := true
		for key, want := range match {
			if labels[key] != want {
				matches = false
			}
		}
		if !matches {
			continue
		}
		value, err := strconv.ParseFloat(strings.Fields(valueText)[0], 64)
		if err == nil {
			out[labels[keyBy]] = value
		}
	}
	return out
}

// tail returns the last n lines of a file.
func tail(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
