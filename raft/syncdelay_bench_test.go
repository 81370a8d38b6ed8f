package raft

import (
	"flag"
	"os"
	"testing"
	"time"
)

var (
	flagBenchDir       = flag.String("bench.dir", "", "BenchmarkClusterSegmentlogSyncDelay: directory for the logs (default a temporary directory; a tmpfs such as /dev/shm makes the delay the whole sync)")
	flagBenchSyncDelay = flag.Duration("bench.syncdelay", time.Millisecond, "BenchmarkClusterSegmentlogSyncDelay: time every log sync takes on top of the file system's")
)

// delayedSyncLog is a LogStorage whose Sync takes a fixed time more: a
// disk with a known fsync time. The log is synced first, so the durable
// index is what was appended before the sync started, as with fsync.
type delayedSyncLog struct {
	LogStorage
	delay time.Duration
}

func (l *delayedSyncLog) Sync() (uint64, error) {
	durable, err := l.LogStorage.Sync()
	time.Sleep(l.delay)
	return durable, err
}

// BenchmarkClusterSegmentlogSyncDelay is BenchmarkClusterSegmentlog/100B
// with a disk model instead of a shared disk: segmentlog files (put them
// on a tmpfs with -bench.dir) whose every Sync takes -bench.syncdelay
// more. A disk shared with other programs makes the fsync time vary by
// tens of times between runs; a fixed delay keeps what Raft's pipeline
// does with the syncs comparable. The baseline, delay-only-entries/s, is
// what the same number of syncs allows when they take nothing but the
// delay, each node's in sequence, the nodes in parallel.
func BenchmarkClusterSegmentlogSyncDelay(b *testing.B) { benchSyncDelay(b, 1) }

// BenchmarkClusterSegmentlogSyncDelayBatch16 is the same load proposed 16
// entries per ProposeBatch call (16 batches in flight per proposer, the
// same 16K entries in all): what Raft costs per entry when the proposer
// side does not hand over entries one at a time.
func BenchmarkClusterSegmentlogSyncDelayBatch16(b *testing.B) { benchSyncDelay(b, 16) }

func benchSyncDelay(b *testing.B, batch int) {
	const size = 100
	dir := *flagBenchDir
	if dir == "" {
		dir = b.TempDir()
	} else {
		var err error
		if dir, err = os.MkdirTemp(dir, "raft-bench-"); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = os.RemoveAll(dir) })
	}
	open := segmentlogOpener(b, dir)
	bc := newBenchCluster(b, func(id uint64) LogStorage {
		return &delayedSyncLog{LogStorage: open(id), delay: *flagBenchSyncDelay}
	})
	elapsed, syncs := runClusterLoadBatched(b, bc, size, batch)
	var most, total int64
	for _, n := range syncs {
		most = max(most, n)
		total += n
	}
	baseline := time.Duration(most) * *flagBenchSyncDelay
	b.ReportMetric(float64(total)/float64(b.N), "fsyncs/entry")
	b.ReportMetric(float64(b.N)/baseline.Seconds(), "delay-only-entries/s")
	b.ReportMetric(baseline.Seconds()/elapsed.Seconds()*100, "delay-%-of-time")
}
