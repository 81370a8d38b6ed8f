package raft

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/raftmq/raftmq/protocol"
)

// slowSyncLog is a memLog whose Sync yields the processor a few times
// before it makes anything durable, so a driver that counted an entry
// before its sync returned would be caught in the act.
type slowSyncLog struct{ *memLog }

func (l slowSyncLog) Sync() (uint64, error) {
	for range 20 {
		runtime.Gosched()
	}
	return l.memLog.Sync()
}

func (l slowSyncLog) durableIndex() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.durable
}

// TestHostCommitIsDurableOnAQuorumWithEveryHandOff checks the rule that
// an entry is reported committed only once a quorum holds it durably (the
// leader counting itself only after its own sync, a follower answering
// only after its sync), over both ways the driver syncs a log: inline on
// the run worker that appended (a spare worker is idle) and on a sync
// worker, which then runs the core on the notice itself (one run worker,
// never spare). Proposals go one at a time and many at once.
func TestHostCommitIsDurableOnAQuorumWithEveryHandOff(t *testing.T) {
	for _, workers := range []int{1, 4} {
		t.Run(fmt.Sprintf("workers=%d", workers), func(t *testing.T) {
			logs := map[uint64]slowSyncLog{}
			tc := newTestClusterWith(t, []uint64{1, 2, 3}, testClusterOptions{
				host: func(cfg *HostConfig) { cfg.Workers = workers },
				group: func(id uint64, cfg *GroupConfig) {
					logs[id] = slowSyncLog{newMemLog()}
					cfg.Log = logs[id]
				},
			})
			leader := tc.groups[tc.leader(t)]
			durableOn := func(index uint64) int {
				n := 0
				for _, l := range logs {
					if l.durableIndex() >= index {
						n++
					}
				}
				return n
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			check := func(p *Proposal) {
				t.Helper()
				index, _, err := p.Wait(ctx)
				if err != nil {
					t.Fatalf("proposal: %v", err)
				}
				if n := durableOn(index); n < 2 {
					t.Fatalf("index %d reported committed while durable on %d of 3 logs", index, n)
				}
			}
			w0 := leader.host.wakeups()
			for i := range 100 {
				check(leader.Propose(ctx, protocol.EntryControl, fmt.Appendf(nil, "one-%d", i), AckCommitted))
			}
			var wg sync.WaitGroup
			for range 4 {
				wg.Go(func() {
					var props []*Proposal
					for i := range 200 {
						props = append(props, leader.Propose(ctx, protocol.EntryControl, fmt.Appendf(nil, "many-%d", i), AckCommitted))
					}
					for _, p := range props {
						index, _, err := p.Wait(ctx)
						if err != nil {
							t.Errorf("proposal: %v", err)
							return
						}
						if n := durableOn(index); n < 2 {
							t.Errorf("index %d reported committed while durable on %d of 3 logs", index, n)
							return
						}
					}
				})
			}
			wg.Wait()
			w := leader.host.wakeups().sub(w0)
			if workers == 1 && w.sync == 0 {
				// With one run worker there is never a spare one: every
				// sync goes to a sync worker.
				t.Errorf("one run worker: no sync worker was woken (%+v)", w)
			}
		})
	}
}
