package transport

import (
	"strconv"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// Stats is a snapshot of a transport's counters since it started.
type Stats struct {
	MessagesSent     uint64 // NATS messages published
	FramesSent       uint64 // frames inside them
	BytesSent        uint64 // payload bytes published
	MessagesReceived uint64 // NATS messages received
	FramesReceived   uint64 // frames handed to the handler
	BytesReceived    uint64 // payload bytes received
	FramesDropped    uint64 // frames dropped: too large, queue full, publish failed, no handler
	PublishErrors    uint64 // failed publishes (their frames are in FramesDropped)
	DecodeErrors     uint64 // inbound messages that failed to decode
	// SlowConsumerDrops counts inbound NATS messages the client dropped
	// before the handler saw them: the handler fell behind the peer
	// subscription's pending limits (a slow consumer). Raft resends.
	SlowConsumerDrops uint64
}

type stats struct {
	messagesSent, framesSent, bytesSent             atomic.Uint64
	messagesReceived, framesReceived, bytesReceived atomic.Uint64
	framesDropped, publishErrors, decodeErrors      atomic.Uint64
}

// Stats returns the current counters.
func (t *Transport) Stats() Stats {
	s := &t.stats
	return Stats{
		MessagesSent: s.messagesSent.Load(), FramesSent: s.framesSent.Load(), BytesSent: s.bytesSent.Load(),
		MessagesReceived: s.messagesReceived.Load(), FramesReceived: s.framesReceived.Load(), BytesReceived: s.bytesReceived.Load(),
		FramesDropped: s.framesDropped.Load(), PublishErrors: s.publishErrors.Load(), DecodeErrors: s.decodeErrors.Load(),
		SlowConsumerDrops: t.slowConsumerDrops(),
	}
}

// slowConsumerDrops reads the peer subscription's dropped-message count.
func (t *Transport) slowConsumerDrops() uint64 {
	sub := t.subscription.Load()
	if sub == nil {
		return 0
	}
	dropped, err := sub.Dropped()
	if err != nil { // unsubscribed (closed)
		return 0
	}
	return uint64(dropped)
}

func (t *Transport) registerMetrics(reg prometheus.Registerer) error {
	labels := prometheus.Labels{"node": strconv.FormatUint(t.nodeID, 10)}
	counter := func(name, help string, v *atomic.Uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: "raftmq", Subsystem: "transport", Name: name, Help: help, ConstLabels: labels,
		}, func() float64 { return float64(v.Load()) })
	}
	s := &t.stats
	collectors := []prometheus.Collector{
		counter("messages_sent_total", "NATS messages published to peers.", &s.messagesSent),
		counter("frames_sent_total", "Frames published to peers.", &s.framesSent),
		counter("bytes_sent_total", "Payload bytes published to peers.", &s.bytesSent),
		counter("messages_received_total", "NATS messages received from peers.", &s.messagesReceived),
		counter("frames_received_total", "Frames received from peers and handed to the handler.", &s.framesReceived),
		counter("bytes_received_total", "Payload bytes received from peers.", &s.bytesReceived),
		counter("frames_dropped_total", "Frames dropped: too large, send queue full, publish failed, or no handler.", &s.framesDropped),
		counter("publish_errors_total", "Failed NATS publishes.", &s.publishErrors),
		counter("decode_errors_total", "Inbound peer messages that failed to decode.", &s.decodeErrors),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: "raftmq", Subsystem: "transport", Name: "slow_consumer_dropped_messages_total",
			Help:        "Inbound peer messages dropped by the NATS client because the handler fell behind the subscription's pending limits.",
			ConstLabels: labels,
		}, func() float64 { return float64(t.slowConsumerDrops()) }),
	}
	for i, c := range collectors {
		if err := reg.Register(c); err != nil {
			for _, done := range collectors[:i] {
				reg.Unregister(done)
			}
			return err
		}
	}
	t.registerer, t.collectors = reg, collectors
	return nil
}

func (t *Transport) unregisterMetrics() {
	for _, c := range t.collectors {
		t.registerer.Unregister(c)
	}
	t.collectors = nil
}
