package raft

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/raftmq/raftmq/protocol"
	"github.com/raftmq/raftmq/segmentlog"
)

// benchLogger reports state changes (an election during a benchmark run
// means the machine starved the cluster for an election timeout).
var benchLogger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))

// flagBenchWindow overrides GroupConfig.EntryWindowBytes in the cluster
// benchmarks.
var flagBenchWindow = flag.Uint64("bench.window", 0, "cluster benchmarks: GroupConfig.EntryWindowBytes (0: default)")

// countingSM counts applied entries.
type countingSM struct{ n atomic.Int64 }

func (c *countingSM) Apply(ents []protocol.Entry) error { c.n.Add(int64(len(ents))); return nil }

// countingLog counts syncs and appends of a LogStorage.
type countingLog struct {
	LogStorage
	syncs, appends atomic.Int64
}

func (l *countingLog) Sync() (uint64, error) { l.syncs.Add(1); return l.LogStorage.Sync() }

func (l *countingLog) Append(ents []protocol.Entry) error {
	l.appends.Add(1)
	return l.LogStorage.Append(ents)
}

type benchCluster struct {
	hosts  map[uint64]*Host
	groups map[uint64]*Group
	logs   map[uint64]*countingLog
}

func newBenchCluster(b *testing.B, newLog func(id uint64) LogStorage) *benchCluster {
	b.Helper()
	return newBenchClusterOver(b, newLog, false)
}

// newBenchClusterOver is newBenchCluster; encode makes the in-memory
// transport encode every message to bytes and decode it on arrival, as a
// real transport does (decoded entries alias the frame, as from NATS).
func newBenchClusterOver(b *testing.B, newLog func(id uint64) LogStorage, encode bool) *benchCluster {
	b.Helper()
	ids := []uint64{1, 2, 3}
	net := &memNetwork{hosts: map[uint64]*Host{}, cut: map[uint64]bool{}}
	send := net.send
	if encode {
		send = func(msgs []protocol.RaftMessage) { encodedSend(net, msgs) }
	}
	bc := &benchCluster{hosts: map[uint64]*Host{}, groups: map[uint64]*Group{}, logs: map[uint64]*countingLog{}}
	for _, id := range ids {
		h, err := NewHost(HostConfig{NodeID: id, Send: send, Seed: id, Logger: benchLogger})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = h.Close() })
		net.hosts[id] = h
		bc.hosts[id] = h
	}
	for _, id := range ids {
		cfg := DefaultGroupConfig()
		cfg.GroupID = 1
		cfg.Voters = ids
		// Long timeouts: a shared CI machine can starve the process for a
		// few hundred milliseconds, and an election mid-run is not what
		// this measures.
		cfg.ElectionTimeout = 5 * time.Second
		cfg.HeartbeatInterval = 100 * time.Millisecond
		if *flagBenchWindow != 0 {
			cfg.EntryWindowBytes = *flagBenchWindow
		}
		bc.logs[id] = &countingLog{LogStorage: newLog(id)}
		cfg.Log = bc.logs[id]
		cfg.Stable = &memStable{}
		cfg.StateMachine = &countingSM{}
		g, err := bc.hosts[id].AddGroup(cfg)
		if err != nil {
			b.Fatal(err)
		}
		bc.groups[id] = g
	}
	// Cleanups run last-registered first: stop the hosts before the logs
	// a newLog registered are closed under running groups.
	b.Cleanup(func() {
		for _, h := range bc.hosts {
			_ = h.Close()
		}
	})
	return bc
}

func (bc *benchCluster) leader(b *testing.B) *Group {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for _, g := range bc.groups {
			if g.Status().Role == RoleLeader {
				// Let the no-op commit so the first proposals do not wait
				// on the election.
				p := g.Propose(context.Background(), protocol.EntryControl, []byte("warmup"), AckCommitted)
				if _, _, err := p.Wait(context.Background()); err == nil {
					return g
				}
			}
		}
		time.Sleep(time.Millisecond)
	}
	b.Fatal("no leader")
	return nil
}

// proposeLoad runs b.N proposals of size bytes from many proposers, each
// keeping a window of proposals in flight, and returns the elapsed time.
// With batch > 1 each proposal is a ProposeBatch of batch entries (the
// last one of a proposer may hold fewer), so b.N entries in all; with
// batch 1 each is a Propose.
func proposeLoad(b *testing.B, g *Group, size, proposers, window, batch int) time.Duration {
	data := make([]byte, size)
	var next atomic.Int64
	var wg sync.WaitGroup
	ctx := context.Background()
	b.SetBytes(int64(size))
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	cpu0 := cpuTime()
	for range proposers {
		wg.Go(func() {
			// A ring of the proposals in flight, oldest at head.
			ring := make([]*Proposal, window)
			datas := make([][]byte, batch)
			head, n := 0, 0
			for {
				end := next.Add(int64(batch))
				k := min(int64(batch), int64(b.N)-(end-int64(batch)))
				if k <= 0 {
					break
				}
				if n == window {
					if _, _, err := ring[head].Wait(ctx); err != nil {
						b.Error(err)
						return
					}
					head = (head + 1) % window
					n--
				}
				if batch == 1 {
					ring[(head+n)%window] = g.Propose(ctx, protocol.EntryControl, data, AckCommitted)
				} else {
					for i := range datas[:k] {
						datas[i] = data
					}
					ring[(head+n)%window] = g.ProposeBatch(ctx, protocol.EntryControl, datas[:k], AckCommitted)
				}
				n++
			}
			for ; n > 0; n-- {
				if _, _, err := ring[head].Wait(ctx); err != nil {
					b.Error(err)
					return
				}
				head = (head + 1) % window
			}
		})
	}
	wg.Wait()
	if b.Failed() {
		b.Logf("leader group status %+v", g.Status())
	}
	elapsed := time.Since(start)
	cpu := cpuTime() - cpu0
	b.StopTimer()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "entries/s")
	// CPU time of the whole process (three nodes and the proposers) per
	// entry: steadier than entries/s on a shared machine. 2 cores allow
	// 2e9/cpu-ns/entry entries/s at best.
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/entry")
	return elapsed
}

// encodedSend encodes each message into its own frame and hands the
// decoded copy to the destination: the copies and allocations of a real
// transport without the network.
func encodedSend(net *memNetwork, msgs []protocol.RaftMessage) {
	for i := range msgs {
		frame := protocol.AppendRaftMessage(make([]byte, 0, protocol.RaftMessageSize(&msgs[i])), &msgs[i])
		m, err := protocol.DecodeRaftMessage(frame)
		if err != nil {
			panic(err)
		}
		msgs[i] = m
	}
	net.send(msgs)
}

// BenchmarkClusterMemory: a 3-node cluster in one process over the
// in-memory transport, no disk; committed entries/s and MB/s. Messages
// pass by reference: entry data is never copied, so MB/s at 64 KiB shows
// the per-entry cost, not memory bandwidth (BenchmarkClusterMemoryEncoded
// copies).
func BenchmarkClusterMemory(b *testing.B) { benchClusterMemory(b, false) }

// BenchmarkClusterMemoryEncoded is BenchmarkClusterMemory with every
// message encoded to a frame and decoded, as over NATS.
func BenchmarkClusterMemoryEncoded(b *testing.B) { benchClusterMemory(b, true) }

func benchClusterMemory(b *testing.B, encode bool) {
	for _, size := range []int{100, 64 << 10} {
		b.Run(sizeName(size), func(b *testing.B) {
			// The log must hold more than a follower lags by: on a
			// starved machine one follower can fall far behind while the
			// other makes the quorum, and the benchmark has no snapshots.
			// It holds the whole run (up to 4M entries, 48 B each besides
			// the data, which all proposals share), or when encoded, where
			// a follower's entries hold their frames, 512 MiB of data
			// (8K entries of 64 KiB, 32 times what is in flight).
			keep, keepBytes := max(1<<18, min(b.N+1<<16, 1<<22)), uint64(math.MaxUint64)
			if encode {
				keepBytes = 512 << 20
			}
			bc := newBenchClusterOver(b, func(uint64) LogStorage { return newBenchLog(keep, keepBytes) }, encode)
			g := bc.leader(b)
			ll := bc.logs[g.host.cfg.NodeID]
			syncs0, appends0 := ll.syncs.Load(), ll.appends.Load()
			w0 := bc.wakeups()
			proposers, window := loadShape(size)
			proposeLoad(b, g, size, proposers, window, 1)
			reportWakeups(b, bc.wakeups().sub(w0), ll.syncs.Load()-syncs0, ll.appends.Load()-appends0)
		})
	}
}

// loadShape returns proposers and the proposals each keeps in flight: 16K
// small entries or 256 large ones (16 MiB) outstanding in all.
func loadShape(size int) (proposers, window int) {
	if size > 1<<10 {
		return 16, 16
	}
	return 64, 256
}

// BenchmarkClusterSegmentlog: the same cluster on segmentlog with real
// files and fsync. fsync-only-entries/s is the baseline: the entries/s the
// same number of fsyncs (of one small write each, run in parallel per
// node as the cluster does) would allow with no Raft and no data at all;
// disk-only-entries/s adds writing the entries' bytes on every node (plain
// write calls before each fsync, no framing): the disk's whole share.
func BenchmarkClusterSegmentlog(b *testing.B) {
	for _, size := range []int{100, 64 << 10} {
		b.Run(sizeName(size), func(b *testing.B) {
			dir := b.TempDir()
			bc := newBenchCluster(b, segmentlogOpener(b, dir))
			elapsed, syncs := runClusterLoad(b, bc, size)
			var total int64
			for _, n := range syncs {
				total += n
			}
			baseline := fsyncBaseline(b, dir, syncs, 0)
			b.ReportMetric(float64(total)/float64(b.N), "fsyncs/entry")
			b.ReportMetric(float64(b.N)/baseline.Seconds(), "fsync-only-entries/s")
			b.ReportMetric(baseline.Seconds()/elapsed.Seconds()*100, "fsync-%-of-time")
			// The disk's whole share: every node writes the entries' bytes
			// too, split evenly over its syncs.
			disk := fsyncBaseline(b, dir, syncs, int64(b.N)*int64(size))
			b.ReportMetric(float64(b.N)/disk.Seconds(), "disk-only-entries/s")
			b.ReportMetric(disk.Seconds()/elapsed.Seconds()*100, "disk-%-of-time")
		})
	}
}

// runClusterLoad runs the benchmark's proposer load of size-byte entries
// (loadShape) on bc's leader, reports the wake-ups per batch, and returns
// the elapsed time and each node's number of log syncs during the load.
func runClusterLoad(b *testing.B, bc *benchCluster, size int) (time.Duration, []int64) {
	return runClusterLoadBatched(b, bc, size, 1)
}

// runClusterLoadBatched is runClusterLoad with each proposer proposing
// batch entries per ProposeBatch call (1: Propose), with as many entries
// in flight.
func runClusterLoadBatched(b *testing.B, bc *benchCluster, size, batch int) (time.Duration, []int64) {
	g := bc.leader(b)
	before := map[uint64]int64{}
	for id, l := range bc.logs {
		before[id] = l.syncs.Load()
	}
	ll := bc.logs[g.host.cfg.NodeID]
	syncs0, appends0 := ll.syncs.Load(), ll.appends.Load()
	w0 := bc.wakeups()
	proposers, window := loadShape(size)
	elapsed := proposeLoad(b, g, size, proposers, max(1, window/batch), batch)
	reportWakeups(b, bc.wakeups().sub(w0), ll.syncs.Load()-syncs0, ll.appends.Load()-appends0)
	var syncs []int64
	for id, l := range bc.logs {
		syncs = append(syncs, l.syncs.Load()-before[id])
	}
	return elapsed, syncs
}

// segmentlogOpener returns a newLog for newBenchCluster: a segmentlog per
// node under dir, with real files and fsync.
func segmentlogOpener(b *testing.B, dir string) func(id uint64) LogStorage {
	return func(id uint64) LogStorage {
		l, err := segmentlog.Open(vfs.Default, filepath.Join(dir, fmt.Sprint(id)), segmentlog.DefaultOptions())
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = l.Close() })
		return l
	}
}

// wakeups sums the hand-off wake-ups of the cluster's hosts.
func (bc *benchCluster) wakeups() hostWakeups {
	var w hostWakeups
	for _, h := range bc.hosts {
		w = w.add(h.wakeups())
	}
	return w
}

// reportWakeups reports the cluster's goroutine wake-ups (hand-offs to a
// waiting worker, on all three nodes) per committed batch, taking the
// leader's log syncs as the batches (each commit needs one), and the
// entries per append on the leader.
func reportWakeups(b *testing.B, w hostWakeups, batches, appends int64) {
	if appends > 0 {
		b.ReportMetric(float64(b.N)/float64(appends), "entries/append")
	}
	if batches <= 0 {
		return
	}
	n := float64(batches)
	b.ReportMetric(float64(w.total())/n, "wakeups/batch")
	b.ReportMetric(float64(w.run)/n, "run-wakeups/batch")
	b.ReportMetric(float64(w.sync)/n, "sync-wakeups/batch")
	b.ReportMetric(float64(w.apply)/n, "apply-wakeups/batch")
	b.ReportMetric(float64(b.N)/n, "entries/batch")
}

// fsyncBaseline does counts[i] write+fdatasync rounds on file i, the files
// in parallel, and returns the time taken. Each round writes 64 bytes, or
// bytes/counts[i] when bytes is not 0 (each file gets bytes in all).
func fsyncBaseline(b *testing.B, dir string, counts []int64, bytes int64) time.Duration {
	var wg sync.WaitGroup
	start := time.Now()
	for i, n := range counts {
		f, err := os.Create(filepath.Join(dir, fmt.Sprintf("baseline-%d-%d", i, bytes)))
		if err != nil {
			b.Fatal(err)
		}
		wg.Go(func() {
			defer f.Close()
			defer os.Remove(f.Name())
			size := int64(64)
			if bytes > 0 {
				size = max(1, bytes/max(n, 1))
			}
			buf := make([]byte, min(size, 1<<20))
			for range n {
				for left := size; left > 0; left -= int64(len(buf)) {
					if _, err := f.Write(buf[:min(left, int64(len(buf)))]); err != nil {
						b.Error(err)
						return
					}
				}
				if err := syscall.Fdatasync(int(f.Fd())); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	return time.Since(start)
}

// BenchmarkIdleGroups: 1,000 idle 3-replica groups on three hosts (each
// host runs 1,000 replicas, a third of them leaders sending heartbeats).
// Reports CPU per idle group replica (as a fraction of one core) and heap
// bytes per replica. Each iteration observes one second.
func BenchmarkIdleGroups(b *testing.B) {
	const groups = 1000
	ids := []uint64{1, 2, 3}
	net := &memNetwork{hosts: map[uint64]*Host{}, cut: map[uint64]bool{}}
	runtime.GC()
	var m0 runtime.MemStats
	runtime.ReadMemStats(&m0)
	hosts := map[uint64]*Host{}
	for _, id := range ids {
		h, err := NewHost(HostConfig{NodeID: id, Send: net.send, Seed: id, Logger: benchLogger})
		if err != nil {
			b.Fatal(err)
		}
		defer h.Close()
		net.mu.Lock()
		net.hosts[id] = h
		net.mu.Unlock()
		hosts[id] = h
	}
	var all []*Group
	for gid := uint64(1); gid <= groups; gid++ {
		for _, id := range ids {
			cfg := DefaultGroupConfig()
			cfg.GroupID = gid
			cfg.Voters = ids
			cfg.Log = newMemLog()
			cfg.Stable = &memStable{}
			cfg.StateMachine = &countingSM{}
			g, err := hosts[id].AddGroup(cfg)
			if err != nil {
				b.Fatal(err)
			}
			all = append(all, g)
		}
	}
	// Wait until every group has a leader and is idle.
	deadline := time.Now().Add(30 * time.Second)
	for {
		leaders := 0
		for _, g := range all {
			if g.Status().Role == RoleLeader {
				leaders++
			}
		}
		if leaders == groups {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("%d of %d groups have a leader", leaders, groups)
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(3 * time.Second) // elections settle, no-ops commit
	runtime.GC()
	var m1 runtime.MemStats
	runtime.ReadMemStats(&m1)
	replicas := float64(len(all))
	b.ResetTimer()
	cpu0 := cpuTime()
	start := time.Now()
	for range b.N {
		time.Sleep(time.Second)
	}
	wall := time.Since(start)
	cpu := cpuTime() - cpu0
	b.StopTimer()
	b.ReportMetric(float64(cpu)/float64(wall)/replicas*100, "cpu-%-of-core/replica")
	b.ReportMetric(float64(cpu)/float64(wall)*100, "cpu-%-of-core/total")
	b.ReportMetric(float64(m1.HeapAlloc-m0.HeapAlloc)/replicas, "heap-bytes/replica")
	b.ReportMetric(float64(runtime.NumGoroutine()), "goroutines")
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func sizeName(size int) string {
	if size >= 1<<10 {
		return fmt.Sprintf("%dKiB", size>>10)
	}
	return fmt.Sprintf("%dB", size)
}
