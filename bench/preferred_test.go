package bench

import (
	"io"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/raftmq/raftmq/clients"
	"github.com/raftmq/raftmq/protocol"
)

func TestPreferredLeadersLead(t *testing.T) {
	part := func(leader uint64, replicas ...uint64) protocol.PartitionInfo {
		return protocol.PartitionInfo{Leader: leader, Replicas: replicas}
	}
	cases := []struct {
		name  string
		parts []protocol.PartitionInfo
		want  bool
	}{
		{"no partitions", nil, false},
		{"preferred leads", []protocol.PartitionInfo{part(1, 1, 2, 3), part(2, 2, 3, 1)}, true},
		{"other replica leads", []protocol.PartitionInfo{part(1, 1, 2, 3), part(3, 2, 3, 1)}, false},
		{"no leader", []protocol.PartitionInfo{part(0, 1, 2, 3)}, false},
		{"no replicas", []protocol.PartitionInfo{part(1)}, false},
	}
	for _, c := range cases {
		if got := preferredLeadersLead(clients.TopicInfo{Partitions: c.parts}); got != c.want {
			t.Errorf("%s: preferredLeadersLead = %v, want %v", c.name, got, c.want)
		}
	}
}

func TestTransportSummarySumsBrokers(t *testing.T) {
	reg := prometheus.NewRegistry()
	for node, dropped := range map[string]float64{"1": 2, "2": 3} {
		c := prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "raftmq", Subsystem: "transport", Name: "frames_dropped_total",
			ConstLabels: prometheus.Labels{"node": node},
		})
		c.Add(dropped)
		reg.MustRegister(c)
	}
	other := prometheus.NewCounter(prometheus.CounterOpts{Name: "raftmq_produce_records_total"})
	other.Add(7)
	reg.MustRegister(other)
	got := transportSummary(reg)
	if got != "frames_dropped=5" {
		t.Fatalf("transportSummary = %q, want %q", got, "frames_dropped=5")
	}
	if s := brokerSummary(reg); strings.Contains(s, "produce_records") {
		t.Fatalf("brokerSummary reports an unrelated counter: %q", s)
	}
}

func TestTraceFlag(t *testing.T) {
	_, opts, err := parseFlags(KindProduce, []string{"--trace", "run.trace"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if opts.traceFile != "run.trace" {
		t.Fatalf("traceFile = %q, want run.trace", opts.traceFile)
	}
}
