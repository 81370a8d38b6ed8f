package broker

import (
	"context"
	"encoding/json"
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
	"github.com/raftmq/raftmq/raft"
	"github.com/raftmq/raftmq/transport"
)

// startManualRetentionCluster starts three bootstrap brokers with small segments
// and retention run by the test (runRetention), plus, when extra > 0,
// brokers 4.. that are not in Bootstrap, added to the dev cluster.
func startManualRetentionCluster(t *testing.T, ctx context.Context, extra int) (*DevCluster, *testClient) {
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
// to broker 1's NATS server in-process (as the dev cluster's brokers are, so
// its Raft traffic joins theirs in the server's peer account), and waits
// until the controller registered it.
func addBroker(t *testing.T, ctx context.Context, cluster *DevCluster, id uint64) {
	t.Helper()
	startExtraBroker(t, ctx, cluster, id, true)
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
		waitBackoff(ctx, attempt)
	}
}

// startExtraBroker starts a broker outside Bootstrap in the dev cluster,
// configured as broker 1 and connected to broker 1's NATS server:
// in-process, or over TCP (in the client account, which the others do not
// replicate in).
func startExtraBroker(t *testing.T, ctx context.Context, cluster *DevCluster, id uint64, inProcess bool) {
	t.Helper()
	cluster.mu.Lock()
	cfg := cluster.configs[1]
	cfg.ID = id
	cfg.DataDir = filepath.Join(filepath.Dir(cfg.DataDir), fmt.Sprintf("broker-%d", id))
	cfg.NATS = NATSConfig{Connect: transport.ConnectConfig{URLs: []string{cluster.servers[0].ClientURL()}}}
	if inProcess {
		cfg.NATS.Connect.InProcess = cluster.servers[0]
	}
	cluster.configs[id] = cfg
	cluster.mu.Unlock()
	if err := cluster.StartBroker(ctx, id); err != nil {
		t.Fatal(err)
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
// is closed, retrying retriable errors (produce does), and collects every
// acknowledged record; its wait returns them once the producer ended.
func produceContinuously(ctx context.Context, t *testing.T, c *leaderClient, topic string, stop <-chan struct{}) *ackLog {
	acked := &ackLog{}
	acked.wg.Go(func() {
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
			acked.add(ackedRecord{offset, value})
		}
	})
	return acked
}

// ackLog collects a producer's acknowledged records.
type ackLog struct {
	mu   sync.Mutex
	recs []ackedRecord
	wg   sync.WaitGroup
}

func (a *ackLog) add(r ackedRecord) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.recs = append(a.recs, r)
}

// snapshot returns the records acknowledged so far.
func (a *ackLog) snapshot() []ackedRecord {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.recs)
}

// wait waits for the producer to end and returns every acknowledged record.
func (a *ackLog) wait() []ackedRecord {
	a.wg.Wait()
	return a.snapshot()
}

// waitFor polls cond until it holds or ctx ends.
func waitFor(ctx context.Context, t *testing.T, what string, cond func() bool) {
	t.Helper()
	for attempt := 0; !cond(); attempt++ {
		if ctx.Err() != nil {
			t.Fatalf("timed out waiting for %s", what)
		}
		waitBackoff(ctx, attempt)
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
	return localPartitionReplica(b, topic, 0)
}

// localPartitionReplica is broker b's replica of topic/partition, nil
// without one.
func localPartitionReplica(b *Broker, topic string, partition uint32) *partitionReplica {
	if b == nil {
		return nil
	}
	b.mu.RLock()
	defer b.mu.RUnlock()
	return b.partitions[topicPartition{topic, partition}]
}

// leaderReplica is the replica of topic/0 that leads, nil when none does.
func leaderReplica(cluster *DevCluster, topic string) *partitionReplica {
	return leaderPartitionReplica(cluster, topic, 0)
}

// leaderPartitionReplica is the replica of topic/partition that leads, nil
// when none does.
func leaderPartitionReplica(cluster *DevCluster, topic string, partition uint32) *partitionReplica {
	for _, b := range cluster.running() {
		if r := localPartitionReplica(b, topic, partition); r != nil && r.group.Status().Role.String() == "leader" {
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
// the leader from its own log start (which is exactly where the log of the
// replica that sent its snapshot starts: the snapshot ends at a segment
// boundary), and the same group offsets, while broker 3 no longer runs the
// replica and its data is gone.
func TestReassignPartitionToNewBrokerWhileProducing(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cluster, client := startManualRetentionCluster(t, ctx, 0)
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
		_, statErr := os.Stat(oldDir)
		return localReplica(cluster.Broker(3), "moved") == nil && errors.Is(statErr, os.ErrNotExist)
	})
	if e := c.commitOne(ctx, "g", protocol.PartitionOffset{Topic: "moved", Offset: 7}); e != nil {
		t.Fatal(e)
	}
	close(stop)
	records := acked.wait()
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
	// The snapshot came from the replica that led while broker 4 caught
	// up, not necessarily today's leader: leadership can move during the
	// reassignment, and each replica's retention ran at its own log end,
	// so their log starts differ by whole segments.
	starts := map[uint64][2]uint64{}
	sender := false
	for _, b := range cluster.running() {
		if r := localReplica(b, "moved"); r != nil && r != newReplica {
			start := [2]uint64{r.log.FirstIndex(), r.log.FirstOffset()}
			starts[b.cfg.ID] = start
			sender = sender || start == [2]uint64{newReplica.log.FirstIndex(), newReplica.log.FirstOffset()}
		}
	}
	if !sender {
		t.Fatalf("broker 4's log starts at index %d offset %d, where no other replica's does (broker: [index offset]): %v",
			newReplica.log.FirstIndex(), newReplica.log.FirstOffset(), starts)
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

	// Broker 4 serves them: once it leads, fetches and the committed
	// offset come from it. (Leadership may go back to the preferred leader,
	// broker 1, meanwhile: broker 4 is then made leader again.)
	leadOn4 := func() {
		waitFor(ctx, t, "broker 4 to lead", func() bool {
			if r := leaderReplica(cluster, "moved"); r != nil && r != newReplica {
				transferCtx, cancel := context.WithTimeout(ctx, 2*time.Second)
				_ = r.group.TransferLeadership(transferCtx, 4)
				cancel()
			}
			return newReplica.group.Status().Role.String() == "leader"
		})
	}
	leadOn4()
	served := map[uint64]string{}
	for offset := newReplica.log.FirstOffset(); offset < end; {
		reply, err := client.fetchFrom(4, &protocol.FetchRequest{Topic: "moved", Offset: offset, MaxBytes: 64 << 10})
		if err == nil && reply.Err != nil && reply.Err.Code == protocol.CodeNotLeader {
			leadOn4()
			continue
		}
		if err != nil || reply.Err != nil {
			t.Fatalf("fetch from broker 4 at %d: %v %v", offset, err, reply.Err)
		}
		for _, rec := range decodeFetched(t, reply.Batches) {
			served[rec.offset] = rec.value
		}
		if reply.NextOffset <= offset {
			t.Fatalf("fetch from broker 4 at %d made no progress", offset)
		}
		offset = reply.NextOffset
	}
	for _, rec := range records {
		if rec.offset >= newReplica.log.FirstOffset() && served[rec.offset] != rec.value {
			t.Fatalf("broker 4 serves %.20q at offset %d, want %.20q", served[rec.offset], rec.offset, rec.value)
		}
	}
	c4 := &leaderClient{testClient: client, leader: 4, nodes: 3}
	if got, e := c4.committed(ctx, "g", protocol.GroupPartition{Topic: "moved"}, false); e != nil || got.Offset != 7 {
		t.Fatalf("committed offset served by broker 4: %+v %v", got, e)
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

// TestReplaceStoppedBroker is issue 4's "replace a dead machine": broker 3
// is stopped, every replica it held moves to broker 4 (replace-broker)
// while the partitions keep a quorum, broker 4 ends with the same records,
// and broker 3, started again, deletes the data of the replicas it lost.
func TestReplaceStoppedBroker(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cluster, client := startManualRetentionCluster(t, ctx, 0)
	client.createTopic("swap", 2, 3) // on brokers 1, 2 and 3
	addBroker(t, ctx, cluster, 4)
	c := &leaderClient{testClient: client, leader: 1, nodes: 3, acks: protocol.AcksQuorum}
	for i := range 20 {
		if _, err := c.produce(ctx, "swap", uint32(i%2), buildBatch(t, fmt.Sprintf("before-%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	b3 := cluster.Broker(3)
	var oldDirs []string
	for p := range uint32(2) {
		b3.mu.RLock()
		r := b3.partitions[topicPartition{"swap", p}]
		b3.mu.RUnlock()
		if r == nil {
			t.Fatalf("broker 3 holds no replica of swap/%d", p)
		}
		oldDirs = append(oldDirs, r.dir)
	}
	if err := cluster.StopBroker(ctx, 3); err != nil {
		t.Fatal(err)
	}
	waitFor(ctx, t, "broker 3 to be seen down", func() bool { return !cluster.Broker(1).aliveBrokers()[3] })

	var reply protocol.ReassignReply
	client.admin(protocol.AdminReplaceBroker, protocol.ReplaceBrokerRequest{Version: 1, Old: 3, New: 4}, &reply)
	if reply.Error != nil || len(reply.Reassignments) != 2 {
		t.Fatalf("replace-broker: %+v", reply)
	}
	for _, move := range reply.Reassignments {
		if slices.Contains(move.To, 3) || !slices.Contains(move.To, 4) || !slices.Contains(move.From, 3) {
			t.Fatalf("move %+v", move)
		}
	}
	for i := range 20 {
		if _, err := c.produce(ctx, "swap", uint32(i%2), buildBatch(t, fmt.Sprintf("during-%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(ctx, t, "both partitions to move to broker 4", func() bool {
		t := cluster.Broker(1).currentMetadata().Topics["swap"]
		for _, p := range t.Partitions {
			if p.Target != nil || slices.Contains(p.Replicas, 3) || !slices.Contains(p.Replicas, 4) {
				return false
			}
		}
		return true
	})
	b4 := cluster.Broker(4)
	for p := range uint32(2) {
		var leader, moved *partitionReplica
		waitFor(ctx, t, "broker 4 to catch up", func() bool {
			for _, b := range cluster.running() {
				b.mu.RLock()
				r := b.partitions[topicPartition{"swap", p}]
				b.mu.RUnlock()
				if r != nil && r.group.Status().Role.String() == "leader" {
					leader = r
				}
			}
			b4.mu.RLock()
			moved = b4.partitions[topicPartition{"swap", p}]
			b4.mu.RUnlock()
			return leader != nil && moved != nil && moved.group.Status().AppliedIndex == leader.group.Status().AppliedIndex
		})
		_, end, _ := leader.state.visible()
		// The test client retries a request that timed out without the
		// idempotent producer's sequence, so a retry may land a batch twice:
		// at least the 20 acknowledged one-record batches are there.
		if end < 20 {
			t.Fatalf("partition %d high watermark %d, want at least 20", p, end)
		}
		assertSameRecords(t, leader, moved, end)
	}

	// Broker 3 comes back, learns it holds no replica, and deletes them:
	// each replica's directories first, then its record (so a crash in
	// between leaves the record, and the cleanup runs again).
	if err := cluster.StartBroker(ctx, 3); err != nil {
		t.Fatal(err)
	}
	waitFor(ctx, t, "broker 3 to delete its old replicas and their records", func() bool {
		for _, dir := range oldDirs {
			if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
				return false
			}
		}
		recorded, err := cluster.Broker(3).store.replicaGroups()
		return err == nil && len(recorded) == 0 && cluster.Broker(3).currentMetadata().Version > 0
	})
	recorded, err := cluster.Broker(3).store.replicaGroups()
	if err != nil || len(recorded) != 0 {
		t.Fatalf("broker 3 still records replicas %v (%v)", recorded, err)
	}
}

// TestControllerAddAndRemove grows the controller group with a broker that
// is not in Bootstrap (it joins as a learner and is promoted), shrinks it by
// removing a bootstrap broker, and checks that the controller still serves
// metadata changes through the new membership.
func TestControllerAddAndRemove(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cluster, client := startManualRetentionCluster(t, ctx, 1)
	client.createTopic("before", 1, 3)

	var reply protocol.ControllerMemberReply
	client.admin(protocol.AdminAddController, protocol.ControllerMemberRequest{Version: 1, Broker: 4}, &reply)
	if reply.Error != nil || reply.Controller == nil || !slices.Equal(reply.Controller.Voters, []uint64{1, 2, 3, 4}) {
		t.Fatalf("add-controller 4: %+v", reply)
	}
	b4 := cluster.Broker(4)
	waitFor(ctx, t, "broker 4's controller replica to apply the topic", func() bool {
		return b4.controller.state.current().Topics["before"] != nil
	})

	client.admin(protocol.AdminRemoveController, protocol.ControllerMemberRequest{Version: 1, Broker: 1}, &reply)
	if reply.Error != nil || reply.Controller == nil || !slices.Equal(reply.Controller.Voters, []uint64{2, 3, 4}) {
		t.Fatalf("remove-controller 1: %+v", reply)
	}
	// The controller keeps working without broker 1: a new topic is created
	// and every broker, broker 1 included, learns it.
	client.createTopic("after", 1, 3)
	waitFor(ctx, t, "every broker to see the new topic", func() bool {
		for _, b := range cluster.running() {
			if b.currentMetadata().Topics["after"] == nil {
				return false
			}
		}
		return true
	})
	if cluster.Broker(1).isControllerLeader() {
		t.Fatal("broker 1 leads the controller after its removal")
	}
	var status protocol.MetadataReply
	client.admin(protocol.AdminClusterStatus, protocol.MetadataRequest{Version: 1}, &status)
	if status.Controller == nil || !slices.Equal(status.Controller.Voters, []uint64{2, 3, 4}) || status.ControllerLeader == 1 || status.ControllerLeader == 0 {
		t.Fatalf("cluster status: controller %+v, leader %d", status.Controller, status.ControllerLeader)
	}
}

// TestMembershipRefusesBadInput checks the clear errors of the membership
// admin operations.
func TestMembershipRefusesBadInput(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cluster, client := startManualRetentionCluster(t, ctx, 1)
	client.createTopic("bad", 1, 3)
	reassign := func(topic string, partition uint32, replicas ...uint64) *protocol.Error {
		var reply protocol.ReassignReply
		client.admin(protocol.AdminReassignPartition, protocol.ReassignPartitionRequest{Version: 1, Topic: topic, Partition: partition, Replicas: replicas}, &reply)
		return reply.Error
	}
	controller := func(op string, id uint64) *protocol.Error {
		var reply protocol.ControllerMemberReply
		client.admin(op, protocol.ControllerMemberRequest{Version: 1, Broker: id}, &reply)
		return reply.Error
	}
	replace := func(old, replacement uint64) *protocol.Error {
		var reply protocol.ReassignReply
		client.admin(protocol.AdminReplaceBroker, protocol.ReplaceBrokerRequest{Version: 1, Old: old, New: replacement}, &reply)
		return reply.Error
	}
	expect := func(what string, e *protocol.Error, code protocol.ErrorCode, text string) {
		t.Helper()
		if e == nil || e.Code != code || !strings.Contains(e.Message, text) {
			t.Errorf("%s: got %v, want %v containing %q", what, e, code, text)
		}
	}
	expect("unknown topic", reassign("nope", 0, 1, 2, 3), protocol.CodeUnknownTopic, "nope")
	expect("bad partition", reassign("bad", 5, 1, 2, 3), protocol.CodeBadPartition, "not 5")
	expect("unknown broker", reassign("bad", 0, 1, 2, 9), protocol.CodeInvalidArgument, "unknown broker 9")
	expect("repeated broker", reassign("bad", 0, 1, 1, 2), protocol.CodeInvalidArgument, "repeated")
	expect("empty set", reassign("bad", 0), protocol.CodeInvalidArgument, "empty replica set")
	expect("replace itself", replace(2, 2), protocol.CodeInvalidArgument, "cannot replace itself")
	expect("replace with a replica holder", replace(2, 3), protocol.CodeInvalidArgument, "already holds a replica")
	expect("replace a broker without replicas", replace(4, 1), protocol.CodeInvalidArgument, "holds no replica")
	expect("replace an unknown broker", replace(9, 1), protocol.CodeInvalidArgument, "unknown broker 9")
	expect("add unknown controller", controller(protocol.AdminAddController, 9), protocol.CodeInvalidArgument, "unknown broker 9")
	expect("add a voter again", controller(protocol.AdminAddController, 2), protocol.CodeInvalidArgument, "already a controller voter")
	expect("remove a non-member", controller(protocol.AdminRemoveController, 4), protocol.CodeInvalidArgument, "not a controller member")
	if e := controller(protocol.AdminRemoveController, 3); e != nil {
		t.Fatalf("remove-controller 3: %v", e)
	}
	if e := controller(protocol.AdminRemoveController, 2); e != nil {
		t.Fatalf("remove-controller 2: %v", e)
	}
	expect("remove the last voter", controller(protocol.AdminRemoveController, 1), protocol.CodeInvalidArgument, "last controller voter")

	// A broker that is down receives nothing.
	if err := cluster.StopBroker(ctx, 4); err != nil {
		t.Fatal(err)
	}
	waitFor(ctx, t, "broker 4 to be seen down", func() bool { return !cluster.Broker(1).aliveBrokers()[4] })
	expect("move to a down broker", reassign("bad", 0, 1, 2, 4), protocol.CodeInvalidArgument, "broker 4 is down")
	expect("add a down controller", controller(protocol.AdminAddController, 4), protocol.CodeInvalidArgument, "broker 4 is down")
}

// TestReassignmentInProgressIsRefused checks the controller's deterministic
// rules for a second change while one is in progress and for its end.
func TestReassignmentInProgressIsRefused(t *testing.T) {
	m := newClusterMetadata([]uint64{1, 2, 3, 4})
	m, e := applyCommand(m, 1, controllerCommand{Op: opCreateTopic, Topic: "t", Partitions: 1, Replicas: 3})
	if e != nil {
		t.Fatal(e)
	}
	m, e = applyCommand(m, 2, controllerCommand{Op: opReassignPartition, Topic: "t", ReplicaSet: []uint64{1, 2, 4}})
	if e != nil {
		t.Fatal(e)
	}
	p := m.Topics["t"].Partitions[0]
	if !slices.Equal(p.Target, []uint64{1, 2, 4}) || !slices.Equal(p.Replicas, []uint64{1, 2, 3}) || !slices.Equal(p.bootstrapVoters(), []uint64{1, 2, 3}) {
		t.Fatalf("partition after the request: %+v", p)
	}
	if !p.hasReplica(4) || !p.hasReplica(3) {
		t.Fatal("brokers 3 and 4 must both run replicas during the move")
	}
	if _, e := applyCommand(m, 3, controllerCommand{Op: opReassignPartition, Topic: "t", ReplicaSet: []uint64{1, 2, 3}}); e == nil || !strings.Contains(e.Message, "in progress") {
		t.Fatalf("second reassignment: %v", e)
	}
	if _, e := applyCommand(m, 3, controllerCommand{Op: opReplaceBroker, Broker: 1, NewBroker: 3}); e == nil || !strings.Contains(e.Message, "in progress") {
		t.Fatalf("replace-broker during a reassignment: %v", e)
	}
	if _, e := applyCommand(m, 3, controllerCommand{Op: opReassignDone, GroupID: p.GroupID, ReplicaSet: []uint64{1, 2, 3}}); e == nil {
		t.Fatal("a report of other voters finished the reassignment")
	}
	done, e := applyCommand(m, 4, controllerCommand{Op: opReassignDone, GroupID: p.GroupID, ReplicaSet: []uint64{4, 2, 1}})
	if e != nil {
		t.Fatal(e)
	}
	p = done.Topics["t"].Partitions[0]
	if p.Target != nil || !slices.Equal(p.Replicas, []uint64{1, 2, 4}) || !slices.Equal(p.bootstrapVoters(), []uint64{1, 2, 3}) || p.hasReplica(3) {
		t.Fatalf("partition after the move: %+v", p)
	}
	if m.Topics["t"].Partitions[0].Target == nil {
		t.Fatal("apply changed the previous metadata value")
	}
	// A smaller replica set changes the topic's replication factor.
	m, _ = applyCommand(done, 5, controllerCommand{Op: opReassignPartition, Topic: "t", ReplicaSet: []uint64{2, 4}})
	m, _ = applyCommand(m, 6, controllerCommand{Op: opReassignDone, GroupID: p.GroupID, ReplicaSet: []uint64{2, 4}})
	if got := m.Topics["t"]; got.Replicas != 2 || !slices.Equal(got.Partitions[0].Replicas, []uint64{2, 4}) || done.Topics["t"].Replicas != 3 {
		t.Fatalf("after shrinking: %+v", got)
	}
}

// TestReassignAwayFromLeader moves a partition off the broker leading it
// while a producer publishes: the leader removes itself with the joint
// change, steps down once C_new commits, and the next leader reports the
// move done; no acknowledged record is lost.
func TestReassignAwayFromLeader(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cluster, client := startManualRetentionCluster(t, ctx, 0)
	client.createTopic("away", 1, 3)
	addBroker(t, ctx, cluster, 4)
	c := &leaderClient{testClient: client, leader: 1, nodes: 3, acks: protocol.AcksQuorum}
	if _, err := c.produce(ctx, "away", 0, buildBatch(t, "first")); err != nil {
		t.Fatal(err)
	}
	var oldLeader uint64
	waitFor(ctx, t, "a leader", func() bool {
		if r := leaderReplica(cluster, "away"); r != nil {
			oldLeader = r.group.Status().ID
		}
		return oldLeader != 0
	})
	target := []uint64{4}
	for id := uint64(1); id <= 3; id++ {
		if id != oldLeader {
			target = append(target, id)
		}
	}
	stop := make(chan struct{})
	acked := produceContinuously(ctx, t, &leaderClient{testClient: client, leader: oldLeader, nodes: 3, acks: protocol.AcksQuorum}, "away", stop)
	var reply protocol.ReassignReply
	client.admin(protocol.AdminReassignPartition, protocol.ReassignPartitionRequest{Version: 1, Topic: "away", Replicas: target}, &reply)
	if reply.Error != nil {
		close(stop)
		t.Fatalf("reassign: %v", reply.Error)
	}
	waitFor(ctx, t, "the move off the leader", func() bool {
		p, ok := partitionMetaOn(cluster.Broker(1), "away")
		return ok && p.Target == nil && slices.Equal(p.Replicas, target) && localReplica(cluster.Broker(oldLeader), "away") == nil
	})
	close(stop)
	records := acked.wait()
	var leader *partitionReplica
	waitFor(ctx, t, "a new leader with every record applied on broker 4", func() bool {
		leader = leaderReplica(cluster, "away")
		moved := localReplica(cluster.Broker(4), "away")
		return leader != nil && moved != nil && moved.group.Status().AppliedIndex == leader.group.Status().AppliedIndex
	})
	if id := leader.group.Status().ID; id == oldLeader || !slices.Contains(target, id) {
		t.Fatalf("leader %d after moving off broker %d to %v", id, oldLeader, target)
	}
	end := uint64(1)
	if len(records) > 0 {
		end = records[len(records)-1].offset + 1
	}
	got := map[uint64]string{}
	for _, rec := range readReplica(t, localReplica(cluster.Broker(4), "away"), 0, end) {
		got[rec.offset] = rec.value
	}
	for _, rec := range records {
		if got[rec.offset] != rec.value {
			t.Fatalf("acknowledged record at offset %d missing or different on broker 4", rec.offset)
		}
	}
	// Every report of the move (the new leader's, maybe the old one's too)
	// names it by the controller index that set its target.
	var setAt, reports uint64
	for _, e := range controllerMoves(t, cluster.Broker(1)) {
		switch e.Op {
		case opReassignPartition:
			setAt = e.index
		case opReassignDone:
			if e.TargetIndex == 0 || e.TargetIndex != setAt {
				t.Fatalf("report at controller index %d names the move set at %d, not the one set at %d", e.index, e.TargetIndex, setAt)
			}
			reports++
		}
	}
	if reports == 0 {
		t.Fatal("no report of the move in the controller log")
	}
	t.Logf("moved off leader %d to %v; %d records acknowledged meanwhile", oldLeader, target, len(records))
}

// loggedMove is a controller command as a test reads it from the log.
type loggedMove struct {
	index       uint64
	Op          string `json:"op"`
	TargetIndex uint64 `json:"target_index"`
}

// controllerMoves decodes the commands in b's controller log.
func controllerMoves(t *testing.T, b *Broker) []loggedMove {
	t.Helper()
	log := b.controller.log
	entries, err := log.Entries(log.FirstIndex(), log.LastIndex()+1, ^uint64(0))
	if err != nil {
		t.Fatal(err)
	}
	var out []loggedMove
	for _, e := range entries {
		if e.Type != protocol.EntryControl {
			continue
		}
		move := loggedMove{index: e.Index}
		if err := json.Unmarshal(e.Data, &move); err != nil {
			t.Fatal(err)
		}
		out = append(out, move)
	}
	return out
}

// TestCancelReassignmentRules checks the controller's rules for a cancel:
// the target goes back to the replicas and the brokers only the cancelled
// target named keep their replica until the move back is done.
func TestCancelReassignmentRules(t *testing.T) {
	m := newClusterMetadata([]uint64{1, 2, 3, 4})
	m, e := applyCommand(m, 1, controllerCommand{Op: opCreateTopic, Topic: "t", Partitions: 1, Replicas: 3})
	if e != nil {
		t.Fatal(e)
	}
	if _, e := applyCommand(m, 2, controllerCommand{Op: opReassignPartition, Topic: "t", Cancel: true}); e == nil || !strings.Contains(e.Message, "no reassignment") {
		t.Fatalf("cancel without a move: %v", e)
	}
	m, _ = applyCommand(m, 2, controllerCommand{Op: opReassignPartition, Topic: "t", ReplicaSet: []uint64{1, 2, 4}})
	m, e = applyCommand(m, 3, controllerCommand{Op: opReassignPartition, Topic: "t", Cancel: true})
	if e != nil {
		t.Fatal(e)
	}
	p := m.Topics["t"].Partitions[0]
	if !slices.Equal(p.Target, []uint64{1, 2, 3}) || !slices.Equal(p.Leaving, []uint64{4}) || !p.hasReplica(4) {
		t.Fatalf("after cancel: %+v", p)
	}
	m, e = applyCommand(m, 4, controllerCommand{Op: opReassignDone, GroupID: p.GroupID, ReplicaSet: []uint64{1, 2, 3}})
	if e != nil {
		t.Fatal(e)
	}
	p = m.Topics["t"].Partitions[0]
	if p.Target != nil || p.Leaving != nil || p.hasReplica(4) || !slices.Equal(p.Replicas, []uint64{1, 2, 3}) {
		t.Fatalf("after the move back: %+v", p)
	}
}

// TestALateReassignDoneDoesNotFinishALaterMove: a leader reports move A
// ({1,2,3} -> {1,2,4}, set at controller index 2) done, but its report
// applies only after A was cancelled, moved back and a move B to the same
// brokers set. The report names A, by the index that set its target, and is
// refused: B stays in progress (the group's voters are {1,2,3}) until a
// report of B. A report without that identity (from a leader that predates
// it) is matched on the voters alone, as before. The commands are decoded
// as the controller log holds them.
func TestALateReassignDoneDoesNotFinishALaterMove(t *testing.T) {
	m := newClusterMetadata([]uint64{1, 2, 3, 4})
	apply := func(index uint64, command string) *protocol.Error {
		t.Helper()
		cmd, err := decodeControllerCommand([]byte(command))
		if err != nil {
			t.Fatal(err)
		}
		next, e := applyCommand(m, index, cmd)
		m = next
		return e
	}
	partition := func() partitionMeta { return m.Topics["t"].Partitions[0] }
	for index, command := range []string{
		1: `{"op":"create_topic","topic":"t","partitions":1,"replicas":3}`,
		2: `{"op":"reassign_partition","topic":"t","replica_set":[1,2,4]}`,
		3: `{"op":"reassign_partition","topic":"t","cancel":true}`,
		4: `{"op":"reassign_done","group_id":2,"replica_set":[1,2,3],"target_index":3}`,
		5: `{"op":"reassign_partition","topic":"t","replica_set":[1,2,4]}`,
	} {
		if index > 0 {
			if e := apply(uint64(index), command); e != nil {
				t.Fatalf("command %d: %v", index, e)
			}
		}
	}
	if e := apply(6, `{"op":"reassign_done","group_id":2,"replica_set":[1,2,4],"target_index":2}`); e == nil {
		t.Fatalf("the late report of the cancelled move finished the next one: %+v", partition())
	}
	if p := partition(); !slices.Equal(p.Replicas, []uint64{1, 2, 3}) || !slices.Equal(p.Target, []uint64{1, 2, 4}) {
		t.Fatalf("after the late report: %+v", p)
	}
	if e := apply(7, `{"op":"reassign_done","group_id":2,"replica_set":[1,2,4],"target_index":5}`); e != nil {
		t.Fatal(e)
	}
	if p := partition(); !slices.Equal(p.Replicas, []uint64{1, 2, 4}) || p.Target != nil {
		t.Fatalf("after the report of the move in progress: %+v", p)
	}
	if e := apply(8, `{"op":"reassign_partition","topic":"t","replica_set":[1,2,3]}`); e != nil {
		t.Fatal(e)
	}
	if e := apply(9, `{"op":"reassign_done","group_id":2,"replica_set":[1,2,3]}`); e != nil {
		t.Fatalf("a report without the move's identity: %v", e)
	}
	if p := partition(); !slices.Equal(p.Replicas, []uint64{1, 2, 3}) || p.Target != nil {
		t.Fatalf("after a report without the move's identity: %+v", p)
	}
}

// TestCancelReassignmentToStoppedBroker starts a move to broker 4 and
// stops broker 4 at once, so the move cannot finish; a cancel turns it
// back: the group returns to {1,2,3} without broker 4 (it is removed from
// the Raft configuration while down) and producers keep publishing.
func TestCancelReassignmentToStoppedBroker(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cluster, client := startManualRetentionCluster(t, ctx, 0)
	client.createTopic("back", 1, 3)
	addBroker(t, ctx, cluster, 4)
	c := &leaderClient{testClient: client, leader: 1, nodes: 3, acks: protocol.AcksQuorum}
	var reply protocol.ReassignReply
	client.admin(protocol.AdminReassignPartition, protocol.ReassignPartitionRequest{Version: 1, Topic: "back", Replicas: []uint64{1, 2, 4}}, &reply)
	if reply.Error != nil {
		t.Fatal(reply.Error)
	}
	if err := cluster.StopBroker(ctx, 4); err != nil {
		t.Fatal(err)
	}
	client.admin(protocol.AdminReassignPartition, protocol.ReassignPartitionRequest{Version: 1, Topic: "back", Cancel: true}, &reply)
	if reply.Error != nil {
		if strings.Contains(reply.Error.Message, "no reassignment") {
			t.Skip("the move finished before broker 4 stopped; nothing to cancel")
		}
		t.Fatal(reply.Error)
	}
	if len(reply.Reassignments) != 1 || !slices.Equal(reply.Reassignments[0].To, []uint64{1, 2, 3}) {
		t.Fatalf("cancel reply %+v", reply)
	}
	for i := range 10 {
		if _, err := c.produce(ctx, "back", 0, buildBatch(t, fmt.Sprint("during-", i))); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(ctx, t, "the move back", func() bool {
		p, ok := partitionMetaOn(cluster.Broker(1), "back")
		if !ok || p.Target != nil || p.Leaving != nil || !slices.Equal(p.Replicas, []uint64{1, 2, 3}) {
			return false
		}
		r := leaderReplica(cluster, "back")
		if r == nil {
			return false
		}
		conf := r.group.Status().Configuration
		return slices.Equal(conf.Voters, []uint64{1, 2, 3}) && len(conf.Learners) == 0 && !conf.Joint()
	})
}

// TestCancelMovingBackToAStoppedBrokerIsRefused: a replace-broker of the
// stopped broker 3 cannot be cancelled while 3 is down. The move back would
// have to give 3 its replica again (the move may have removed it from the
// group already), so it could not finish while 3 is down, and nothing could
// end it meanwhile: a cancel of the move back changes nothing, and no other
// move is accepted. Refused, the replacement goes on instead. The partition
// has no leader while 3 and 5 are down, so the cancel always meets the move
// in progress.
func TestCancelMovingBackToAStoppedBrokerIsRefused(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cluster, client := startManualRetentionCluster(t, ctx, 2)
	client.createTopic("stuck", 1, 3)
	var moved protocol.ReassignReply
	client.admin(protocol.AdminReassignPartition, protocol.ReassignPartitionRequest{Version: 1, Topic: "stuck", Replicas: []uint64{2, 3, 5}}, &moved)
	if moved.Error != nil {
		t.Fatal(moved.Error)
	}
	waitFor(ctx, t, "the move to {2,3,5}", func() bool {
		p, ok := partitionMetaOn(cluster.Broker(1), "stuck")
		return ok && p.Target == nil && slices.Equal(p.Replicas, []uint64{2, 3, 5})
	})
	for _, id := range []uint64{3, 5} {
		if err := cluster.StopBroker(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(ctx, t, "brokers 3 and 5 to be seen down", func() bool {
		for _, b := range cluster.running() {
			if alive := b.aliveBrokers(); alive[3] || alive[5] {
				return false
			}
		}
		return true
	})
	client.admin(protocol.AdminReplaceBroker, protocol.ReplaceBrokerRequest{Version: 1, Old: 3, New: 4}, &moved)
	if moved.Error != nil || len(moved.Reassignments) != 1 || !slices.Equal(moved.Reassignments[0].To, []uint64{2, 4, 5}) {
		t.Fatalf("replace-broker: %+v", moved)
	}
	// Broker 1 learns the move from the controller's metadata, which may
	// reach it after the reply.
	waitFor(ctx, t, "broker 1 to see the move to {2,4,5}", func() bool {
		p, ok := partitionMetaOn(cluster.Broker(1), "stuck")
		return ok && slices.Equal(p.Target, []uint64{2, 4, 5})
	})
	var cancelled protocol.ReassignReply
	client.admin(protocol.AdminReassignPartition, protocol.ReassignPartitionRequest{Version: 1, Topic: "stuck", Cancel: true}, &cancelled)
	if cancelled.Error == nil || !strings.Contains(cancelled.Error.Message, "broker 3 is down") {
		t.Fatalf("cancel while broker 3 is down: %+v", cancelled)
	}
	if p, _ := partitionMetaOn(cluster.Broker(1), "stuck"); !slices.Equal(p.Target, []uint64{2, 4, 5}) {
		t.Fatalf("after the refused cancel: %+v", p)
	}
	if err := cluster.StartBroker(ctx, 5); err != nil {
		t.Fatal(err)
	}
	waitFor(ctx, t, "the replacement to finish without broker 3", func() bool {
		p, ok := partitionMetaOn(cluster.Broker(1), "stuck")
		return ok && p.Target == nil && slices.Equal(p.Replicas, []uint64{2, 4, 5})
	})
}

type lastIndexOnly uint64

func (l lastIndexOnly) LastIndex() uint64 { return uint64(l) }

// TestStartVotersOfAJoiningReplica: an empty replica of a reassigned group
// starts with no voters (brokers of the original set that come back empty
// must not elect a leader among themselves); a replica of a group never
// reassigned, or one holding Raft state, starts with the bootstrap voters.
func TestStartVotersOfAJoiningReplica(t *testing.T) {
	original := partitionMeta{GroupID: 2, Replicas: []uint64{1, 2, 3}}
	if got := startVoters(original, raft.HardState{}, lastIndexOnly(0)); !slices.Equal(got, []uint64{1, 2, 3}) {
		t.Errorf("new group: %v", got)
	}
	moved := partitionMeta{GroupID: 2, Replicas: []uint64{4, 5, 6}, Target: []uint64{1, 2, 3}, Bootstrap: []uint64{1, 2, 3}}
	if got := startVoters(moved, raft.HardState{}, lastIndexOnly(0)); got != nil {
		t.Errorf("empty replica joining a reassigned group: %v", got)
	}
	if got := startVoters(moved, raft.HardState{Term: 3}, lastIndexOnly(0)); !slices.Equal(got, []uint64{1, 2, 3}) {
		t.Errorf("replica with a hard state: %v", got)
	}
	if got := startVoters(moved, raft.HardState{}, lastIndexOnly(7)); !slices.Equal(got, []uint64{1, 2, 3}) {
		t.Errorf("replica with a log: %v", got)
	}
}

// TestShrinkThenGrowPartition shrinks a partition from three replicas to
// two (the dropped broker deletes its copy) and grows it back: the broker
// rejoins empty, as a learner that learns the configuration from the
// leader, and ends with every record.
func TestShrinkThenGrowPartition(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cluster, client := startManualRetentionCluster(t, ctx, 0)
	info := client.createTopic("elastic", 1, 3)
	full := info.Partitions[0].Replicas
	small := full[:2]
	dropped := full[2]
	c := &leaderClient{testClient: client, leader: 1, nodes: 3, acks: protocol.AcksQuorum}
	produce := func(prefix string) {
		for i := range 10 {
			if _, err := c.produce(ctx, "elastic", 0, buildBatch(t, fmt.Sprint(prefix, i))); err != nil {
				t.Fatal(err)
			}
		}
	}
	move := func(to []uint64) {
		t.Helper()
		var reply protocol.ReassignReply
		client.admin(protocol.AdminReassignPartition, protocol.ReassignPartitionRequest{Version: 1, Topic: "elastic", Replicas: to}, &reply)
		if reply.Error != nil {
			t.Fatal(reply.Error)
		}
		waitFor(ctx, t, fmt.Sprintf("the move to %v", to), func() bool {
			p, ok := partitionMetaOn(cluster.Broker(1), "elastic")
			r := leaderReplica(cluster, "elastic")
			return ok && p.Target == nil && slices.Equal(p.Replicas, to) && r != nil &&
				slices.Equal(r.group.Status().Configuration.Voters, sortedCopy(to))
		})
	}
	produce("three-")
	oldDir := localReplica(cluster.Broker(dropped), "elastic").dir
	move(small)
	waitFor(ctx, t, "the dropped broker to delete its copy", func() bool {
		_, err := os.Stat(oldDir)
		return localReplica(cluster.Broker(dropped), "elastic") == nil && errors.Is(err, os.ErrNotExist)
	})
	if got := cluster.Broker(1).currentMetadata().Topics["elastic"].Replicas; got != 2 {
		t.Errorf("replication factor after shrinking: %d", got)
	}
	produce("two-")
	move(full)
	produce("three-again-")
	var leader, back *partitionReplica
	// Both must have applied the entry holding the last record (offset
	// 29): the read below stops at each replica's applied index, and equal
	// applied indexes alone can both still be short of it (the last
	// produce returned once committed, not applied).
	applied := func(r *partitionReplica) bool {
		index, err := r.log.IndexOfOffset(29)
		return err == nil && r.group.Status().AppliedIndex >= index
	}
	waitFor(ctx, t, "the returning broker to catch up", func() bool {
		leader, back = leaderReplica(cluster, "elastic"), localReplica(cluster.Broker(dropped), "elastic")
		return leader != nil && back != nil && applied(leader) && applied(back)
	})
	assertSameRecords(t, leader, back, 30)
}
