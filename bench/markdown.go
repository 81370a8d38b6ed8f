package bench

import (
	"fmt"
	"io"
	"strings"
)

// WriteMarkdown writes the report as a Markdown section: the workload, the
// machine, one table row per result, and what each durability label means.
func (r *Report) WriteMarkdown(out io.Writer) error {
	var b strings.Builder
	w := r.Workload
	fmt.Fprintf(&b, "Workload: **%s**, %s, %s, replicas %d, %s, ",
		w.Kind, plural(w.Brokers, "broker"), plural(w.Partitions, "partition"), w.Replicas, plural(w.Producers, "producer"))
	if w.Kind != KindProduce { // a produce run starts no consumer
		fmt.Fprintf(&b, "%s, ", plural(w.Consumers, "consumer"))
	}
	if w.Count > 0 {
		fmt.Fprintf(&b, "%d records", w.Count)
	} else {
		fmt.Fprintf(&b, "%v of publishing", w.Duration)
	}
	if w.Rate > 0 {
		fmt.Fprintf(&b, " at %.0f records/s (latency corrected for coordinated omission)", w.Rate)
	} else {
		fmt.Fprintf(&b, ", window %s in flight per producer", r.windowText())
	}
	fmt.Fprintf(&b, "; raftmq linger %v, batch %d B, compression %s, acks %s, fsync %s",
		w.Linger, w.BatchBytes, w.Compression, w.Acks, w.Fsync)
	if w.Warmup > 0 {
		fmt.Fprintf(&b, "; each system first published %d records, unmeasured, to partitions dropped before its run", w.Warmup)
	}
	b.WriteString(".\n\n")
	m := r.Machine
	fmt.Fprintf(&b, "Machine: %d cores (GOMAXPROCS %d) %s, %s/%s, %s, nats-server %s; data on %s (%s); load average at start %s.\n\n",
		m.Cores, m.GOMAXPROCS, m.CPU, m.OS, m.Arch, m.GoVersion, m.Versions["nats-server"], m.DataDir, m.DataDirFS, m.LoadAverage)
	if r.Command != "" {
		fmt.Fprintf(&b, "Command: `%s`\n\n", r.Command)
	}
	latencyTitle := "latency"
	for _, res := range r.Results {
		if res.LatencyMeasures != "" {
			latencyTitle = res.LatencyMeasures
			break
		}
	}
	b.WriteString("| system | setting | consumer | record | records/s | MB/s | p50 ms | p99 ms | p99.9 ms | check |\n")
	b.WriteString("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |\n")
	for _, res := range r.Results {
		consumer := res.Consumer
		if consumer == "" {
			consumer = "-"
		}
		p50, p99, p999 := "-", "-", "-"
		if res.LatencyMeasures != "" && res.Latency.Count > 0 {
			p50, p99, p999 = formatMillis(res.Latency.P50), formatMillis(res.Latency.P99), formatMillis(res.Latency.P999)
		}
		check := "ok"
		if res.Check.Err() != nil {
			check = "**FAILED**"
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %d B | %s | %.1f | %s | %s | %s | %s |\n",
			res.System, res.Setting, consumer, res.RecordSize, formatCount(res.RecordsPerSec), res.MBPerSec, p50, p99, p999, check)
	}
	fmt.Fprintf(&b, "\nLatency is %s", latencyTitle)
	if w.Rate > 0 {
		b.WriteString(", measured from each record's intended send time")
	}
	b.WriteString(". MB/s counts record values (10^6 bytes).\n\nDurability settings:\n\n")
	seen := map[string]bool{}
	for _, t := range r.Targets {
		key := t.System + " " + t.Setting
		if seen[key] {
			continue
		}
		seen[key] = true
		fmt.Fprintf(&b, "- **%s %s**: %s\n", t.System, t.Setting, t.Durability)
	}
	for _, e := range r.Errors {
		fmt.Fprintf(&b, "\nError: %s\n", e)
	}
	_, err := io.WriteString(out, b.String())
	return err
}

func formatMillis(ms float64) string {
	switch {
	case ms >= 100:
		return fmt.Sprintf("%.0f", ms)
	case ms >= 10:
		return fmt.Sprintf("%.1f", ms)
	}
	return fmt.Sprintf("%.2f", ms)
}

// formatCount prints a rate with thousands separators.
func formatCount(v float64) string {
	digits := fmt.Sprintf("%.0f", v)
	var out []byte
	for i := range len(digits) {
		if i > 0 && (len(digits)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, digits[i])
	}
	return string(out)
}

// windowText describes the records in flight per producer: the window
// set, or the automatic one of each record size.
func (r *Report) windowText() string {
	w := r.Workload
	if w.Window > 0 {
		return fmt.Sprint(w.Window)
	}
	sizes := r.Sizes
	if len(sizes) == 0 {
		sizes = []int{w.RecordSize}
	}
	parts := make([]string, len(sizes))
	for i, size := range sizes {
		parts[i] = fmt.Sprintf("%d at %d B", AutoWindow(size, w.Producers), size)
	}
	return fmt.Sprintf("auto (min(%d, %d MiB / record size) / %s: %s)",
		AutoWindowRecords, AutoWindowBytes>>20, plural(max(1, w.Producers), "producer"), strings.Join(parts, ", "))
}

// plural is "1 producer" or "n producers".
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
