package clients_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/raftmq/raftmq/clients"
	"github.com/raftmq/raftmq/protocol"
)

// BenchmarkGroupOffsetCommits measures offset commits per second for a
// group of 100 members over 100 partitions: each member commits its own
// partition's offset in a loop (one synchronous commit in flight per
// member). Baseline in the same run: one member committing alone. A third
// case puts the 100 members on 10 partitions, ten committing to each at
// once, which the leaders coalesce into one Raft entry per partition.
//
//	go test ./clients -run '^$' -bench GroupOffsetCommits -benchtime 20000x
func BenchmarkGroupOffsetCommits(b *testing.B) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	client := connectDev(ctx, b)
	const partitions = 100
	topic := fmt.Sprintf("bench-commits-%d", time.Now().UnixNano())
	if _, err := client.CreateTopic(ctx, topic, clients.WithPartitions(partitions), clients.WithReplicas(3)); err != nil {
		b.Fatal(err)
	}
	defer client.DeleteTopic(context.Background(), topic)
	// spread: how many of the partitions the members commit to; with 10,
	// ten members commit to each partition at once and its leader
	// coalesces their commits.
	for _, c := range []struct{ members, spread int }{{1, partitions}, {100, partitions}, {100, 10}} {
		members := c.members
		name := fmt.Sprintf("members=%d", members)
		if c.spread != partitions {
			name += fmt.Sprintf(",partitions=%d", c.spread)
		}
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			var next atomic.Int64
			var wg sync.WaitGroup
			errs := make(chan error, members)
			start := time.Now()
			for m := range members {
				wg.Go(func() {
					offset := []protocol.PartitionOffset{{Topic: topic, Partition: uint32(m % c.spread)}}
					for next.Add(1) <= int64(b.N) {
						if err := client.CommitOffsets(ctx, "bench", fmt.Sprint("m", m), offset); err != nil {
							errs <- err
							return
						}
					}
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				b.Fatal(err)
			}
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "commits/s")
		})
	}
}

// BenchmarkGroupRebalance measures how long a 3-member group on a
// 6-partition topic takes, after one member leaves (Close), until the two
// others consume all six partitions; p50 and p99 over b.N rounds.
//
//	go test ./clients -run '^$' -bench GroupRebalance -benchtime 30x
func BenchmarkGroupRebalance(b *testing.B) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	client := connectDev(ctx, b)
	topic := fmt.Sprintf("bench-rebalance-%d", time.Now().UnixNano())
	if _, err := client.CreateTopic(ctx, topic, clients.WithPartitions(6), clients.WithReplicas(3)); err != nil {
		b.Fatal(err)
	}
	defer client.DeleteTopic(context.Background(), topic)
	group := "rebalance-" + topic
	var mu sync.Mutex
	owner := map[uint32]string{}
	changed := make(chan struct{}, 1)
	start := func(id string) *clients.GroupConsumer {
		g, err := client.NewGroupConsumer(ctx, group, []string{topic}, clients.WithMemberID(id),
			clients.WithSessionTimeout(3*time.Second),
			clients.WithOnAssigned(func(_ context.Context, ps []clients.TopicPartition) {
				mu.Lock()
				for _, p := range ps {
					owner[p.Partition] = id
				}
				mu.Unlock()
				select {
				case changed <- struct{}{}:
				default:
				}
			}),
			clients.WithOnRevoked(func(_ context.Context, ps []clients.TopicPartition) {
				mu.Lock()
				for _, p := range ps {
					if owner[p.Partition] == id {
						delete(owner, p.Partition)
					}
				}
				mu.Unlock()
			}))
		if err != nil {
			b.Fatal(err)
		}
		return g
	}
	waitOwned := func(members ...string) {
		for {
			mu.Lock()
			count := map[string]int{}
			for _, m := range owner {
				count[m]++
			}
			done := len(owner) == 6
			for _, m := range members {
				done = done && count[m] == 6/len(members)
			}
			mu.Unlock()
			if done {
				return
			}
			select {
			case <-changed:
			case <-time.After(5 * time.Millisecond):
			case <-ctx.Done():
				b.Fatal("rebalance did not finish")
			}
		}
	}
	members := map[string]*clients.GroupConsumer{"a": start("a"), "b": start("b"), "c": start("c")}
	defer func() {
		for _, g := range members {
			_ = g.Close(context.Background())
		}
	}()
	waitOwned("a", "b", "c")
	var durations []time.Duration
	b.ResetTimer()
	for i := range b.N {
		leaving := []string{"a", "b", "c"}[i%3]
		mu.Lock()
		for p, m := range owner {
			if m == leaving {
				delete(owner, p)
			}
		}
		mu.Unlock()
		began := time.Now()
		if err := members[leaving].Close(ctx); err != nil {
			b.Fatal(err)
		}
		var rest []string
		for id := range members {
			if id != leaving {
				rest = append(rest, id)
			}
		}
		waitOwned(rest...)
		durations = append(durations, time.Since(began))
		b.StopTimer()
		members[leaving] = start(leaving)
		waitOwned("a", "b", "c")
		b.StartTimer()
	}
	slices.Sort(durations)
	b.ReportMetric(float64(durations[len(durations)/2].Milliseconds()), "p50-ms")
	b.ReportMetric(float64(durations[(len(durations)*99)/100].Milliseconds()), "p99-ms")
}
