package raft

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/raftmq/raftmq/protocol"
)

// BenchmarkClusterSegmentlogLatency: one proposal at a time on the 3-node
// cluster over segmentlog with real files and fsync; each proposal waits
// for its commit (durable on the leader and one follower). Beside it, in
// the same run and interleaved with the proposals (so both see the same
// machine), one write of the same size plus fdatasync on a file of its
// own: the disk's share. Raft's commit latency should be about one fsync
// plus a round trip (the leader's sync runs in parallel with the
// follower's append, sync and answer).
//
// Metrics: p50-us and p99-us of a commit, fsync-p50-us and fsync-p99-us of
// the baseline, p50-vs-fsync (ratio of the medians), fsync2of3-p50-us and
// -p99-us (three such syncs in parallel on three files, as the cluster's
// three logs share this disk, until the second is done: the floor of a
// commit here), and the goroutine wake-ups of the driver per proposal.
func BenchmarkClusterSegmentlogLatency(b *testing.B) {
	for _, size := range []int{100, 64 << 10} {
		b.Run(sizeName(size), func(b *testing.B) {
			dir := b.TempDir()
			bc := newBenchCluster(b, segmentlogOpener(b, dir))
			g := bc.leader(b)
			var files [3]*os.File
			for i := range files {
				f, err := os.Create(filepath.Join(dir, fmt.Sprintf("baseline-%d", i)))
				if err != nil {
					b.Fatal(err)
				}
				defer f.Close()
				files[i] = f
			}
			f := files[0]
			done := make(chan error, len(files))
			data := make([]byte, size)
			buf := make([]byte, size)
			ctx := context.Background()
			lat := make([]time.Duration, 0, b.N)
			sync := make([]time.Duration, 0, b.N)
			quorum := make([]time.Duration, 0, b.N)
			leaderSyncs := bc.logs[g.host.cfg.NodeID].syncs.Load()
			w0 := bc.wakeups()
			var raftTime time.Duration
			b.SetBytes(int64(size))
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				start := time.Now()
				p := g.Propose(ctx, protocol.EntryControl, data, AckCommitted)
				if _, _, err := p.Wait(ctx); err != nil {
					b.Fatal(err)
				}
				d := time.Since(start)
				raftTime += d
				lat = append(lat, d)

				b.StopTimer()
				start = time.Now()
				if _, err := f.Write(buf); err != nil {
					b.Fatal(err)
				}
				if err := syscall.Fdatasync(int(f.Fd())); err != nil {
					b.Fatal(err)
				}
				sync = append(sync, time.Since(start))

				// The cluster's three logs share this disk: the floor of
				// a commit is the second of three parallel syncs.
				start = time.Now()
				for _, f := range files {
					go func() {
						_, err := f.Write(buf)
						if err == nil {
							err = syscall.Fdatasync(int(f.Fd()))
						}
						done <- err
					}()
				}
				var second time.Duration
				for i := range files {
					if err := <-done; err != nil {
						b.Fatal(err)
					}
					if i == 1 {
						second = time.Since(start)
					}
				}
				quorum = append(quorum, second)
				b.StartTimer()
			}
			b.StopTimer()
			w := bc.wakeups().sub(w0)
			batches := bc.logs[g.host.cfg.NodeID].syncs.Load() - leaderSyncs
			slices.Sort(lat)
			slices.Sort(sync)
			slices.Sort(quorum)
			p50, p99 := percentile(lat, 50), percentile(lat, 99)
			s50, s99 := percentile(sync, 50), percentile(sync, 99)
			b.ReportMetric(us(p50), "p50-us")
			b.ReportMetric(us(p99), "p99-us")
			b.ReportMetric(us(s50), "fsync-p50-us")
			b.ReportMetric(us(s99), "fsync-p99-us")
			b.ReportMetric(float64(p50)/float64(max(s50, 1)), "p50-vs-fsync")
			b.ReportMetric(us(percentile(quorum, 50)), "fsync2of3-p50-us")
			b.ReportMetric(us(percentile(quorum, 99)), "fsync2of3-p99-us")
			b.ReportMetric(float64(w.total())/float64(b.N), "wakeups/op")
			b.ReportMetric(float64(w.run)/float64(b.N), "run-wakeups/op")
			b.ReportMetric(float64(w.sync)/float64(b.N), "sync-wakeups/op")
			b.ReportMetric(float64(w.apply)/float64(b.N), "apply-wakeups/op")
			b.ReportMetric(float64(w.timer)/float64(b.N), "timer-wakeups/op")
			b.ReportMetric(float64(batches)/float64(b.N), "leader-syncs/op")
		})
	}
}

// percentile returns the p-th percentile of sorted durations.
func percentile(sorted []time.Duration, p int) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := (len(sorted)*p + 99) / 100
	return sorted[min(max(i-1, 0), len(sorted)-1)]
}

func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
