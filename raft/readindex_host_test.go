package raft

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/raftmq/raftmq/protocol"
)

// TestHostReadIndexSeesEveryAcknowledgedWrite: after a write is
// acknowledged, ReadIndex on any replica returns an index at or past it and
// that replica's state machine has applied it.
func TestHostReadIndexSeesEveryAcknowledgedWrite(t *testing.T) {
	tc := newTestCluster(t, []uint64{1, 2, 3}, nil)
	leader := tc.leader(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i := range 20 {
		index, _, err := tc.groups[leader].Propose(ctx, protocol.EntryControl, fmt.Appendf(nil, "w%d", i), AckCommitted).Wait(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for id, g := range tc.groups {
			read, err := g.ReadIndex(ctx)
			var nle *NotLeaderError
			if errors.As(err, &nle) {
				continue // a leader change in between; the next write checks again
			}
			if err != nil {
				t.Fatalf("node %d: %v", id, err)
			}
			if read < index {
				t.Fatalf("node %d: read index %d below acknowledged write %d", id, read, index)
			}
			fsm := tc.fsms[id]
			fsm.mu.Lock()
			last := fsm.last
			fsm.mu.Unlock()
			if last < read {
				t.Fatalf("node %d: ReadIndex returned %d before applying it (applied %d)", id, read, last)
			}
		}
	}
}

// TestHostReadIndexBatchesConcurrentReaders: many concurrent readers need
// far fewer heartbeat rounds than reads.
func TestHostReadIndexBatchesConcurrentReaders(t *testing.T) {
	tc := newTestCluster(t, []uint64{1, 2, 3}, nil)
	g := tc.groups[tc.leader(t)]
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, _, err := g.Propose(ctx, protocol.EntryControl, []byte("x"), AckApplied).Wait(ctx); err != nil {
		t.Fatal(err)
	}
	before := g.Status().ReadRounds
	var wg sync.WaitGroup
	var reads atomic.Int64
	for range 32 {
		wg.Go(func() {
			for range 50 {
				if _, err := g.ReadIndex(ctx); err == nil {
					reads.Add(1)
				}
			}
		})
	}
	wg.Wait()
	rounds := g.Status().ReadRounds - before
	if reads.Load() != 32*50 {
		t.Fatalf("%d of %d reads succeeded", reads.Load(), 32*50)
	}
	if rounds == 0 || rounds >= uint64(reads.Load()) {
		t.Fatalf("%d reads took %d heartbeat rounds; want shared rounds", reads.Load(), rounds)
	}
	t.Logf("%d reads, %d rounds", reads.Load(), rounds)
}

func TestHostReadIndexOnClosedGroup(t *testing.T) {
	tc := newTestCluster(t, []uint64{1}, nil)
	g := tc.groups[1]
	if err := tc.hosts[1].RemoveGroup(1); err != nil {
		t.Fatal(err)
	}
	if _, err := g.ReadIndex(context.Background()); !errors.Is(err, ErrClosed) {
		t.Fatalf("err %v, want ErrClosed", err)
	}
}

// BenchmarkReadIndex measures linearizable reads per second with many
// concurrent readers on the leader and on a follower, and reports the
// heartbeat rounds per read.
func BenchmarkReadIndex(b *testing.B) {
	for _, where := range []string{"leader", "follower"} {
		b.Run(where, func(b *testing.B) {
			bc := newBenchCluster(b, func(uint64) LogStorage { return newMemLog() })
			leader := bc.leader(b)
			g := leader
			if where == "follower" {
				for _, other := range bc.groups {
					if other != leader {
						g = other
						break
					}
				}
			}
			before := leader.Status().ReadRounds
			b.ReportAllocs()
			b.SetParallelism(64)
			b.ResetTimer()
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				ctx := context.Background()
				for pb.Next() {
					if _, err := g.ReadIndex(ctx); err != nil {
						b.Error(err)
						return
					}
				}
			})
			elapsed := time.Since(start)
			rounds := leader.Status().ReadRounds - before
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "reads/s")
			b.ReportMetric(float64(rounds)/float64(b.N), "rounds/read")
		})
	}
	// The baseline, in the same run: the same cluster and concurrency
	// writing a small entry through the log (AckCommitted), which is what
	// a read would cost if it went through the log instead of ReadIndex.
	b.Run("baseline-propose", func(b *testing.B) {
		bc := newBenchCluster(b, func(uint64) LogStorage { return newMemLog() })
		leader := bc.leader(b)
		b.ReportAllocs()
		b.SetParallelism(64)
		b.ResetTimer()
		start := time.Now()
		b.RunParallel(func(pb *testing.PB) {
			ctx := context.Background()
			for pb.Next() {
				if _, _, err := leader.Propose(ctx, protocol.EntryControl, []byte("read"), AckCommitted).Wait(ctx); err != nil {
					b.Error(err)
					return
				}
			}
		})
		b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "writes/s")
	})
}
