package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseFlags(t *testing.T) {
	w, opts, err := parseFlags(KindProduce, []string{"--brokers", "5", "--count", "1000", "--size", "200", "--vs", "jetstream", "--compression", "zstd", "--warmup", "123"}, os.Stderr)
	if err != nil {
		t.Fatal(err)
	}
	if w.Brokers != 5 || w.Replicas != 3 || w.Count != 1000 || w.RecordSize != 200 || w.Compression != "zstd" || w.Warmup != 123 {
		t.Fatalf("workload %+v", w)
	}
	want := []string{"raftmq", "jetstream-lazy", "jetstream-sync-always"}
	if strings.Join(opts.systems, ",") != strings.Join(want, ",") {
		t.Fatalf("systems %v, want %v", opts.systems, want)
	}
	if _, _, err := parseFlags(KindProduce, []string{"--count", "10", "--duration", "1s"}, os.Stderr); err == nil {
		t.Fatal("count and duration together accepted")
	}
	if _, _, err := parseFlags(KindProduce, []string{"--size", "3"}, os.Stderr); err == nil {
		t.Fatal("record size below the header accepted")
	}
	w, opts, err = parseFlags(KindProduce, []string{"--vs", "jetstream-lazy," + SystemFabric}, os.Stderr)
	if err != nil || strings.Join(opts.systems, ",") != "raftmq,jetstream-lazy,"+SystemFabric {
		t.Fatalf("--vs with the fabric: systems %v, %v", opts.systems, err)
	}
	if _, err := targetSpec(SystemFabric, w, opts); err != nil {
		t.Fatalf("fabric spec for produce: %v", err)
	}
	if _, err := targetSpec(SystemFabric, DefaultWorkload(KindConsume), opts); err == nil {
		t.Fatal("fabric accepted for a consume run")
	}
	if _, err := targetSpec(SystemFabric, w, cliOptions{raftmqURLs: "nats://127.0.0.1:4222"}); err == nil {
		t.Fatal("fabric accepted with --server")
	}
	w, _, err = parseFlags(KindE2E, []string{"--duration", "2s", "--brokers", "1"}, os.Stderr)
	if err != nil || w.Count != 0 || w.Duration != 2*time.Second || w.Replicas != 1 {
		t.Fatalf("duration run: %+v, %v", w, err)
	}
}

// TestParseFlagsRefusesBadValues: values that made a run go wrong are
// refused with the flag's name before anything starts: a rate of NaN or
// infinity (ran unpaced, then the JSON summary failed to encode), a
// negative replica count (became the default) and an unknown chart format
// (refused only after the whole run).
func TestParseFlagsRefusesBadValues(t *testing.T) {
	for _, c := range []struct{ flag, value, name string }{
		{"--rate", "NaN", "rate"},
		{"--rate", "Inf", "rate"},
		{"--rate", "-Inf", "rate"},
		{"--replicas", "-1", "--replicas"},
		{"--chart-format", "jpg", "--chart-format"},
		{"--fsync", "never", "fsync"}, // raftmq has no such policy
	} {
		_, _, err := parseFlags(KindProduce, []string{"--count", "100", c.flag, c.value}, io.Discard)
		if err == nil || !strings.Contains(err.Error(), c.name) {
			t.Errorf("%s %s: %v, want an error naming %s", c.flag, c.value, err, c.name)
		}
	}
	w, _, err := parseFlags(KindProduce, []string{"--replicas", "0", "--brokers", "2", "--chart-format", "png"}, io.Discard)
	if err != nil || w.Replicas != 2 {
		t.Fatalf("--replicas 0 with 2 brokers: replicas %d, %v; want the default, 2", w.Replicas, err)
	}
}

// TestRunCommandJSONLastLine runs a tiny JetStream-only e2e benchmark
// through the command and checks the scripted output contract.
func TestRunCommandJSONLastLine(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	out := t.TempDir()
	var stdout bytes.Buffer
	args := []string{"e2e", "--systems", "jetstream-lazy", "--brokers", "1", "--count", "2000", "--window", "100", "--warmup", "500",
		"--json", "--out", out, "--data-dir", t.TempDir()}
	if err := RunCommand(ctx, args, &stdout, nil); err != nil {
		t.Fatalf("%v\n%s", err, stdout.String())
	}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	var summary map[string]any
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &summary); err != nil {
		t.Fatalf("last line is not JSON: %v\n%s", err, stdout.String())
	}
	for _, key := range []string{"records_per_s", "mb_per_s", "p50_ms", "p99_ms", "p999_ms", "durability", "jetstream_lazy"} {
		if _, ok := summary[key]; !ok {
			t.Fatalf("summary lacks %q: %s", key, lines[len(lines)-1])
		}
	}
	if summary["ok"] != true || summary["records_per_s"].(float64) <= 0 {
		t.Fatalf("summary not ok: %s", lines[len(lines)-1])
	}
	lazy := summary["jetstream_lazy"].(map[string]any)
	if others, _ := lazy["other_consumers"].([]any); len(others) != 1 {
		t.Fatalf("want the pull consumer nested beside the ordered one: %v", lazy)
	}
	if !strings.Contains(stdout.String(), "| jetstream | lazy | ordered |") {
		t.Fatalf("no Markdown row:\n%s", stdout.String())
	}
	for _, name := range []string{"e2e.json", "e2e.md", "e2e-throughput-records.svg", "e2e-latency.svg"} {
		if info, err := os.Stat(filepath.Join(out, name)); err != nil || info.Size() == 0 {
			t.Fatalf("output %s: %v", name, err)
		}
	}
}

// TestFixedRateCorrectsForCoordinatedOmission runs at a fixed rate and
// checks that the run took about as long as the schedule says and that
// latency samples exist for every record.
func TestFixedRateCorrectsForCoordinatedOmission(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	target, err := StartJetStream(ctx, JetStreamConfig{Servers: 1, Setting: JetStreamLazy, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer target.Close()
	w := DefaultWorkload(KindProduce)
	w.Brokers, w.Replicas, w.Count, w.Rate = 1, 1, 1000, 5000 // 0.2 s of schedule
	w.Warmup = 0
	result, err := runOne(ctx, target, w, "", &NoProgress{})
	if err != nil {
		t.Fatal(err)
	}
	if err := result.Check.Err(); err != nil {
		t.Fatal(err)
	}
	if !result.CoordinatedOmissionCorrected || result.Latency.Count != 1000 {
		t.Fatalf("corrected %v, samples %d", result.CoordinatedOmissionCorrected, result.Latency.Count)
	}
	if result.Seconds < 0.19 {
		t.Fatalf("1000 records at 5000/s took %.3fs; the schedule was not kept", result.Seconds)
	}
}
