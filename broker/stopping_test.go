package broker

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/raftmq/raftmq/protocol"
)

// TestTransferTargetSkipsStoppingBrokers: a broker shutting down hands
// each leadership to a ready replica first, else to one that is alive,
// and never to a replica whose broker reported it is stopping too (the
// transfer would wait out an election timeout for nothing: a whole
// cluster stopped at once).
func TestTransferTargetSkipsStoppingBrokers(t *testing.T) {
	cfg := DefaultConfig()
	cfg.ID = 1
	now := time.Now()
	report := func(ready, stopping bool) brokerReport {
		return brokerReport{seen: now, status: protocol.BrokerStatus{Ready: ready, Stopping: stopping}}
	}
	stale := brokerReport{seen: now.Add(-time.Hour), status: protocol.BrokerStatus{Ready: true}}
	for _, tc := range []struct {
		name    string
		reports map[uint64]brokerReport
		want    uint64
	}{
		{"first ready", map[uint64]brokerReport{2: report(true, false), 3: report(true, false)}, 2},
		{"stopping skipped", map[uint64]brokerReport{2: report(false, true), 3: report(true, false)}, 3},
		{"all stopping", map[uint64]brokerReport{2: report(false, true), 3: report(false, true)}, 0},
		{"ready before alive", map[uint64]brokerReport{2: report(false, false), 3: report(true, false)}, 3},
		{"alive when none ready", map[uint64]brokerReport{2: report(false, false), 3: report(false, true)}, 2},
		{"silent brokers skipped", map[uint64]brokerReport{2: stale}, 0},
	} {
		b := &Broker{cfg: cfg, reports: tc.reports}
		if got := b.transferTarget([]uint64{1, 2, 3}); got != tc.want {
			t.Errorf("%s: transfer target %d, want %d", tc.name, got, tc.want)
		}
	}
}

// TestClosingBrokerReportsStopping: a broker that begins shutting down
// says so in a status report right away, before it hands off its
// leaderships, so that the other brokers of a cluster stopped at once do
// not hand theirs to it.
func TestClosingBrokerReportsStopping(t *testing.T) {
	cluster, client := startTestCluster(t, 3)
	client.createTopic("stopping", 3, 3)
	reports := make(chan protocol.BrokerStatus, 256)
	// Status reports travel in the peer account: listen where broker 1
	// does.
	sub, err := cluster.Broker(1).peerNC.Subscribe(protocol.SubjectClusterStatus(protocol.DefaultSubjectPrefix), func(msg *nats.Msg) {
		var status protocol.BrokerStatus
		if json.Unmarshal(msg.Data, &status) == nil && status.ID == 3 {
			select {
			case reports <- status:
			default:
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := cluster.Broker(1).peerNC.Flush(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := cluster.StopBroker(ctx, 3); err != nil {
		t.Fatalf("stop broker 3: %v", err)
	}
	// The report went out before the broker stopped; its delivery to
	// this subscription may come after.
	for {
		select {
		case status := <-reports:
			if status.Stopping {
				if status.Ready {
					t.Errorf("broker 3 reports stopping and ready: %+v", status)
				}
				return
			}
		case <-ctx.Done():
			t.Fatal("broker 3 stopped without reporting that it was stopping")
		}
	}
}

// TestStoppingBrokersComeFromReports: the brokers listed as stopping are
// those whose latest report says so, and this one once it is closing.
func TestStoppingBrokersComeFromReports(t *testing.T) {
	cfg := DefaultConfig()
	cfg.ID = 1
	b := &Broker{cfg: cfg, reports: map[uint64]brokerReport{
		2: {seen: time.Now(), status: protocol.BrokerStatus{ID: 2, Stopping: true}},
		3: {seen: time.Now(), status: protocol.BrokerStatus{ID: 3, Ready: true}},
	}}
	if got := b.stoppingBrokers(); !got[2] || got[3] || got[1] {
		t.Errorf("stopping brokers %v, want only 2", got)
	}
	b.closing = true
	if got := b.stoppingBrokers(); !got[1] || !got[2] || got[3] {
		t.Errorf("closing: stopping brokers %v, want 1 and 2", got)
	}
}
