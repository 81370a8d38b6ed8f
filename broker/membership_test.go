package broker

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/raftmq/raftmq/protocol"
	"github.com/raftmq/raftmq/transport"
)

// startMembershipCluster starts three bootstrap brokers with small segments
// and retention run by the test (runRetention), plus, when extra > 0,
// brokers 4.. that are not in Bootstrap, added to the dev cluster.
func startMembershipCluster(t *testing.T, ctx context.Context, extra int) (*DevCluster, *testClient) {
	t.Helper()
	cluster, err := StartDev(ctx, DevConfig{
		Nodes: 3, DataDir: t.TempDir(), ClientListen: "127.0.0.1:0", Registerer: prometheus.NewRegistry(),
		Configure: func(c *Config) {
			fastTimings(c)
			c.Log.SegmentMaxBytes = 8 << 10
			c.Retention = RetentionConfig{MaxAge: 0, MaxBytes: 0, CheckInterval: time.Hour, SnapshotsKept: 2}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := cluster.Close(ctx); err != nil {
			t.Errorf("close cluster: %v", err)
		}
	})
	_, client := startTestClient(t, cluster)
	for i := range extra {
		addBroker(t, ctx, cluster, uint64(4+i))
	}
	return cluster, client
}

// addBroker starts a broker outside Bootstrap in the dev cluster, connected
// to broker 1's NATS server, and waits until the controller registered it.
func addBroker(t *testing.T, ctx context.Context, cluster *DevCluster, id uint64) {
	t.Helper()
	cluster.mu.Lock()
	cfg := cluster.configs[1]
	cfg.ID = id
	cfg.DataDir = filepath.Join(filepath.Dir(cfg.DataDir), fmt.Sprintf("broker-%d", id))
	cfg.NATS = NATSConfig{Connect: transport.ConnectConfig{URLs: []string{cluster.servers[0].ClientURL()}}}
	cluster.configs[id] = cfg
	cluster.mu.Unlock()
	if err := cluster.StartBroker(ctx, id); err != nil {
		t.Fatal(err)
	}
	for attempt := 0; ; attempt++ {
		registered := true
		for _, b := range cluster.running() {
			registered = registered && slices.Contains(b.currentMetadata().Brokers, id) && b.aliveBrokers()[id]
		}
		if registered {
			return
		}
		if ctx.Err() != nil {
			t.Fatalf("broker %d never registered", id)
		}
		waitBriefly(ctx, attempt)
	}
}

// running lists the running brokers.
func (c *DevCluster) running() []*Broker {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]*Broker, 0, len(c.brokers))
	for _, b := range c.brokers {
		out = append(out, b)
	}
	return out
}

// ackedRecord is a record a producer had acknowledged.
type ackedRecord struct {
	offset uint64
	value  string
}

// produceContinuously produces one-record batches (acks=quorum) until stop
// is closed and returns every acknowledged record.
func produceContinuously(ctx context.Context, t *testing.T, c *leaderClient, topic string, stop <-chan struct{}) func() []ackedRecord {
	var (
		mu    sync.Mutex
		acked []ackedRecord
		wg    sync.WaitGroup
	)
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			value := fmt.Sprintf("record-%06d-%s", i, strings.Repeat("x", 400))
			offset, err := c.produce(ctx, topic, 0, buildBatch(t, value))
			if err != nil {
				if ctx.Err() == nil {
					t.Errorf("produce %d: %v", i, err)
				}
				return
			}
			mu.Lock()
			acked = append(acked, ackedRecord{offset, value})
			mu.Unlock()
		}
	})
	return func() []ackedRecord {
		wg.Wait()
		mu.Lock()
		defer mu.Unlock()
		return acked
	}
}

// waitFor polls cond until it holds or ctx ends.
func waitFor(ctx context.Context, t *testing.T, what string, cond func() bool) {
	t.Helper()
	for attempt := 0; !cond(); attempt++ {
		if ctx.Err() != nil {
			t.Fatalf("timed out waiting for %s", what)
		}
		waitBriefly(ctx, attempt)
	}
}

// partitionMetaOn is partition 0 of topic in broker b's metadata.
func partitionMetaOn(b *Broker, topic string) (partitionMeta, bool) {
	t := b.currentMetadata().Topics[topic]
	if t == nil || len(t.Partitions) == 0 {
		return partitionMeta{}, false
	}
	return t.Partitions[0], true
}

// localReplica is broker b's replica of topic/0, nil without one.
func localReplica(b *Broker, topic string) *partitionReplica {
	if b == nil {
		return nil
	}
	b.mu.RLock()
	defer b.mu.RUnlock()
	return b.partitions[topicPartition{topic, 0}]
}

// leaderReplica is the replica of topic/0 that leads, nil when none does.
func leaderReplica(cluster *DevCluster, topic string) *partitionReplica {
	for _, b := range cluster.running() {
		if r := localReplica(b, topic); r != nil && r.group.Status().Role.String() == "leader" {
			return r
		}
	}
	return nil
}

// TestReassignPartitionToNewBrokerWhileProducing is issue 4's "grow while
// producers keep publishing" and issue 6's "a broker added afterwards gets
// snapshot plus segments": a fourth broker joins after retention deleted
// the partition's first segments, the partition moves from {1,2,3} to
// {1,2,4} while a producer keeps publishing with acks=quorum, and then
// broker 4 holds every acknowledged record at its offset, the same bytes as
// the leader from the leader's log start (its log starts exactly there: the
// snapshot ends at a segment boundary), and the same group offsets, while
// broker 3 no longer runs the replica and its data is gone.
func TestReassignPartitionToNewBrokerWhileProducing(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cluster, client := startMembershipCluster(t, ctx, 0)
	var created protocol.TopicReply
	client.admin(protocol.AdminCreateTopic, protocol.CreateTopicRequest{Version: 1, Name: "moved", Partitions: 1, Replicas: 3, RetentionBytes: 24 << 10}, &created)
	if created.Error != nil {
		t.Fatalf("create topic: %v", created.Error)
	}
	c := &leaderClient{testClient: client, leader: 1, nodes: 3, acks: protocol.AcksQuorum}
	for range 10 {
		if _, err := c.produce(ctx, "moved", 0, buildBatch(t, "first")); err != nil {
			t.Fatal(err)
		}
	}
	stop := make(chan struct{})
	acked := produceContinuously(ctx, t, &leaderClient{testClient: client, leader: 1, nodes: 3, acks: protocol.AcksQuorum}, "moved", stop)
	defer func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
	}()

	// Retention deletes the first segments on every replica while the
	// producer runs; a group commits offsets meanwhile.
	waitFor(ctx, t, "retention on every replica", func() bool {
		if e := c.commitOne(ctx, "g", protocol.PartitionOffset{Topic: "moved", Offset: 3}); e != nil {
			t.Fatal(e)
		}
		deleted := true
		for id := uint64(1); id <= 3; id++ {
			cluster.Broker(id).runRetention(time.Now())
			deleted = deleted && localReplica(cluster.Broker(id), "moved").log.FirstIndex() > 1
		}
		return deleted
	})
	addBroker(t, ctx, cluster, 4)
	oldDir := localReplica(cluster.Broker(3), "moved").dir

	var reply protocol.ReassignReply
	client.admin(protocol.AdminReassignPartition, protocol.ReassignPartitionRequest{Version: 1, Topic: "moved", Partition: 0, Replicas: []uint64{1, 2, 4}}, &reply)
	if reply.Error != nil || len(reply.Reassignments) != 1 || !slices.Equal(reply.Reassignments[0].To, []uint64{1, 2, 4}) {
		t.Fatalf("reassign: %+v", reply)
	}
	waitFor(ctx, t, "the reassignment to finish", func() bool {
		for _, b := range cluster.running() {
			p, ok := partitionMetaOn(b, "moved")
			if !ok || p.Target != nil || !slices.Equal(p.Replicas, []uint64{1, 2, 4}) {
				return false
			}
		}
		return localReplica(cluster.Broker(3), "moved") == nil
	})
	if e := c.commitOne(ctx, "g", protocol.PartitionOffset{Topic: "moved", Offset: 7}); e != nil {
		t.Fatal(e)
	}
	close(stop)
	records := acked()
	if len(records) == 0 {
		t.Fatal("nothing was acknowledged")
	}
	end := records[len(records)-1].offset + 1

	// Broker 3 removed its data.
	if _, err := os.Stat(oldDir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("broker 3's replica directory %s: %v", oldDir, err)
	}
	if _, err := os.Stat(snapshotDir(oldDir)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("broker 3's snapshot directory: %v", err)
	}

	// Broker 4 applied everything, got a snapshot, and its log starts where
	// the leader's does.
	newReplica := localReplica(cluster.Broker(4), "moved")
	var leader *partitionReplica
	waitFor(ctx, t, "broker 4 to apply every acknowledged record", func() bool {
		leader = leaderReplica(cluster, "moved")
		_, highWatermark, _ := newReplica.state.visible()
		return leader != nil && highWatermark >= end &&
			newReplica.group.Status().AppliedIndex == leader.group.Status().AppliedIndex
	})
	if newReplica.state.restores.Load() == 0 {
		t.Fatal("broker 4 caught up without a snapshot although retention had deleted the log start")
	}
	if newReplica.log.FirstIndex() != leader.log.FirstIndex() || newReplica.log.FirstOffset() != leader.log.FirstOffset() {
		t.Fatalf("broker 4's log starts at index %d offset %d, the leader's (broker %d) at index %d offset %d",
			newReplica.log.FirstIndex(), newReplica.log.FirstOffset(), leader.group.Status().ID, leader.log.FirstIndex(), leader.log.FirstOffset())
	}
	assertSameRecords(t, leader, newReplica, end)
	byOffset := map[uint64]string{}
	for _, rec := range readReplica(t, newReplica, newReplica.log.FirstOffset(), end) {
		byOffset[rec.offset] = rec.value
	}
	for _, rec := range records {
		if rec.offset >= newReplica.log.FirstOffset() && byOffset[rec.offset] != rec.value {
			t.Fatalf("acknowledged record at offset %d is %.20q on broker 4, want %.20q", rec.offset, byOffset[rec.offset], rec.value)
		}
	}
	waitFor(ctx, t, "equal group offsets", func() bool {
		want, ok := leader.state.consumers.get("g")
		got, ok4 := newReplica.state.consumers.get("g")
		return ok && ok4 && want.Offset == 7 && got == want
	})
	conf := leader.group.Status().Configuration
	if !slices.Equal(conf.Voters, []uint64{1, 2, 4}) || len(conf.Learners) != 0 || conf.Joint() {
		t.Fatalf("configuration after the move: %+v", conf)
	}
	t.Logf("%d records acknowledged during the move; broker 4's log starts at offset %d", len(records), newReplica.log.FirstOffset())
}

// readReplica reads a replica's records in [from, end).
func readReplica(t *testing.T, r *partitionReplica, from, end uint64) []fetchedRecord {
	t.Helper()
	var out []fetchedRecord
	for offset := from; offset < end; {
		batches, next, err := r.log.ReadBatches(nil, offset, r.group.Status().AppliedIndex, 64<<10)
		if err != nil {
			t.Fatalf("read at offset %d: %v", offset, err)
		}
		if next <= offset {
			t.Fatalf("read at offset %d made no progress", offset)
		}
		for _, rec := range decodeFetched(t, batches) {
			if rec.offset >= offset && rec.offset < end {
				out = append(out, rec)
			}
		}
		offset = next
	}
	return out
}
