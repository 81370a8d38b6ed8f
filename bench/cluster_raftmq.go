package bench

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/raftmq/raftmq/broker"
)

// inProcessCluster is the broker package's development cluster: w.Brokers
// brokers in this process, each connected in-process to its own embedded
// NATS server, the servers routed into one NATS cluster, data on disk
// under dir.
type inProcessCluster struct {
	dev *broker.DevCluster
	// reg holds every broker's metrics; close reports the peer
	// transport's counters from it (transportSummary).
	reg *prometheus.Registry
	// report receives the transport summary at close; nil discards it.
	report io.Writer
}

// startRaftmqCluster starts the brokers with data under dir and waits until
// they are ready.
func startRaftmqCluster(ctx context.Context, dir string, w Workload) (raftmqCluster, error) {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	reg := prometheus.NewRegistry()
	var logger *slog.Logger
	if path := os.Getenv("RAFTMQ_BENCH_BROKER_LOG"); path != "" {
		f, err := os.Create(path)
		if err != nil {
			return nil, fmt.Errorf("bench: broker log: %w", err)
		}
		logger = slog.New(slog.NewTextHandler(f, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	// Each broker reaches its own server in-process, as a broker with an
	// embedded server does; the bench's clients connect over TCP, as
	// JetStream's do. RAFTMQ_BENCH_BROKER_TCP=1 connects the brokers over
	// TCP loopback too, to measure what the in-process pipe saves.
	dev, err := broker.StartDev(ctx, broker.DevConfig{
		Nodes: w.Brokers, DataDir: dir, ClientListen: "127.0.0.1:0", Registerer: reg, Logger: logger,
		BrokersOverTCP: os.Getenv("RAFTMQ_BENCH_BROKER_TCP") == "1",
	})
	if err != nil {
		return nil, fmt.Errorf("bench: start raftmq dev cluster: %w", err)
	}
	return &inProcessCluster{dev: dev, reg: reg, report: os.Stderr}, nil
}

func (c *inProcessCluster) urls() []string { return c.dev.ClientURLs() }

func (c *inProcessCluster) close() error {
	// The transports unregister their metrics when the brokers stop.
	if c.report != nil {
		if s := transportSummary(c.reg); s != "" {
			fmt.Fprintln(c.report, "raftmq peer transport (all brokers):", s)
		}
		if s := brokerSummary(c.reg); s != "" {
			fmt.Fprintln(c.report, "raftmq brokers:", s)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return c.dev.Close(ctx)
}

// transportSummary sums the peer transport's counters over every broker
// in reg: frames and messages sent, frames dropped (send queue full or
// publish failed) and messages the NATS client dropped for a slow handler.
// Lost frames cost Raft a resend, so a non-zero drop count explains stalls.
func transportSummary(reg prometheus.Gatherer) string {
	families, err := reg.Gather()
	if err != nil {
		return "gather: " + err.Error()
	}
	const prefix = "raftmq_transport_"
	sums := map[string]float64{}
	for _, f := range families {
		name := f.GetName()
		if !strings.HasPrefix(name, prefix) {
			continue
		}
		for _, m := range f.GetMetric() {
			if ctr := m.GetCounter(); ctr != nil {
				sums[strings.TrimSuffix(strings.TrimPrefix(name, prefix), "_total")] += ctr.GetValue()
			}
		}
	}
	names := make([]string, 0, len(sums))
	for n := range sums {
		names = append(names, n)
	}
	sort.Strings(names)
	var b strings.Builder
	for i, n := range names {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%s=%.0f", n, sums[n])
	}
	return b.String()
}

// brokerSummary reports, over every broker in reg, produce requests by
// result and the bucket bounds of the produce and log sync latency
// percentiles, to tell slow disks and refused produce requests (leadership
// moving) from slow replication.
func brokerSummary(reg prometheus.Gatherer) string {
	families, err := reg.Gather()
	if err != nil {
		return "gather: " + err.Error()
	}
	var b strings.Builder
	for _, f := range families {
		switch f.GetName() {
		case "raftmq_produce_requests_total":
			results := map[string]float64{}
			for _, m := range f.GetMetric() {
				for _, l := range m.GetLabel() {
					if l.GetName() == "result" {
						results[l.GetValue()] += m.GetCounter().GetValue()
					}
				}
			}
			keys := make([]string, 0, len(results))
			for k := range results {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				fmt.Fprintf(&b, "produce_%s=%.0f ", k, results[k])
			}
		case "raftmq_produce_latency_seconds", "raftmq_log_sync_latency_seconds":
			var count uint64
			var sum float64
			buckets := map[float64]uint64{}
			for _, m := range f.GetMetric() {
				h := m.GetHistogram()
				count += h.GetSampleCount()
				sum += h.GetSampleSum()
				for _, bk := range h.GetBucket() {
					buckets[bk.GetUpperBound()] += bk.GetCumulativeCount()
				}
			}
			bounds := make([]float64, 0, len(buckets))
			for ub := range buckets {
				bounds = append(bounds, ub)
			}
			sort.Float64s(bounds)
			quantile := func(q float64) float64 {
				for _, ub := range bounds {
					if float64(buckets[ub]) >= q*float64(count) {
						return ub
					}
				}
				return -1 // above the largest bucket
			}
			name := strings.TrimSuffix(strings.TrimPrefix(f.GetName(), "raftmq_"), "_latency_seconds")
			mean := 0.0
			if count > 0 {
				mean = sum / float64(count)
			}
			fmt.Fprintf(&b, "%s: n=%d mean=%.1fms p50<=%gms p99<=%gms p99.9<=%gms ", name, count, mean*1e3,
				quantile(0.5)*1e3, quantile(0.99)*1e3, quantile(0.999)*1e3)
		}
	}
	return strings.TrimSpace(b.String())
}
