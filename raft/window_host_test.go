package raft

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/raftmq/raftmq/protocol"
	"github.com/raftmq/raftmq/segmentlog"
)

// TestHostIdleGroupWindowHoldsNothing: the entry window holds only what is
// in flight (appended, not yet applied and acknowledged by every follower);
// once a group is idle every replica's window is empty, its arena of
// stamped record batches included, so idle groups on a broker hold no
// entry data however large EntryWindowBytes is.
func TestHostIdleGroupWindowHoldsNothing(t *testing.T) {
	tc := newTestClusterWith(t, []uint64{1, 2, 3}, testClusterOptions{group: func(id uint64, cfg *GroupConfig) {
		l, err := segmentlog.Open(vfs.NewMem(), fmt.Sprint("node-", id), segmentlog.DefaultOptions())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = l.Close() })
		cfg.Log = l
	}})
	// Hosts close before their logs (cleanups run last first).
	t.Cleanup(func() {
		for _, h := range tc.hosts {
			_ = h.Close()
		}
	})
	groups, fsms := tc.groups, tc.fsms
	leader := groups[tc.leader(t)]
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	var last sync.Map
	for p := range 4 {
		wg.Go(func() {
			var props []*Proposal
			for i := range 100 {
				props = append(props, leader.Propose(ctx, protocol.EntryRecordBatch, testRecordBatch(3, 300, byte(p*100+i)), AckCommitted))
			}
			for _, prop := range props {
				index, _, err := prop.Wait(ctx)
				if err != nil {
					t.Errorf("proposal: %v", err)
					return
				}
				last.Store(p, index)
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	var top uint64
	last.Range(func(_, v any) bool { top = max(top, v.(uint64)); return true })
	// The leader's window served reads, so it held entries while they
	// were in flight (else the check below proves nothing).
	leader.mu.Lock()
	hits := leader.windowHeld.hits
	leader.mu.Unlock()
	if hits == 0 {
		t.Fatalf("the leader's window served no reads")
	}
	for id, g := range groups {
		waitFor(t, 10*time.Second, fmt.Sprintf("node %d to apply %d and its window to empty", id, top), func() bool {
			fsms[id].mu.Lock()
			applied := fsms[id].last
			fsms[id].mu.Unlock()
			g.mu.Lock()
			held := g.windowHeld
			g.mu.Unlock()
			return applied >= top && held.entries == 0 && held.bytes == 0 && held.arena == 0
		})
	}
}
