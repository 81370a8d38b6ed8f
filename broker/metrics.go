package broker

import (
	"encoding/binary"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/raftmq/raftmq/protocol"
	"github.com/raftmq/raftmq/raft"
	"github.com/raftmq/raftmq/segmentlog"
)

// brokerMetrics holds the broker's Prometheus metrics. Per-partition values
// are collected at scrape time (partitionCollector), so replicas that go
// away leave no stale series.
type brokerMetrics struct {
	registerer prometheus.Registerer
	collectors []prometheus.Collector

	produceRequests *prometheus.CounterVec
	produceRecords  prometheus.Counter
	produceBytes    prometheus.Counter
	produceLatency  prometheus.Histogram
	fetchRequests   *prometheus.CounterVec
	fetchBytes      prometheus.Counter
	fetchLatency    prometheus.Histogram
	fsyncLatency    prometheus.Histogram
	replicaFailures prometheus.Counter
}

func newBrokerMetrics(reg prometheus.Registerer, b *Broker) (*brokerMetrics, error) {
	constLabels := prometheus.Labels{"broker": strconv.FormatUint(b.cfg.ID, 10)}
	latencyBuckets := prometheus.ExponentialBuckets(0.0001, 2, 18) // 100µs .. ~13s
	m := &brokerMetrics{
		registerer: reg,
		produceRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "raftmq_produce_requests_total", Help: "Produce requests by result (ok or error code).", ConstLabels: constLabels,
		}, []string{"result"}),
		produceRecords: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "raftmq_produce_records_total", Help: "Records acknowledged to producers.", ConstLabels: constLabels,
		}),
		produceBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "raftmq_produce_bytes_total", Help: "Record batch bytes acknowledged to producers.", ConstLabels: constLabels,
		}),
		produceLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "raftmq_produce_latency_seconds", Help: "Produce request time from receipt to acknowledgement (commit latency with acks=quorum).",
			ConstLabels: constLabels, Buckets: latencyBuckets,
		}),
		fetchRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "raftmq_fetch_requests_total", Help: "Fetch requests by result (ok or error code).", ConstLabels: constLabels,
		}, []string{"result"}),
		fetchBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "raftmq_fetch_bytes_total", Help: "Record batch bytes served to consumers.", ConstLabels: constLabels,
		}),
		fetchLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "raftmq_fetch_latency_seconds", Help: "Fetch request time, long-poll wait included.", ConstLabels: constLabels, Buckets: latencyBuckets,
		}),
		fsyncLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "raftmq_log_sync_latency_seconds", Help: "Time of one log Sync (fsync) issued by Raft.", ConstLabels: constLabels, Buckets: latencyBuckets,
		}),
		replicaFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "raftmq_replica_failures_total", Help: "Replicas stopped by an error (a failed log write or fsync, a state machine error): partition replicas, each restarted after a backoff, and the controller replica, which is not.",
			ConstLabels: constLabels,
		}),
	}
	failedNow := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "raftmq_replicas_failed", Help: "Partition replicas stopped by an error and not restarted yet (the broker status's failed_replicas).",
		ConstLabels: constLabels,
	}, func() float64 { return float64(len(b.failedReplicas())) })
	m.collectors = []prometheus.Collector{m.produceRequests, m.produceRecords, m.produceBytes, m.produceLatency,
		m.fetchRequests, m.fetchBytes, m.fetchLatency, m.fsyncLatency, m.replicaFailures, failedNow,
		newPartitionCollector(b, constLabels), newConsumerLagCollector(b, constLabels)}
	if reg == nil {
		return m, nil
	}
	for i, c := range m.collectors {
		if err := reg.Register(c); err != nil {
			for _, done := range m.collectors[:i] {
				reg.Unregister(done)
			}
			return nil, err
		}
	}
	return m, nil
}

func (m *brokerMetrics) unregister() {
	if m.registerer == nil {
		return
	}
	for _, c := range m.collectors {
		m.registerer.Unregister(c)
	}
}

func resultLabel(e *protocol.Error) string {
	if e == nil {
		return "ok"
	}
	return e.Code.String()
}

func (m *brokerMetrics) observeProduce(e *protocol.Error, records, bytes int, start time.Time) {
	m.produceRequests.WithLabelValues(resultLabel(e)).Inc()
	if e == nil {
		m.produceRecords.Add(float64(records))
		m.produceBytes.Add(float64(bytes))
		m.produceLatency.Observe(time.Since(start).Seconds())
	}
}

// observeFetch reads the result from an encoded FetchReply.
func (m *brokerMetrics) observeFetch(reply []byte, start time.Time) {
	result := "ok"
	if len(reply) >= 3 {
		if code := protocol.ErrorCode(binary.LittleEndian.Uint16(reply[1:3])); code != protocol.CodeNone {
			result = code.String()
		} else if len(reply) > fetchReplyHeaderSize {
			m.fetchBytes.Add(float64(len(reply) - fetchReplyHeaderSize))
		}
	}
	m.fetchRequests.WithLabelValues(result).Inc()
	m.fetchLatency.Observe(time.Since(start).Seconds())
}

// timedLog is a partition's log as Raft sees it: Sync is timed.
type timedLog struct {
	*segmentlog.Log
	latency prometheus.Observer
}

func (l timedLog) Sync() (uint64, error) {
	start := time.Now()
	index, err := l.Log.Sync()
	l.latency.Observe(time.Since(start).Seconds())
	return index, err
}

var _ raft.LogStorage = timedLog{}

// partitionCollector reports every local replica's Raft and log state.
type partitionCollector struct {
	broker                                                   *Broker
	leader, term, commit, applied, highWatermark, logStart   *prometheus.Desc
	segments, segmentBytes, controllerLeader, controllerTerm *prometheus.Desc
}

func newPartitionCollector(b *Broker, constLabels prometheus.Labels) *partitionCollector {
	labels := []string{"topic", "partition"}
	desc := func(name, help string, variable []string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, variable, constLabels)
	}
	return &partitionCollector{
		broker:           b,
		leader:           desc("raftmq_partition_leader", "1 when this broker leads the partition's Raft group.", labels),
		term:             desc("raftmq_partition_raft_term", "Raft term of the partition replica.", labels),
		commit:           desc("raftmq_partition_commit_index", "Raft commit index of the partition replica.", labels),
		applied:          desc("raftmq_partition_applied_index", "Raft applied index of the partition replica.", labels),
		highWatermark:    desc("raftmq_partition_high_watermark", "Offset after the last committed and applied record.", labels),
		logStart:         desc("raftmq_partition_log_start_offset", "First record offset the replica holds.", labels),
		segments:         desc("raftmq_partition_segments", "Segment files of the partition replica's log.", labels),
		segmentBytes:     desc("raftmq_partition_segment_bytes", "Bytes of the partition replica's log segments.", labels),
		controllerLeader: desc("raftmq_controller_leader", "1 when this broker leads the controller group.", nil),
		controllerTerm:   desc("raftmq_controller_raft_term", "Raft term of the controller replica.", nil),
	}
}

func (c *partitionCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.leader, c.term, c.commit, c.applied, c.highWatermark, c.logStart, c.segments, c.segmentBytes, c.controllerLeader, c.controllerTerm} {
		ch <- d
	}
}

func (c *partitionCollector) Collect(ch chan<- prometheus.Metric) {
	b := c.broker
	b.mu.RLock()
	replicas := make([]*partitionReplica, 0, len(b.groups))
	for _, r := range b.groups {
		replicas = append(replicas, r)
	}
	b.mu.RUnlock()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	boolValue := func(v bool) float64 {
		if v {
			return 1
		}
		return 0
	}
	for _, r := range replicas {
		st := r.group.Status()
		_, highWatermark, _ := r.state.visible()
		labels := []string{r.topic, strconv.FormatUint(uint64(r.partition), 10)}
		gauge(c.leader, boolValue(st.Role == raft.RoleLeader), labels...)
		gauge(c.term, float64(st.Term), labels...)
		gauge(c.commit, float64(st.CommitIndex), labels...)
		gauge(c.applied, float64(st.AppliedIndex), labels...)
		gauge(c.highWatermark, float64(highWatermark), labels...)
		gauge(c.logStart, float64(r.log.FirstOffset()), labels...)
		gauge(c.segments, float64(r.log.SegmentCount()), labels...)
		gauge(c.segmentBytes, float64(r.log.SizeBytes()), labels...)
	}
	if b.controller != nil {
		st := b.controller.group.Status()
		gauge(c.controllerLeader, boolValue(st.Role == raft.RoleLeader))
		gauge(c.controllerTerm, float64(st.Term))
	}
}

// Handler serves /metrics (when Config.Registerer is also a
// prometheus.Gatherer), /healthz (the process is up) and /readyz (the
// broker serves requests; 503 otherwise).
func (b *Broker) Handler() http.Handler {
	mux := http.NewServeMux()
	if gatherer, ok := b.cfg.Registerer.(prometheus.Gatherer); ok {
		mux.Handle("/metrics", promhttp.HandlerFor(gatherer, promhttp.HandlerOpts{}))
	}
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if why := b.notReadyBecause(); why != "" {
			http.Error(w, "not ready: "+why, http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	return mux
}
