package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// serverURL is the NATS URL of the cluster TestMain starts.
var serverURL string

func TestMain(m *testing.M) {
	// The client commands read these; a developer's own must not reach the
	// tests' open clusters.
	os.Unsetenv("RAFTMQ_PASSWORD")
	os.Unsetenv("RAFTMQ_TOKEN")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	cluster, err := startDevCluster(ctx, devConfig{nodes: 3, listen: "127.0.0.1:0"})
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, "start dev cluster:", err)
		os.Exit(1)
	}
	serverURL = cluster.URL()
	code := m.Run()
	if err := cluster.Close(); err != nil {
		fmt.Fprintln(os.Stderr, "close dev cluster:", err)
	}
	os.Exit(code)
}

type result struct {
	status         int
	stdout, stderr string
}

// runCLI runs the command in-process with stdin as standard input.
func runCLI(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var stdout, stderr bytes.Buffer
	status := run(ctx, args, strings.NewReader(stdin), &stdout, &stderr)
	return result{status, stdout.String(), stderr.String()}
}

// runOK runs a client command against the test cluster and expects success.
func runOK(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	r := runCLI(t, stdin, append(args, "--server", serverURL)...)
	if r.status != 0 {
		t.Fatalf("raftmq %s: status %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.status, r.stdout, r.stderr)
	}
	return r
}

var topicCounter atomic.Int64

// uniqueTopic names a topic not used before in this process (tests may run
// more than once against one cluster with -count).
func uniqueTopic(base string) string {
	return fmt.Sprintf("%s-%d", base, topicCounter.Add(1))
}

func lines(s string) []string {
	s = strings.TrimSuffix(s, "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

func TestProduceAndConsumeJSONLines(t *testing.T) {
	jsonTopic := uniqueTopic("cli-json")
	runOK(t, "", "topic", "create", jsonTopic, "--partitions", "1")

	produced := runOK(t, "", "produce", jsonTopic, "--json", "a", "b <&>", `c "quoted"`)
	want := []string{
		`{"partition":0,"offset":0,"value":"a"}`,
		`{"partition":0,"offset":1,"value":"b <&>"}`,
		`{"partition":0,"offset":2,"value":"c \"quoted\""}`,
	}
	if got := lines(produced.stdout); !slices.Equal(got, want) {
		t.Errorf("produce --json printed\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	stdinProduced := runOK(t, "d\ne\n", "produce", jsonTopic, "--key", "k1", "--json")
	want = []string{`{"partition":0,"offset":3,"value":"d"}`, `{"partition":0,"offset":4,"value":"e"}`}
	if got := lines(stdinProduced.stdout); !slices.Equal(got, want) {
		t.Errorf("produce from stdin printed %q, want %q", got, want)
	}

	consumed := runOK(t, "", "consume", jsonTopic, "--from", "earliest", "--count", "5", "--json")
	got := lines(consumed.stdout)
	if len(got) != 5 {
		t.Fatalf("consume printed %d lines: %q", len(got), consumed.stdout)
	}
	wantRecords := []struct{ key, value string }{{"", "a"}, {"", "b <&>"}, {"", `c \"quoted\"`}, {"k1", "d"}, {"k1", "e"}}
	for i, line := range got {
		pattern := fmt.Sprintf(`^\{"partition":0,"offset":%d,"key":"%s","value":"%s","timestamp":"(.+)"\}$`,
			i, regexp.QuoteMeta(wantRecords[i].key), regexp.QuoteMeta(wantRecords[i].value))
		match := regexp.MustCompile(pattern).FindStringSubmatch(line)
		if match == nil {
			t.Errorf("line %d %s does not match %s", i, line, pattern)
			continue
		}
		stamp, err := time.Parse(time.RFC3339, match[1])
		if err != nil || time.Since(stamp) > time.Hour || time.Since(stamp) < -time.Minute {
			t.Errorf("line %d timestamp %q: %v", i, match[1], err)
		}
	}

	plain := runOK(t, "", "consume", jsonTopic, "--partition", "0", "--from", "3", "--count", "2")
	if !slices.Equal(lines(plain.stdout), []string{"d", "e"}) {
		t.Errorf("consume --from 3 printed %q", plain.stdout)
	}
}

func TestProduceGeneratedRecordsPrintsThroughput(t *testing.T) {
	genTopic := uniqueTopic("cli-gen")
	runOK(t, "", "topic", "create", genTopic, "--partitions", "2")
	r := runOK(t, "", "produce", genTopic, "--count", "2000", "--size", "50")
	if !regexp.MustCompile(`^2000 records of 50 bytes \(0\.1 MB\) in .*: \d+ records/s, [\d.]+ MB/s\n$`).MatchString(r.stdout) {
		t.Errorf("summary %q", r.stdout)
	}
	j := runOK(t, "", "produce", genTopic, "--count", "3", "--size", "10", "--json", "--partition", "1")
	got := lines(j.stdout)
	if len(got) != 3 {
		t.Fatalf("--json --count 3 printed %q", j.stdout)
	}
	for _, line := range got {
		if !regexp.MustCompile(`^\{"partition":1,"offset":\d+\}$`).MatchString(line) {
			t.Errorf("generated record line %s", line)
		}
	}
	if !strings.Contains(j.stderr, "records/s") {
		t.Errorf("with --json the summary goes to stderr; stderr %q", j.stderr)
	}
	consumed := runOK(t, "", "consume", genTopic, "--count", "2003", "--timeout", "10s")
	if n := len(lines(consumed.stdout)); n != 2003 {
		t.Errorf("consumed %d records, want 2003", n)
	}
}

func TestConsumeTimeout(t *testing.T) {
	idleTopic := uniqueTopic("cli-idle")
	runOK(t, "", "topic", "create", idleTopic)
	r := runOK(t, "", "consume", idleTopic, "--timeout", "300ms")
	if r.stdout != "" {
		t.Errorf("empty topic printed %q", r.stdout)
	}
	r = runCLI(t, "", "consume", idleTopic, "--count", "1", "--timeout", "300ms", "--server", serverURL)
	if r.status != exitError || !strings.Contains(r.stderr, "0 of 1 record before") {
		t.Errorf("unmet --count: status %d, stderr %q", r.status, r.stderr)
	}
}

func TestTopicCommands(t *testing.T) {
	topicTopic := uniqueTopic("cli-topic")
	created := runOK(t, "", "topic", "create", topicTopic, "--partitions", "3", "--replicas", "2", "--json")
	var info struct {
		Name       string `json:"name"`
		Replicas   int    `json:"replicas"`
		Partitions []struct {
			Replicas []uint64 `json:"replicas"`
		} `json:"partitions"`
	}
	if err := json.Unmarshal([]byte(created.stdout), &info); err != nil || info.Name != topicTopic || len(info.Partitions) != 3 {
		t.Fatalf("create --json: %q %v", created.stdout, err)
	}
	again := runCLI(t, "", "topic", "create", topicTopic, "--server", serverURL)
	if again.status != exitError || !strings.Contains(again.stderr, "topic_exists") {
		t.Errorf("second create: status %d stderr %q", again.status, again.stderr)
	}
	list := runOK(t, "", "topic", "list")
	if !strings.Contains(list.stdout, topicTopic) {
		t.Errorf("list: %q", list.stdout)
	}
	describe := runOK(t, "", "topic", "describe", topicTopic)
	if !strings.Contains(describe.stdout, "PARTITION") || len(lines(describe.stdout)) != 6 {
		t.Errorf("describe: %q", describe.stdout)
	}
	runOK(t, "", "topic", "delete", topicTopic)
	gone := runCLI(t, "", "topic", "describe", topicTopic, "--server", serverURL)
	if gone.status != exitError || !strings.Contains(gone.stderr, "unknown_topic") {
		t.Errorf("describe after delete: status %d stderr %q", gone.status, gone.stderr)
	}
}

// TestTopicRetention: topic create --retention and --retention-bytes set
// the topic's retention, and topic describe shows it, in text and JSON;
// before, the CLI had no retention flag and describe did not show it.
func TestTopicRetention(t *testing.T) {
	limited := uniqueTopic("cli-retention")
	created := runOK(t, "", "topic", "create", limited, "--retention", "24h", "--retention-bytes", "1048576")
	if !strings.Contains(created.stdout, "retention: age 24h, size 1048576 bytes") {
		t.Errorf("create printed %q", created.stdout)
	}
	describe := runOK(t, "", "topic", "describe", limited)
	if !strings.Contains(describe.stdout, "retention: age 24h, size 1048576 bytes\n") {
		t.Errorf("describe printed %q", describe.stdout)
	}
	var info struct {
		Name           string `json:"name"`
		RetentionMs    int64  `json:"retention_ms"`
		RetentionBytes int64  `json:"retention_bytes"`
	}
	describeJSON := runOK(t, "", "topic", "describe", limited, "--json")
	if err := json.Unmarshal([]byte(describeJSON.stdout), &info); err != nil || info.Name != limited ||
		info.RetentionMs != 24*60*60*1000 || info.RetentionBytes != 1048576 {
		t.Errorf("describe --json %q: %+v %v", describeJSON.stdout, info, err)
	}

	unlimited := uniqueTopic("cli-retention-none")
	runOK(t, "", "topic", "create", unlimited, "--retention", "none", "--retention-bytes", "0")
	if got := runOK(t, "", "topic", "describe", unlimited).stdout; !strings.Contains(got, "retention: age no limit, size brokers' default\n") {
		t.Errorf("describe printed %q", got)
	}
	defaults := uniqueTopic("cli-retention-default")
	runOK(t, "", "topic", "create", defaults)
	if got := runOK(t, "", "topic", "describe", defaults).stdout; !strings.Contains(got, "retention: age brokers' default, size brokers' default\n") {
		t.Errorf("describe printed %q", got)
	}
}

func TestClusterStatusJSON(t *testing.T) {
	statusTopic := uniqueTopic("cli-status")
	runOK(t, "", "topic", "create", statusTopic, "--partitions", "2")
	r := runOK(t, "", "cluster", "status", "--json")
	if len(lines(r.stdout)) != 1 {
		t.Fatalf("want one line, got %q", r.stdout)
	}
	var status map[string]json.RawMessage
	if err := json.Unmarshal([]byte(r.stdout), &status); err != nil {
		t.Fatal(err)
	}
	if keys := sortedKeys(status); !hasKeys(keys, "brokers", "controller_leader", "partitions") {
		t.Errorf("keys %v", keys)
	}
	var brokers []map[string]json.RawMessage
	if err := json.Unmarshal(status["brokers"], &brokers); err != nil || len(brokers) != 3 {
		t.Fatalf("brokers %s: %v", status["brokers"], err)
	}
	for _, b := range brokers {
		if keys := sortedKeys(b); !slices.Equal(keys, []string{"alive", "id"}) {
			t.Errorf("broker keys %v", keys)
		}
	}
	var partitions []map[string]json.RawMessage
	if err := json.Unmarshal(status["partitions"], &partitions); err != nil {
		t.Fatal(err)
	}
	found := 0
	for _, p := range partitions {
		if keys := sortedKeys(p); !hasKeys(keys, "commit_index", "leader", "partition", "replicas", "topic") {
			t.Errorf("partition keys %v", keys)
		}
		if string(p["topic"]) == `"`+statusTopic+`"` {
			found++
		}
	}
	if found != 2 {
		t.Errorf("status lists %d partitions of cli-status, want 2", found)
	}
	text := runOK(t, "", "cluster", "status")
	if !strings.Contains(text.stdout, "controller leader:") || !strings.Contains(text.stdout, statusTopic) {
		t.Errorf("status text %q", text.stdout)
	}
}

// hasKeys reports whether keys holds every one of want (the membership
// fields come on top when the cluster knows them).
func hasKeys(keys []string, want ...string) bool {
	for _, key := range want {
		if !slices.Contains(keys, key) {
			return false
		}
	}
	return true
}

func sortedKeys[V any](m map[string]V) []string {
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func TestProduceToUnknownTopicFails(t *testing.T) {
	r := runCLI(t, "", "produce", "cli-missing", "x", "--server", serverURL)
	if r.status != exitError || !strings.Contains(r.stderr, "1 of 1 record not acknowledged") {
		t.Errorf("status %d stderr %q", r.status, r.stderr)
	}
}

func TestBadCommandLines(t *testing.T) {
	for _, tc := range []struct {
		args    []string
		message string
	}{
		{[]string{}, "Usage"},
		{[]string{"frobnicate"}, `unknown command "frobnicate"`},
		{[]string{"produce"}, "missing TOPIC"},
		{[]string{"produce", "t", "--count", "5", "v"}, "give no VALUE"},
		{[]string{"produce", "t", "--size", "5"}, "--size needs --count"},
		{[]string{"produce", "t", "--acks", "all"}, "--acks"},
		{[]string{"produce", "t", "--compression", "gzip"}, "--compression"},
		{[]string{"produce", "t", "--nope"}, "flag provided but not defined: -nope"},
		{[]string{"produce", "bad topic!", "v"}, "topic name"},
		{[]string{"consume", "bad topic!"}, "topic name"},
		{[]string{"topic", "create", "bad topic!"}, "topic name"},
		{[]string{"topic", "describe", "bad topic!"}, "topic name"},
		{[]string{"consume"}, "want exactly one TOPIC"},
		{[]string{"consume", "t", "--from", "yesterday"}, `--from "yesterday"`},
		{[]string{"consume", "t", "--count", "x"}, "invalid value"},
		{[]string{"topic"}, "Usage"},
		{[]string{"topic", "rename"}, `unknown subcommand "rename"`},
		{[]string{"topic", "create"}, "want exactly one topic NAME"},
		{[]string{"topic", "create", "t", "--partitions", "0"}, "--partitions 0"},
		{[]string{"topic", "create", "t", "--retention", "-1h"}, "--retention -1h is negative: want a positive duration, 0 (the brokers' default) or none (no limit)"},
		{[]string{"topic", "create", "t", "--retention", "7d"}, `--retention "7d": want a positive duration with its unit`},
		{[]string{"topic", "create", "t", "--retention", "500us"}, "--retention 500us is below a millisecond"},
		{[]string{"topic", "create", "t", "--retention-bytes", "-5"}, "--retention-bytes -5 is negative"},
		{[]string{"topic", "create", "t", "--retention-bytes", "1GB"}, `--retention-bytes "1GB": want a positive whole number of bytes`},
		{[]string{"cluster", "state"}, `unknown subcommand "state"`},
		{[]string{"serve", "--bootstrap", "1,x"}, `"x" is not a broker id`},
		{[]string{"serve", "--nats-url", "nats://h:4222", "--nats-routes", "nats://a:6222"}, "give one or the other"},
		{[]string{"serve", "--config", "/nonexistent/raftmq.json"}, "--config"},
		{[]string{"dev", "--nodes", "0"}, "--nodes 0"},
		// A partition number past uint32 was cut to a small one: reassign
		// --partition 4294967296 moved partition 0.
		{[]string{"produce", "t", "v", "--partition", "4294967296"}, "--partition 4294967296 is out of range"},
		{[]string{"consume", "t", "--partition", "4294967296"}, "--partition 4294967296 is out of range"},
		{[]string{"topic", "reassign", "t", "--partition", "4294967296", "--replicas", "1"}, "--partition 4294967296 is out of range"},
		{[]string{"topic", "reassign", "t", "--partition", "0", "--replicas", "1", "--wait-timeout", "0s"}, "--wait-timeout 0s must be positive"},
		{[]string{"cluster", "replace-broker", "1", "2", "--wait-timeout", "-5s"}, "--wait-timeout -5s must be positive"},
		{[]string{"produce", "t", "--count", "1", "--size", "4611686018427387904"}, "no cluster takes such a record"},
		{[]string{"consume", "t", "--group", "g", "--from", "1000"}, "group reset-offsets"},
		{[]string{"consume", "t", "--timeout", "5"}, "a duration with its unit"},
	} {
		r := runCLI(t, "", tc.args...)
		if r.status != exitUsage {
			t.Errorf("raftmq %q: status %d, want %d", tc.args, r.status, exitUsage)
		}
		// The error goes to stderr alone: stdout may be a script's --json
		// input (a bad flag used to print the whole help there).
		if len(tc.args) > 1 && r.stdout != "" {
			t.Errorf("raftmq %q: stdout %q, want nothing", tc.args, r.stdout)
		}
		if !strings.Contains(r.stderr, tc.message) {
			t.Errorf("raftmq %q: stderr %q does not mention %q", tc.args, r.stderr, tc.message)
		}
	}
}

func TestHelpHasAnExampleEverywhere(t *testing.T) {
	for _, args := range [][]string{
		{"--help"}, {"serve", "--help"}, {"dev", "--help"}, {"topic", "--help"},
		{"topic", "create", "--help"}, {"topic", "list", "--help"}, {"topic", "describe", "--help"},
		{"topic", "delete", "--help"}, {"produce", "--help"}, {"consume", "--help"},
		{"cluster", "--help"}, {"cluster", "status", "--help"}, {"bench", "--help"},
	} {
		r := runCLI(t, "", args...)
		if r.status != exitOK {
			t.Errorf("raftmq %q: status %d, stderr %q", args, r.status, r.stderr)
		}
		if !strings.Contains(r.stdout, "Example") || !strings.Contains(r.stdout, "raftmq ") {
			t.Errorf("raftmq %q: help has no example:\n%s", args, r.stdout)
		}
	}
}

// TestSubcommandHelpIsItsOwn: every topic, group and cluster subcommand's
// --help prints that subcommand's usage and flags; cluster status --help
// printed the overview of every cluster subcommand before.
func TestSubcommandHelpIsItsOwn(t *testing.T) {
	for group, subcommands := range map[string][]string{
		"topic":   {"create", "list", "describe", "delete", "reassign"},
		"group":   {"list", "describe", "reset-offsets", "delete"},
		"cluster": {"status", "replace-broker", "add-controller", "remove-controller"},
	} {
		for _, subcommand := range subcommands {
			r := runCLI(t, "", group, subcommand, "--help")
			usage := "Usage: raftmq " + group + " " + subcommand + " "
			if r.status != exitOK || !strings.HasPrefix(r.stdout, usage) || !strings.Contains(r.stdout, "\nFlags:\n") {
				t.Errorf("raftmq %s %s --help: status %d, want %q and its flags; printed:\n%s", group, subcommand, r.status, usage, r.stdout)
			}
		}
	}
}

func TestServeConfigFileAndFlags(t *testing.T) {
	path := t.TempDir() + "/raftmq.json"
	if err := os.WriteFile(path, []byte(`{"id":2,"bootstrap":[1,2,3],"data":"/srv/raftmq","nats_cluster_listen":"127.0.0.1:6222","nats_routes":["nats://127.0.0.1:6223"]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	options := defaultServeOptions()
	if err := readServeConfig(path, &options); err != nil {
		t.Fatal(err)
	}
	values := options
	values.Data = "/override"
	if err := applyServeFlag(&options, &values, "data", "", ""); err != nil {
		t.Fatal(err)
	}
	config, err := options.brokerConfig(nil)
	if err != nil {
		t.Fatal(err)
	}
	if config.ID != 2 || config.DataDir != "/override" || !slices.Equal(config.Bootstrap, []uint64{1, 2, 3}) ||
		config.NATS.Embedded == nil || config.NATS.Embedded.ClusterListen != "127.0.0.1:6222" ||
		!slices.Equal(config.NATS.Embedded.Routes, []string{"nats://127.0.0.1:6223"}) {
		t.Errorf("config %+v embedded %+v", config, config.NATS.Embedded)
	}
	if err := os.WriteFile(path, []byte(`{"idd":2}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := readServeConfig(path, &options); err == nil || !strings.Contains(err.Error(), "idd") {
		t.Errorf("unknown key: %v", err)
	}
}

func TestProgressLine(t *testing.T) {
	if got := progressLine(50, 200, 2*time.Second); got != "[=======>                      ]  25% 50/200 records, 25/s " {
		t.Errorf("%q", got)
	}
	if got := progressLine(200, 200, time.Second); !strings.HasPrefix(got, "[==============================] 100%") {
		t.Errorf("%q", got)
	}
}

// TestServeClusterPasswordFile: --nats-cluster-password-file gives the
// embedded server the file's password, without its trailing newline, and
// is refused where it cannot apply or holds nothing.
func TestServeClusterPasswordFile(t *testing.T) {
	dir := t.TempDir()
	secret, empty := dir+"/route-password", dir+"/empty"
	if err := os.WriteFile(secret, []byte("s3cret route\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(empty, []byte(" \n"), 0o600); err != nil {
		t.Fatal(err)
	}
	options := defaultServeOptions()
	options.NATSClusterListen = "127.0.0.1:6222"
	options.NATSClusterPasswordFile = secret
	config, err := options.brokerConfig(nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := config.NATS.Embedded.ClusterPassword; got != "s3cret route" {
		t.Fatalf("cluster password %q, want the file's without its newline", got)
	}
	for _, tc := range []struct {
		edit func(*serveOptions)
		want string
	}{
		{func(o *serveOptions) { o.NATSClusterListen = "" }, "needs --nats-cluster-listen"},
		{func(o *serveOptions) { o.NATSURL = "nats://127.0.0.1:4222"; o.NATSClusterListen = "" }, "--nats-url"},
		{func(o *serveOptions) { o.NATSClusterPasswordFile = empty }, "is empty"},
		{func(o *serveOptions) { o.NATSClusterPasswordFile = dir + "/missing" }, "missing"},
	} {
		o := options
		tc.edit(&o)
		if _, err := o.brokerConfig(nil); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("options %+v: %v, want an error mentioning %q", o, err, tc.want)
		}
	}
}

// TestProduceStopsOnInterruptWhileReadingInput: an interrupt stops produce
// while it waits for a line of standard input (a terminal, a quiet pipe),
// flushes what it read and exits with exitInterrupted; before, it went on
// waiting for the next line, and a second interrupt was swallowed too.
func TestProduceStopsOnInterruptWhileReadingInput(t *testing.T) {
	topic := uniqueTopic("cli-interrupt")
	runOK(t, "", "topic", "create", topic, "--partitions", "1", "--replicas", "1")
	stdin, writer := io.Pipe()
	defer writer.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stdout, stderr bytes.Buffer
	done := make(chan int, 1)
	go func() { done <- run(ctx, []string{"produce", topic, "--server", serverURL}, stdin, &stdout, &stderr) }()
	if _, err := io.WriteString(writer, "first\n"); err != nil {
		t.Fatal(err)
	}
	// Once the line is stored, produce waits for the next one.
	runOK(t, "", "consume", topic, "--count", "1", "--timeout", "20s")
	interrupted := time.Now()
	cancel()
	select {
	case status := <-done:
		if status != exitInterrupted || !strings.Contains(stderr.String(), "interrupted after 1 record\n") {
			t.Fatalf("status %d, stderr %q", status, stderr.String())
		}
		t.Logf("stopped %v after the interrupt", time.Since(interrupted).Round(time.Millisecond))
	case <-time.After(10 * time.Second):
		t.Fatal("produce still waits for standard input 10s after an interrupt")
	}
	r := runOK(t, "", "consume", topic, "--timeout", "1s")
	if r.stdout != "first\n" {
		t.Fatalf("consumed %q, want the one line read before the interrupt", r.stdout)
	}
}

// TestConsumeReportsALostConnection: a consume whose cluster goes away says
// so on stderr while it waits for the connection to come back; before, it
// waited in silence for ever.
func TestConsumeReportsALostConnection(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cluster, err := startDevCluster(ctx, devConfig{nodes: 1, listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	defer func() {
		if !closed {
			cluster.Close()
		}
	}()
	url := cluster.URL()
	topic := uniqueTopic("cli-lost")
	if r := runCLI(t, "", "topic", "create", topic, "--server", url); r.status != exitOK {
		t.Fatalf("topic create: %d %s", r.status, r.stderr)
	}
	consumeCtx, stop := context.WithCancel(ctx)
	defer stop()
	var stdout bytes.Buffer
	var stderr syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- run(consumeCtx, []string{"consume", topic, "--server", url}, strings.NewReader(""), &stdout, &stderr)
	}()
	time.Sleep(time.Second)
	closed = true
	if err := cluster.Close(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for !strings.Contains(stderr.String(), "lost the connection to NATS") {
		if time.Now().After(deadline) {
			t.Fatalf("15s after the cluster closed, consume's stderr says %q", stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	stop()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("consume did not stop 10s after an interrupt")
	}
}

// TestConsumeOfADeletedTopicFails: a consume whose topic is deleted under
// it fails (status 1, unknown_topic) once the cluster has said so for the
// client's unknown-topic wait; before, it retried for ever, in silence,
// and when the topic was created again it went on at its old offset,
// skipping the new topic's first records.
func TestConsumeOfADeletedTopicFails(t *testing.T) {
	topic := uniqueTopic("cli-deleted")
	runOK(t, "", "topic", "create", topic, "--partitions", "1")
	runOK(t, "", "produce", topic, "a")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var stdout, stderr syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"consume", topic, "--server", serverURL}, strings.NewReader(""), &stdout, &stderr)
	}()
	deadline := time.Now().Add(10 * time.Second)
	for stdout.String() != "a\n" {
		if time.Now().After(deadline) {
			t.Fatalf("consume printed %q in 10s", stdout.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	runOK(t, "", "topic", "delete", topic)
	deleted := time.Now()
	select {
	case status := <-done:
		if status != exitError || !strings.Contains(stderr.String(), "unknown_topic") {
			t.Fatalf("status %d, stderr %q", status, stderr.String())
		}
		t.Logf("failed %v after the delete", time.Since(deleted).Round(time.Millisecond))
	case <-time.After(20 * time.Second):
		t.Fatalf("consume still runs 20s after its topic was deleted; stderr %q", stderr.String())
	}
}

// TestGroupAdminOnAnUnknownTopicFailsSoon: reset-offsets naming a topic
// that does not exist fails after the unknown-topic wait (2 s), not after
// the command's whole 30 s.
func TestGroupAdminOnAnUnknownTopicFailsSoon(t *testing.T) {
	start := time.Now()
	r := runCLI(t, "", "group", "reset-offsets", "cli-g", "--topic", uniqueTopic("cli-nosuch"), "--to", "earliest", "--server", serverURL)
	if took := time.Since(start); r.status != exitError || !strings.Contains(r.stderr, "unknown_topic") || took > 10*time.Second {
		t.Fatalf("after %v: status %d, stderr %q", took.Round(time.Millisecond), r.status, r.stderr)
	}
}

// TestAWrongClusterNameIsSaidSoon: with a --cluster-name no broker was
// started with, client commands say within a few seconds that no broker
// answers under that name at that server, and go on waiting as they do
// (brokers may be starting). Before, produce waited for its delivery
// timeout (a minute) and group list retried for 30 s, in silence.
func TestAWrongClusterNameIsSaidSoon(t *testing.T) {
	runCLI(t, "", "topic", "create", "wrong-name", "--server", serverURL)
	for _, args := range [][]string{
		{"produce", "wrong-name"},
		{"group", "list"},
		{"consume", "wrong-name", "--count", "1"},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 4*time.Second)
		var stdout, stderr bytes.Buffer
		status := run(ctx, append(args, "--server", serverURL, "--cluster-name", "nosuch"), strings.NewReader("hello\n"), &stdout, &stderr)
		cancel()
		if status == exitOK || !strings.Contains(stderr.String(), `no broker answers at `+serverURL+` under cluster name "nosuch"`) {
			t.Errorf("raftmq %v with a wrong cluster name, stopped after 4 s: status %d, stderr %q", args, status, stderr.String())
		}
	}
}

// TestHelpAndReportsReadRight: the overview names group's reset-offsets;
// a flag whose usage gives its default does not get "(default -1)" too;
// bench produce --help prints its flags where its text goes (stdout, as
// every command's --help) and bench without a workload is a usage error;
// counts of one are singular.
func TestHelpAndReportsReadRight(t *testing.T) {
	if r := runCLI(t, "", "--help"); !strings.Contains(r.stdout, "list, describe, reset-offsets and delete consumer groups") {
		t.Errorf("raftmq --help:\n%s", r.stdout)
	}
	for _, command := range []string{"consume", "produce"} {
		if r := runCLI(t, "", command, "--help"); !strings.Contains(r.stdout, "(default:") || strings.Contains(r.stdout, "(default -1)") {
			t.Errorf("raftmq %s --help gives --partition's default twice or not at all:\n%s", command, r.stdout)
		}
	}
	for _, args := range [][]string{
		{"serve", "--help"}, {"dev", "--help"}, {"topic", "create", "--help"}, {"group", "describe", "--help"},
		{"cluster", "status", "--help"}, {"produce", "--help"}, {"consume", "--help"}, {"bench", "--help"}, {"bench", "produce", "--help"},
	} {
		r := runCLI(t, "", args...)
		if r.status != exitOK || r.stderr != "" || !strings.Contains(r.stdout, "Example") {
			t.Errorf("raftmq %q: status %d, stderr %q; stdout:\n%s", args, r.status, r.stderr, r.stdout)
		}
	}
	if r := runCLI(t, "", "bench", "produce", "--help"); !strings.Contains(r.stdout, "\nFlags:\n") || !strings.Contains(r.stdout, "-brokers") {
		t.Errorf("bench produce --help lacks its flags:\n%s", r.stdout)
	}
	if r := runCLI(t, "", "bench"); r.status != exitUsage || r.stdout != "" || !strings.Contains(r.stderr, "name a workload") ||
		strings.Contains(r.stderr, "bench: bench") {
		t.Errorf("raftmq bench: status %d, stdout %q, stderr %q; want %d and the usage on stderr", r.status, r.stdout, r.stderr, exitUsage)
	}

	topic := uniqueTopic("cli-one")
	if r := runOK(t, "", "topic", "create", topic, "--partitions", "1", "--replicas", "1"); r.stdout != "created topic "+topic+" with 1 partition, 1 replica each\n" {
		t.Errorf("topic create printed %q", r.stdout)
	}
	if r := runOK(t, "", "produce", topic, "x"); r.stderr != "produced 1 record to "+topic+"\n" {
		t.Errorf("produce printed %q", r.stderr)
	}
	if r := runOK(t, "", "produce", topic, "--count", "1", "--size", "1"); !strings.HasPrefix(r.stdout, "1 record of 1 byte ") {
		t.Errorf("produce --count 1 printed %q", r.stdout)
	}
}
