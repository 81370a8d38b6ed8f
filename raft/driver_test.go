package raft

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

func TestProposalFutureResolvesWaitersAndLateDone(t *testing.T) {
	p := &Proposal{}
	select {
	case <-p.Done():
		t.Fatal("Done closed before resolve")
	default:
	}
	var wg sync.WaitGroup
	results := make([]uint64, 8)
	for i := range results {
		wg.Go(func() {
			idx, _, err := p.Wait(context.Background())
			if err != nil {
				t.Error(err)
			}
			results[i] = idx
		})
	}
	p.index, p.term = 7, 3
	p.resolve(nil)
	p.resolve(errors.New("second resolve must be ignored"))
	wg.Wait()
	for i, idx := range results {
		if idx != 7 {
			t.Fatalf("waiter %d got index %d, want 7", i, idx)
		}
	}
	select {
	case <-p.Done():
	default:
		t.Fatal("Done not closed after resolve")
	}
	if _, _, err := p.Wait(context.Background()); err != nil {
		t.Fatalf("second resolve changed the outcome: %v", err)
	}
}

func TestProposalFutureWaitHonoursContext(t *testing.T) {
	p := &Proposal{}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, _, err := p.Wait(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Wait on a cancelled ctx: %v", err)
	}
	fp := failedProposal(ErrClosed)
	<-fp.Done()
	if _, _, err := fp.Wait(context.Background()); !errors.Is(err, ErrClosed) {
		t.Fatalf("failed proposal: %v", err)
	}
}

// A worker hands groups to the sync and apply pools without ever blocking,
// however many groups are queued (the old 1024-slot channel blocked).
func TestWorkQueuePushNeverBlocks(t *testing.T) {
	q := newWorkQueue()
	const n = 5000
	groups := make([]*Group, n)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range groups {
			groups[i] = &Group{id: uint64(i)}
			q.push(groups[i])
		}
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("push blocked with no worker popping")
	}
	if q.yield(&Group{}) != true {
		t.Fatal("yield with groups waiting must queue")
	}
	for i := range groups {
		if g := q.pop(); g != groups[i] {
			t.Fatalf("pop %d: got group %d", i, g.id)
		}
	}
	if g := q.pop(); g.id != 0 || g == groups[0] {
		t.Fatal("the yielded group must come last")
	}
	if q.yield(&Group{}) {
		t.Fatal("yield with no group waiting must leave the caller the group")
	}
	popped := make(chan *Group)
	go func() { popped <- q.pop() }()
	q.stop()
	if g := <-popped; g != nil {
		t.Fatal("pop after stop returned a group")
	}
}
