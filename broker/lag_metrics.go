package broker

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/raftmq/raftmq/raft"
)

// consumerLagCollector reports every consumer group's lag on the
// partitions this broker leads (the leader's state is the current one), at
// scrape time: records between the committed offset and the high
// watermark, and the age in seconds of the oldest unconsumed record.
type consumerLagCollector struct {
	broker                            *Broker
	lagRecords, lagSeconds, committed *prometheus.Desc
}

func newConsumerLagCollector(b *Broker, constLabels prometheus.Labels) *consumerLagCollector {
	labels := []string{"group", "topic", "partition"}
	return &consumerLagCollector{
		broker: b,
		lagRecords: prometheus.NewDesc("raftmq_group_lag_records",
			"Records of the partition after the consumer group's committed offset (from the log start without one).", labels, constLabels),
		lagSeconds: prometheus.NewDesc("raftmq_group_lag_seconds",
			"Age of the oldest record the consumer group has not committed past (its batch's append time); 0 without lag.", labels, constLabels),
		committed: prometheus.NewDesc("raftmq_group_committed_offset",
			"The consumer group's committed offset of the partition.", labels, constLabels),
	}
}

func (c *consumerLagCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.lagRecords
	ch <- c.lagSeconds
	ch <- c.committed
}

func (c *consumerLagCollector) Collect(ch chan<- prometheus.Metric) {
	b := c.broker
	b.mu.RLock()
	replicas := make([]*partitionReplica, 0, len(b.groups))
	for _, r := range b.groups {
		replicas = append(replicas, r)
	}
	b.mu.RUnlock()
	now := time.Now()
	for _, r := range replicas {
		if r.group.Status().Role != raft.RoleLeader || r.state.consumers == nil {
			continue
		}
		records, _ := r.state.consumers.all()
		partition := strconv.FormatUint(uint64(r.partition), 10)
		for group, rec := range records {
			if rec.Deleted {
				continue
			}
			lagRecords, lagSeconds := consumerLag(r, rec, now)
			ch <- prometheus.MustNewConstMetric(c.lagRecords, prometheus.GaugeValue, float64(lagRecords), group, r.topic, partition)
			ch <- prometheus.MustNewConstMetric(c.lagSeconds, prometheus.GaugeValue, lagSeconds, group, r.topic, partition)
			if rec.Committed {
				ch <- prometheus.MustNewConstMetric(c.committed, prometheus.GaugeValue, float64(rec.Offset), group, r.topic, partition)
			}
		}
	}
}
