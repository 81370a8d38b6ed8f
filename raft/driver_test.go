package raft

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/raftmq/raftmq/protocol"
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

func TestBenchLogKeepsBatchesAndTruncates(t *testing.T) {
	l := newBenchLog(10, 1<<30)
	mk := func(first, n, term uint64) []protocol.Entry {
		ents := make([]protocol.Entry, n)
		for i := range ents {
			ents[i] = protocol.Entry{Index: first + uint64(i), Term: term, Data: []byte("x")}
		}
		return ents
	}
	for _, b := range [][3]uint64{{1, 4, 1}, {5, 4, 1}, {9, 4, 2}} {
		if err := l.Append(mk(b[0], b[1], b[2])); err != nil {
			t.Fatal(err)
		}
	}
	if l.FirstIndex() != 1 || l.LastIndex() != 12 {
		t.Fatalf("log [%d, %d], want [1, 12]", l.FirstIndex(), l.LastIndex())
	}
	if err := l.Append(mk(14, 1, 2)); err == nil {
		t.Fatal("append with a gap accepted")
	}
	ents, err := l.Entries(3, 11, 1<<20)
	if err != nil || len(ents) != 2 || ents[0].Index != 3 {
		t.Fatalf("entries [3, 11): %v %v (want the rest of the first batch)", ents, err)
	}
	if err := l.TruncateAfter(6); err != nil {
		t.Fatal(err)
	}
	if term, err := l.Term(6); err != nil || term != 1 || l.LastIndex() != 6 {
		t.Fatalf("after truncate: term(6)=%d %v last %d", term, err, l.LastIndex())
	}
	if err := l.Append(mk(7, 8, 3)); err != nil {
		t.Fatal(err)
	}
	// 14 entries held, keep 10: the first batch (4 entries) goes.
	if l.FirstIndex() != 5 {
		t.Fatalf("first %d after dropping, want 5", l.FirstIndex())
	}
	if term, err := l.Term(4); err != nil || term != 1 {
		t.Fatalf("prev term %d %v, want 1", term, err)
	}
	if term, _ := l.Term(14); term != 3 {
		t.Fatalf("term(14) = %d, want 3", term)
	}
}
