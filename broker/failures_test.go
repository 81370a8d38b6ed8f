package broker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/raftmq/raftmq/protocol"
	"github.com/raftmq/raftmq/raft"
	"github.com/raftmq/raftmq/segmentlog"
)

// errInjectedSync and errInjectedWrite are what faultFS's syncs and
// writes return while they fail.
var (
	errInjectedSync  = errors.New("injected fsync failure")
	errInjectedWrite = fmt.Errorf("injected write failure: %w", syscall.ENOSPC)
)

// faultFS is the operating system's file system, except that while fail
// (failWrites) is set every sync (write) of a file whose path contains
// match fails; an empty match is "/topics/": the partition logs, not the
// controller's.
type faultFS struct {
	vfs.FS
	match      string
	fail       atomic.Bool
	failWrites atomic.Bool
}

type faultFile struct {
	vfs.File
	fs *faultFS
}

func (fs *faultFS) wrap(name string, f vfs.File, err error) (vfs.File, error) {
	match := fs.match
	if match == "" {
		match = "/topics/"
	}
	if err != nil || !strings.Contains(name, match) {
		return f, err
	}
	return faultFile{f, fs}, nil
}

func (fs *faultFS) Create(name string, c vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.Create(name, c)
	return fs.wrap(name, f, err)
}

func (fs *faultFS) OpenReadWrite(name string, c vfs.DiskWriteCategory, opts ...vfs.OpenOption) (vfs.File, error) {
	f, err := fs.FS.OpenReadWrite(name, c, opts...)
	return fs.wrap(name, f, err)
}

func (fs *faultFS) OpenDir(name string) (vfs.File, error) {
	f, err := fs.FS.OpenDir(name)
	return fs.wrap(name+"/", f, err)
}

func (f faultFile) check() error {
	if f.fs.fail.Load() {
		return errInjectedSync
	}
	return nil
}

func (f faultFile) Write(p []byte) (int, error) {
	if f.fs.failWrites.Load() {
		return 0, errInjectedWrite
	}
	return f.File.Write(p)
}

func (f faultFile) WriteAt(p []byte, off int64) (int, error) {
	if f.fs.failWrites.Load() {
		return 0, errInjectedWrite
	}
	return f.File.WriteAt(p, off)
}

func (f faultFile) Sync() error {
	if err := f.check(); err != nil {
		return err
	}
	return f.File.Sync()
}

func (f faultFile) SyncData() error {
	if err := f.check(); err != nil {
		return err
	}
	return f.File.SyncData()
}

func (f faultFile) SyncTo(length int64) (bool, error) {
	if err := f.check(); err != nil {
		return false, err
	}
	return f.File.SyncTo(length)
}

// TestReplicaRestartsAfterLogSyncFailure: when one broker's partition log
// fails to sync (or to write: a full disk), that replica stops and the broker reports it (status,
// cluster status, metrics, an error log) while the other two replicas go
// on acknowledging; its restarts fail while the fault lasts, and once the
// fault is gone the broker restarts the replica, which cuts its log back
// to its last durable entry and catches up with every acknowledged record.
// Before, the replica stayed stopped, silently, until the broker restarted.
func TestReplicaRestartsAfterLogSyncFailure(t *testing.T) {
	for _, tc := range []struct {
		name   string
		leads  bool
		writes bool
	}{
		{"follower", false, false},
		{"leader", true, false},
		{"follower-writes", false, true},
	} {
		t.Run(tc.name, func(t *testing.T) { testReplicaRestartsAfterLogSyncFailure(t, tc.leads, tc.writes) })
	}
}

// testReplicaRestartsAfterLogSyncFailure runs the test with broker 2's
// replica leading the partition when its syncs (writes) begin to fail, or
// not.
func testReplicaRestartsAfterLogSyncFailure(t *testing.T, leads, writes bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	fault := &faultFS{FS: vfs.Default}
	recorder := newLogRecorder()
	cluster, client := startTestClusterWith(t, 3, func(cfg *Config) {
		fastTimings(cfg)
		cfg.ReplicaRestartBackoff = 100 * time.Millisecond
		if cfg.ID == 2 {
			cfg.FS = fault
			cfg.Logger = slog.New(recorder)
		}
	})
	count := func(msg string) int { return len(recorder.logged(msg)) }
	client.createTopic("disk", 1, 3)
	stop := make(chan struct{})
	// Retriable errors (a failed leader's not_leader among them) are
	// retried; any other fails the test.
	acked := produceContinuously(ctx, t, &leaderClient{testClient: client, leader: 1, nodes: 3, acks: protocol.AcksQuorum}, "disk", stop)
	defer func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
	}()
	b2 := cluster.Broker(2)
	waitFor(ctx, t, "broker 2 to replicate some records", func() bool {
		r := localReplica(b2, "disk")
		return r != nil && r.log.DurableIndex() > 20
	})
	failed := localReplica(b2, "disk")
	waitFor(ctx, t, "broker 2's replica to have the wanted role", func() bool {
		if leads {
			transferCtx, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			if r := leaderReplica(cluster, "disk"); r != nil && r != failed {
				_ = r.group.TransferLeadership(transferCtx, 2)
			}
			return leaderReplica(cluster, "disk") == failed
		}
		return leaderReplica(cluster, "disk") != nil && leaderReplica(cluster, "disk") != failed
	})

	injected, flag := errInjectedSync, &fault.fail
	if writes {
		injected, flag = errInjectedWrite, &fault.failWrites
	}
	flag.Store(true)
	waitFor(ctx, t, "broker 2 to report its replica failed", func() bool {
		f := b2.localStatus().FailedReplicas
		return len(f) == 1 && localReplica(b2, "disk") == nil
	})
	report := b2.localStatus().FailedReplicas[0]
	if report.Topic != "disk" || report.Partition != 0 || !strings.Contains(report.Error, injected.Error()) || report.Failures < 1 {
		t.Fatalf("failed replica report: %+v", report)
	}
	if err := failed.group.Err(); !errors.Is(err, raft.ErrStopped) || !errors.Is(err, injected) {
		t.Fatalf("the stopped replica's group reports %v, want the injected error wrapped in ErrStopped", err)
	}
	// Restarts fail at once while syncs fail (the restart's cut syncs);
	// with writes failing a restart succeeds and the replica fails again
	// at its first append.
	const stoppedMsg = "partition replica stopped by an error; restarting it after a backoff"
	// The failure is recorded (and reported) just before it is logged.
	waitFor(ctx, t, "the failure to be logged", func() bool { return count(stoppedMsg) > 0 })
	if n := count(stoppedMsg); n != 1 && !writes {
		t.Fatalf("the failure was logged %d times, want once", n)
	}
	if v, err := gatherCounter(cluster.cfg.Registerer.(prometheus.Gatherer), "raftmq_replica_failures_total", map[string]string{"broker": "2"}); err != nil || v < 1 || (v != 1 && !writes) {
		t.Fatalf("raftmq_replica_failures_total of broker 2 = %v (%v), want 1", v, err)
	}
	// The cluster status names broker 2, asked of any broker.
	waitFor(ctx, t, "the cluster status to show the failed replica", func() bool {
		var reply protocol.MetadataReply
		client.admin(protocol.AdminClusterStatus, protocol.MetadataRequest{Version: protocol.APIVersion}, &reply)
		return len(reply.Topics) == 1 && slices.Equal(reply.Topics[0].Partitions[0].Failed, []uint64{2})
	})
	// The other two go on acknowledging, and broker 2's restarts fail
	// while the fault lasts, each after a longer wait.
	before := len(acked.snapshot())
	waitFor(ctx, t, "two more failures and more acknowledged records", func() bool {
		failures := count(stoppedMsg) + count("partition replica restart failed; trying again after a backoff")
		return failures >= 3 && len(acked.snapshot()) > before+20
	})
	if f := b2.localStatus().FailedReplicas; !writes && (len(f) != 1 || f[0].Failures < 3) {
		t.Fatalf("after failed restarts: %+v", f)
	}

	flag.Store(false)
	waitFor(ctx, t, "broker 2 to restart its replica", func() bool {
		return localReplica(b2, "disk") != nil && len(b2.localStatus().FailedReplicas) == 0
	})
	if n := count("partition replica restarted after a failure"); n < 1 || (n != 1 && !writes) {
		t.Fatal("the restart was not logged")
	}
	// Its syncs failed after entries were written: the restart found them
	// in the file and cut them.
	if !writes && count("partition log cut back to its last durable entry") == 0 {
		t.Fatal("the restarted replica's log was not cut back to its last durable entry")
	}
	// A few more acknowledgements with the restarted replica in the group.
	restartedAt := len(acked.snapshot())
	waitFor(ctx, t, "more acknowledged records after the restart", func() bool { return len(acked.snapshot()) > restartedAt+20 })
	close(stop)
	records := acked.wait()
	end := records[len(records)-1].offset + 1
	restarted := localReplica(b2, "disk")
	var leader *partitionReplica
	waitFor(ctx, t, "broker 2 to apply every acknowledged record", func() bool {
		leader = leaderReplica(cluster, "disk")
		_, highWatermark, _ := restarted.state.visible()
		return leader != nil && leader != restarted && highWatermark >= end &&
			restarted.group.Status().AppliedIndex == leader.group.Status().AppliedIndex
	})
	assertSameRecords(t, leader, restarted, end)
	byOffset := map[uint64]string{}
	for _, rec := range readReplica(t, restarted, restarted.log.FirstOffset(), end) {
		byOffset[rec.offset] = rec.value
	}
	for _, rec := range records {
		if byOffset[rec.offset] != rec.value {
			t.Fatalf("acknowledged record at offset %d is %.20q on broker 2, want %.20q", rec.offset, byOffset[rec.offset], rec.value)
		}
	}
	waitFor(ctx, t, "the cluster status to clear the failure", func() bool {
		var reply protocol.MetadataReply
		client.admin(protocol.AdminClusterStatus, protocol.MetadataRequest{Version: protocol.APIVersion}, &reply)
		return len(reply.Topics) == 1 && len(reply.Topics[0].Partitions[0].Failed) == 0
	})
}

// TestControllerReplicaFailureIsReported: when the controller leader's
// controller log fails to sync, its controller replica stops; the broker
// no longer claims to lead the controller, reports the error in its status
// and counts it, and calls itself not ready, while another voter takes
// over and topics can still be created. Before, the stopped replica went
// on reporting itself leader and the broker kept publishing its frozen
// metadata as the controller's.
func TestControllerReplicaFailureIsReported(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var mu sync.Mutex
	faults := map[uint64]*faultFS{}
	cluster, client := startTestClusterWith(t, 3, func(cfg *Config) {
		fastTimings(cfg)
		fs := &faultFS{FS: vfs.Default, match: "/controller/"}
		mu.Lock()
		faults[cfg.ID] = fs
		mu.Unlock()
		cfg.FS = fs
	})
	client.createTopic("before", 1, 3)
	var old *Broker
	waitFor(ctx, t, "a controller leader", func() bool {
		for id := uint64(1); id <= 3; id++ {
			if b := cluster.Broker(id); b.isControllerLeader() {
				old = b
				return true
			}
		}
		return false
	})
	mu.Lock()
	faults[old.cfg.ID].fail.Store(true)
	mu.Unlock()
	// A controller write makes the leader append and sync; its answer
	// does not matter.
	data, _ := json.Marshal(protocol.CreateTopicRequest{Version: 1, Name: "during", Partitions: 1, Replicas: 3})
	_, _ = client.request(protocol.SubjectBrokerAdmin(client.prefix, old.cfg.ID, protocol.AdminCreateTopic), data)
	waitFor(ctx, t, "the controller replica to stop and another voter to lead", func() bool {
		select {
		case <-old.controller.group.Stopped():
		default:
			return false
		}
		for id := uint64(1); id <= 3; id++ {
			if b := cluster.Broker(id); b != old && b.isControllerLeader() {
				return true
			}
		}
		return false
	})
	if !errors.Is(old.controller.group.Err(), raft.ErrStopped) {
		t.Fatalf("controller group error: %v", old.controller.group.Err())
	}
	if old.isControllerLeader() || old.controllerCaughtUp() {
		t.Fatal("the broker whose controller replica stopped still claims to lead the controller")
	}
	st := old.localStatus()
	if !strings.Contains(st.ControllerError, errInjectedSync.Error()) || st.Ready || old.Ready() {
		t.Fatalf("status of the broker whose controller replica stopped: ready %v, controller error %q", st.Ready, st.ControllerError)
	}
	waitFor(ctx, t, "the failure to be counted", func() bool {
		v, err := gatherCounter(cluster.cfg.Registerer.(prometheus.Gatherer), "raftmq_replica_failures_total", map[string]string{"broker": fmt.Sprint(old.cfg.ID)})
		return err == nil && v == 1
	})
	client.createTopic("after", 1, 3)
}

// TestReadErrorOfAStoppedReplicaIsRetriable: a read that finds its
// replica's log closed under it (the replica moved, failed or its broker is
// stopping) answers the retriable not_ready, not storage_error.
func TestReadErrorOfAStoppedReplicaIsRetriable(t *testing.T) {
	closed := readError(fmt.Errorf("read: %w", segmentlog.ErrClosed), "read t/0")
	if closed.Code != protocol.CodeNotReady || !closed.Retriable() {
		t.Fatalf("closed log: %v, want a retriable not_ready", closed)
	}
	other := readError(errors.New("disk on fire"), "read t/0")
	if other.Code != protocol.CodeStorage || !strings.Contains(other.Message, "disk on fire") {
		t.Fatalf("other read error: %v, want storage_error with the cause", other)
	}
}

// TestLeadershipAvoidsAReplicaThatFailedLately: the preferred leader's
// replica fails and restarts; until it has run for the failure memory, the
// leader does not hand it the partition back (a flaky disk would otherwise
// take the leadership after each restart and lose it at its next failure,
// an election timeout each time); once that passes, it leads again.
func TestLeadershipAvoidsAReplicaThatFailedLately(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var mu sync.Mutex
	faults := map[uint64]*faultFS{}
	const backoff = 20 * time.Millisecond
	cluster, client := startTestClusterWith(t, 3, func(cfg *Config) {
		fastTimings(cfg)
		cfg.ReplicaRestartBackoff = backoff
		fs := &faultFS{FS: vfs.Default}
		mu.Lock()
		faults[cfg.ID] = fs
		mu.Unlock()
		cfg.FS = fs
	})
	info := client.createTopic("flaky", 1, 3)
	preferred := info.Partitions[0].Replicas[0]
	b := cluster.Broker(preferred)
	leaderIs := func(id uint64) bool {
		r := leaderReplica(cluster, "flaky")
		return r != nil && r == localReplica(cluster.Broker(id), "flaky")
	}
	waitFor(ctx, t, "the preferred replica to lead", func() bool { return leaderIs(preferred) })
	stop := make(chan struct{})
	acked := produceContinuously(ctx, t, &leaderClient{testClient: client, leader: preferred, nodes: 3, acks: protocol.AcksQuorum}, "flaky", stop)
	defer func() {
		close(stop)
		acked.wait()
	}()

	mu.Lock()
	fault := faults[preferred]
	mu.Unlock()
	fault.fail.Store(true)
	waitFor(ctx, t, "the preferred replica to fail", func() bool { return len(b.localStatus().FailedReplicas) == 1 })
	fault.fail.Store(false)
	waitFor(ctx, t, "the preferred replica to restart", func() bool {
		return localReplica(b, "flaky") != nil && len(b.localStatus().FailedReplicas) == 0
	})
	group := info.Partitions[0].GroupID
	if !slices.Contains(b.localStatus().UnstableReplicas, group) {
		t.Fatalf("the restarted replica is not reported unstable: %v", b.localStatus().UnstableReplicas)
	}
	// The failure memory is 128 backoffs (2.56 s): about five rounds of
	// leader balancing (every 500 ms here), in none of which the restarted
	// replica may be handed the leadership.
	restarted := time.Now()
	for b.unstable(group) {
		if leaderIs(preferred) {
			t.Fatalf("the replica that failed lately leads again %v after its restart", time.Since(restarted))
		}
		select {
		case <-ctx.Done():
			t.Fatal("the failure was never forgotten")
		case <-time.After(20 * time.Millisecond):
		}
	}
	if held := time.Since(restarted); held < b.failureMemory()/2 {
		t.Fatalf("the failure was forgotten %v after the restart, want about the failure memory of %v", held, b.failureMemory())
	}
	waitFor(ctx, t, "the preferred replica to lead again", func() bool { return leaderIs(preferred) })
}
