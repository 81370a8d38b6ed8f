package broker

import (
	"context"
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
)

// errInjectedSync and errInjectedWrite are what faultFS's syncs and
// writes return while they fail.
var (
	errInjectedSync  = errors.New("injected fsync failure")
	errInjectedWrite = fmt.Errorf("injected write failure: %w", syscall.ENOSPC)
)

// faultFS is the operating system's file system, except that while fail
// (failWrites) is set every sync (write) of a file under a topics
// directory fails: the partition logs, not the controller's.
type faultFS struct {
	vfs.FS
	fail       atomic.Bool
	failWrites atomic.Bool
}

type faultFile struct {
	vfs.File
	fs *faultFS
}

func (fs *faultFS) wrap(name string, f vfs.File, err error) (vfs.File, error) {
	if err != nil || !strings.Contains(name, "/topics/") {
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

// messageRecorder is a slog.Handler that counts records by message.
type messageRecorder struct {
	mu     *sync.Mutex
	counts map[string]int
}

func (h messageRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (h messageRecorder) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h messageRecorder) WithGroup(string) slog.Handler            { return h }
func (h messageRecorder) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	h.counts[r.Message]++
	h.mu.Unlock()
	return nil
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
	var logMu sync.Mutex
	logged := map[string]int{}
	cluster, client := startTestClusterWith(t, 3, func(cfg *Config) {
		fastTimings(cfg)
		cfg.ReplicaRestartBackoff = 100 * time.Millisecond
		if cfg.ID == 2 {
			cfg.FS = fault
			cfg.Logger = slog.New(messageRecorder{mu: &logMu, counts: logged})
		}
	})
	count := func(msg string) int {
		logMu.Lock()
		defer logMu.Unlock()
		return logged[msg]
	}
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
	if failed.group.Err() == nil {
		t.Fatal("the stopped replica's group reports no error")
	}
	// Restarts fail at once while syncs fail (the restart's cut syncs);
	// with writes failing a restart succeeds and the replica fails again
	// at its first append.
	const stoppedMsg = "partition replica stopped by an error; restarting it after a backoff"
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
	time.Sleep(200 * time.Millisecond)
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
