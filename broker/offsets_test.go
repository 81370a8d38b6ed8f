package broker

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/raftmq/raftmq/protocol"
)

// groupCall sends a JSON request to a broker subject and decodes the reply.
func (c *testClient) groupCall(broker uint64, subject func(string, uint64) string, req, reply any) error {
	data, _ := json.Marshal(req)
	out, err := c.request(subject(c.prefix, broker), data)
	if err != nil {
		return err
	}
	return json.Unmarshal(out, reply)
}

// commitOne commits one partition's offset at its leader, following
// not-leader answers and retrying retriable errors until ctx ends.
func (c *leaderClient) commitOne(ctx context.Context, group string, po protocol.PartitionOffset) *protocol.Error {
	for attempt := 0; ; attempt++ {
		if ctx.Err() != nil {
			return protocol.Errorf(protocol.CodeTimeout, "%v", ctx.Err())
		}
		var reply protocol.OffsetCommitReply
		err := c.groupCall(c.leader, protocol.SubjectBrokerCommit, protocol.OffsetCommitRequest{Version: 1, Group: group, Member: "m", Offsets: []protocol.PartitionOffset{po}}, &reply)
		var e *protocol.Error
		switch {
		case err != nil:
			c.leader = c.leader%uint64(c.nodes) + 1
			continue
		case reply.Error != nil:
			e = reply.Error
		default:
			e = reply.Results[0].Error
		}
		if e == nil || !e.Retriable() {
			return e
		}
		if e.Code == protocol.CodeNotLeader && e.Leader != 0 {
			c.leader = e.Leader
		} else {
			c.leader = c.leader%uint64(c.nodes) + 1
			waitBackoff(ctx, attempt)
		}
	}
}

// committed reads one partition's committed offset at its leader.
func (c *leaderClient) committed(ctx context.Context, group string, gp protocol.GroupPartition, claim bool) (protocol.CommittedOffset, *protocol.Error) {
	for attempt := 0; ; attempt++ {
		if ctx.Err() != nil {
			return protocol.CommittedOffset{}, protocol.Errorf(protocol.CodeTimeout, "%v", ctx.Err())
		}
		var reply protocol.OffsetFetchReply
		err := c.groupCall(c.leader, protocol.SubjectBrokerCommitted, protocol.OffsetFetchRequest{Version: 1, Group: group, Member: "m", Claim: claim, Partitions: []protocol.GroupPartition{gp}}, &reply)
		if err != nil {
			c.leader = c.leader%uint64(c.nodes) + 1
			continue
		}
		e := reply.Error
		if e == nil {
			e = reply.Partitions[0].Error
		}
		if e == nil {
			return reply.Partitions[0], nil
		}
		if !e.Retriable() {
			return protocol.CommittedOffset{}, e
		}
		if e.Code == protocol.CodeNotLeader && e.Leader != 0 {
			c.leader = e.Leader
		} else {
			c.leader = c.leader%uint64(c.nodes) + 1
			waitBackoff(ctx, attempt)
		}
	}
}

func TestOffsetCommitRulesAndReplicaAgreement(t *testing.T) {
	cluster, client := startTestCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	client.createTopic("commits", 2, 3)
	c := &leaderClient{testClient: client, leader: 1, nodes: 3, acks: protocol.AcksApplied}
	for i := range 5 {
		if _, err := c.produce(ctx, "commits", 0, buildBatch(t, fmt.Sprintf("v%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	p0 := protocol.GroupPartition{Topic: "commits", Partition: 0}

	got, e := c.committed(ctx, "g1", p0, false)
	// A produce retried after a lost reply may have written a batch twice.
	hw := got.HighWatermark
	if e != nil || got.Committed || hw < 5 || got.LagRecords != hw {
		t.Fatalf("before any commit: %+v %v", got, e)
	}
	if got.LagSeconds < 0 || got.LagSeconds > 60 {
		t.Fatalf("lag seconds %v", got.LagSeconds)
	}
	if e := c.commitOne(ctx, "g1", protocol.PartitionOffset{Topic: "commits", Offset: 3, Epoch: 2, Metadata: "m3"}); e != nil {
		t.Fatalf("commit: %v", e)
	}
	got, e = c.committed(ctx, "g1", p0, false)
	if e != nil || !got.Committed || got.Offset != 3 || got.Metadata != "m3" || got.Epoch != 2 || got.LagRecords != hw-3 || got.CommitTime.IsZero() {
		t.Fatalf("after commit: %+v %v", got, e)
	}
	expect := func(name string, e *protocol.Error, code protocol.ErrorCode) {
		t.Helper()
		if e == nil || e.Code != code {
			t.Fatalf("%s: got %v, want %v", name, e, code)
		}
	}
	expect("beyond high watermark", c.commitOne(ctx, "g1", protocol.PartitionOffset{Topic: "commits", Offset: hw + 1, Epoch: 2}), protocol.CodeOffsetOutOfRange)
	expect("stale epoch", c.commitOne(ctx, "g1", protocol.PartitionOffset{Topic: "commits", Offset: 4, Epoch: 1}), protocol.CodeStaleEpoch)
	expect("bad partition", c.commitOne(ctx, "g1", protocol.PartitionOffset{Topic: "commits", Partition: 7, Offset: 0}), protocol.CodeBadPartition)
	expect("bad group name", c.commitOne(ctx, "g 1", protocol.PartitionOffset{Topic: "commits", Offset: 0}), protocol.CodeInvalidArgument)
	// A claim with a newer epoch fences the previous owner.
	claimed, e := c.committed(ctx, "g1", protocol.GroupPartition{Topic: "commits", Epoch: 9}, true)
	if e != nil || claimed.Offset != 3 || claimed.Epoch != 9 {
		t.Fatalf("claim: %+v %v", claimed, e)
	}
	expect("fenced by claim", c.commitOne(ctx, "g1", protocol.PartitionOffset{Topic: "commits", Offset: 5, Epoch: 2}), protocol.CodeStaleEpoch)
	if e := c.commitOne(ctx, "g1", protocol.PartitionOffset{Topic: "commits", Offset: 5, Epoch: 9}); e != nil {
		t.Fatalf("commit by the new owner: %v", e)
	}
	// Unknown topic is retriable (metadata may be spreading); it must not
	// be accepted.
	var reply protocol.OffsetCommitReply
	if err := client.groupCall(c.leader, protocol.SubjectBrokerCommit, protocol.OffsetCommitRequest{Group: "g1",
		Offsets: []protocol.PartitionOffset{{Topic: "nope"}}}, &reply); err != nil {
		t.Fatal(err)
	}
	expect("unknown topic", reply.Results[0].Error, protocol.CodeUnknownTopic)

	// One request, many partitions, and the delete op. These go to the
	// leader of partition 0 as the test last knew it; leadership can move
	// meanwhile (a loaded machine, or a transfer to the preferred replica),
	// so not_leader and not_ready answers for partition 0 are followed
	// (commitAtLeader).
	commitAtLeader := func(req protocol.OffsetCommitRequest) protocol.OffsetCommitReply {
		t.Helper()
		for attempt := 0; ; attempt++ {
			var reply protocol.OffsetCommitReply
			err := client.groupCall(c.leader, protocol.SubjectBrokerCommit, req, &reply)
			var e *protocol.Error
			switch {
			case err != nil:
				c.leader = c.leader%uint64(c.nodes) + 1
			case len(reply.Results) == 0:
				t.Fatalf("commit %+v: reply %+v", req, reply)
			default:
				if e = reply.Results[0].Error; e == nil || e.Code != protocol.CodeNotLeader && e.Code != protocol.CodeNotReady {
					return reply
				}
				// not_ready (a leadership transfer in progress, as the
				// broker moves leadership to the preferred replica): ask
				// the same broker again.
				switch {
				case e.Code == protocol.CodeNotLeader && e.Leader != 0:
					c.leader = e.Leader
				case e.Code == protocol.CodeNotLeader:
					c.leader = c.leader%uint64(c.nodes) + 1
				}
			}
			if ctx.Err() != nil {
				t.Fatalf("commit %+v: no leader answered: %v %v", req, err, e)
			}
			waitBackoff(ctx, attempt)
		}
	}
	reply = commitAtLeader(protocol.OffsetCommitRequest{Group: "g2", Offsets: []protocol.PartitionOffset{
		{Topic: "commits", Partition: 0, Offset: 1}, {Topic: "commits", Partition: 1, Offset: 0}}})
	if reply.Results[0].Error != nil {
		t.Fatalf("batched commit: %+v", reply.Results)
	}
	if e := c.commitOne(ctx, "g2", protocol.PartitionOffset{Topic: "commits", Offset: 1}); e != nil {
		t.Fatal(e)
	}
	reply = commitAtLeader(protocol.OffsetCommitRequest{Group: "g2", Op: protocol.CommitOpDelete,
		Offsets: []protocol.PartitionOffset{{Topic: "commits"}}})
	if reply.Results[0].Error != nil {
		t.Fatalf("delete: %+v", reply)
	}
	if got, e := c.committed(ctx, "g2", p0, false); e != nil || got.Committed {
		t.Fatalf("after delete: %+v %v", got, e)
	}

	// Every replica holds the same consumer state at the same applied index.
	waitReplicasAgree(ctx, t, cluster, "commits", 0)

	// The leader exports the group's lag.
	if _, err := c.produce(ctx, "commits", 0, buildBatch(t, "late")); err != nil {
		t.Fatal(err)
	}
	// The series comes from whichever broker leads at scrape time: if
	// leadership just moved, the new leader may not show it (or the late
	// record) yet, so this waits until it does.
	lag := func() (float64, bool) {
		families, err := cluster.cfg.Registerer.(prometheus.Gatherer).Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, family := range families {
			if family.GetName() != "raftmq_group_lag_records" {
				continue
			}
			for _, metric := range family.GetMetric() {
				labels := map[string]string{}
				for _, l := range metric.GetLabel() {
					labels[l.GetName()] = l.GetValue()
				}
				if labels["group"] == "g1" && labels["topic"] == "commits" && labels["partition"] == "0" {
					return metric.GetGauge().GetValue(), true
				}
			}
		}
		return 0, false
	}
	for attempt := 0; ; attempt++ {
		v, found := lag()
		if found && v >= float64(hw+1-5) {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("lag of g1: %v records (series found: %v), want at least %d", v, found, hw+1-5)
		}
		waitBackoff(ctx, attempt)
	}
}

// waitReplicasAgree waits until every broker's replica of a partition
// applied the same index and then compares their consumer state.
func waitReplicasAgree(ctx context.Context, t *testing.T, cluster *DevCluster, topic string, partition uint32) map[string]consumerRecord {
	t.Helper()
	for attempt := 0; ; attempt++ {
		var states []map[string]consumerRecord
		var indexes []uint64
		for id := uint64(1); id <= 3; id++ {
			b := cluster.Broker(id)
			if b == nil {
				continue
			}
			b.mu.RLock()
			r := b.partitions[topicPartition{topic, partition}]
			b.mu.RUnlock()
			if r == nil {
				continue
			}
			state, index := r.state.consumers.all()
			states, indexes = append(states, state), append(indexes, index)
		}
		same := len(states) == 3
		for i := 1; same && i < len(states); i++ {
			same = indexes[i] == indexes[0]
		}
		if same {
			for i := 1; i < len(states); i++ {
				if !reflect.DeepEqual(states[i], states[0]) {
					t.Fatalf("replicas differ at applied index %d:\n%+v\n%+v", indexes[0], states[0], states[i])
				}
			}
			return states[0]
		}
		if ctx.Err() != nil {
			t.Fatalf("replicas never reached the same applied index: %v", indexes)
		}
		waitBackoff(ctx, attempt)
	}
}

// TestOffsetCommitsSurviveLeaderFailover commits increasing offsets while
// the partition leader is stopped and restarted twice. No acknowledged
// commit may be lost, and no read may return an offset older than one
// acknowledged before the read started (no stale read from a new leader).
func TestOffsetCommitsSurviveLeaderFailover(t *testing.T) {
	cluster, client := startTestCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	client.createTopic("failover-commits", 1, 3)
	producer := &leaderClient{testClient: client, leader: 1, nodes: 3, acks: protocol.AcksApplied}
	const records = 100000
	values := make([]string, 1000)
	for i := range values {
		values[i] = "x"
	}
	batch := buildBatch(t, values...)
	for range records / len(values) {
		if _, err := producer.produce(ctx, "failover-commits", 0, batch); err != nil {
			t.Fatal(err)
		}
	}

	var mu sync.Mutex
	var acked uint64 // highest acknowledged commit
	stop := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	wg.Go(func() {
		c := &leaderClient{testClient: client, leader: 1, nodes: 3}
		for offset := uint64(1); offset < records; offset++ {
			select {
			case <-stop:
				return
			default:
			}
			if e := c.commitOne(ctx, "ledger", protocol.PartitionOffset{Topic: "failover-commits", Offset: offset}); e != nil {
				if e.Code == protocol.CodeTimeout {
					continue // unknown outcome; a later commit supersedes it
				}
				errs <- fmt.Errorf("commit %d: %v", offset, e)
				return
			}
			mu.Lock()
			acked = offset
			mu.Unlock()
		}
	})
	reads := 0
	wg.Go(func() {
		c := &leaderClient{testClient: client, leader: 2, nodes: 3}
		for {
			select {
			case <-stop:
				return
			default:
			}
			mu.Lock()
			floor := acked
			mu.Unlock()
			got, e := c.committed(ctx, "ledger", protocol.GroupPartition{Topic: "failover-commits"}, false)
			if e != nil {
				errs <- fmt.Errorf("read: %v", e)
				return
			}
			if got.Offset < floor {
				errs <- fmt.Errorf("stale read: offset %d after commit %d was acknowledged", got.Offset, floor)
				return
			}
			reads++
		}
	})
	waitAcked := func(n uint64) {
		t.Helper()
		for attempt := 0; ; attempt++ {
			mu.Lock()
			done := acked >= n
			mu.Unlock()
			if done {
				return
			}
			select {
			case err := <-errs:
				t.Fatal(err)
			default:
			}
			if ctx.Err() != nil {
				t.Fatalf("waiting for commit %d", n)
			}
			waitBackoff(ctx, 0)
		}
	}
	for round := range 2 {
		waitAcked(uint64(50 + round*100))
		leader := currentLeader(t, client, "failover-commits")
		if err := cluster.StopBroker(ctx, leader); err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		base := acked
		mu.Unlock()
		waitAcked(base + 30)
		if err := cluster.StartBroker(ctx, leader); err != nil {
			t.Fatal(err)
		}
	}
	mu.Lock()
	target := acked + 20
	mu.Unlock()
	waitAcked(target)
	close(stop)
	wg.Wait()
	select {
	case err := <-errs:
		t.Fatal(err)
	default:
	}
	reader := &leaderClient{testClient: client, leader: 1, nodes: 3}
	got, e := reader.committed(ctx, "ledger", protocol.GroupPartition{Topic: "failover-commits"}, false)
	if e != nil || got.Offset < acked {
		t.Fatalf("final committed offset %+v (%v), last acknowledged %d", got, e, acked)
	}
	state := waitReplicasAgree(ctx, t, cluster, "failover-commits", 0)
	if state["ledger"].Offset != got.Offset {
		t.Fatalf("replicas hold %d, leader answered %d", state["ledger"].Offset, got.Offset)
	}
	t.Logf("%d commits acknowledged, %d reads checked", acked, reads)
}
