package raft

import (
	"context"
	"errors"
	"sync"
	"testing"
)

// Done, Wait and resolve race from many goroutines on many proposals: every
// waiter sees the one outcome the first resolve published (index, term and
// error), later resolves change nothing, and every Done channel is closed.
func TestProposalResolveRacesDoneAndWait(t *testing.T) {
	const proposals, waiters = 2000, 3
	errFirst := errors.New("first")
	for i := range proposals {
		p := &Proposal{}
		var wg sync.WaitGroup
		for range waiters {
			wg.Go(func() {
				<-p.Done()
				idx, term, err := p.Wait(context.Background())
				if idx != uint64(i) || term != 9 || (i%2 == 0) != (err == nil) || (i%2 == 1 && err != errFirst) {
					t.Errorf("proposal %d: got (%d, %d, %v)", i, idx, term, err)
				}
			})
		}
		// Two resolvers race; only the first to start may publish. index
		// and term are written before either starts, as the driver does.
		p.index, p.term = uint64(i), 9
		var first error
		if i%2 == 1 {
			first = errFirst
		}
		p.resolve(first)
		var late sync.WaitGroup
		late.Go(func() { p.resolve(errors.New("late")) })
		late.Go(func() { _ = p.Done() })
		late.Wait()
		wg.Wait()
		if t.Failed() {
			return
		}
		if p.err != first {
			t.Fatalf("proposal %d: a later resolve changed err to %v", i, p.err)
		}
	}
}

// Resolvers racing each other on a pending proposal: exactly one outcome is
// published and every waiter, before or after, sees that same one.
func TestProposalConcurrentResolversPublishOne(t *testing.T) {
	for i := range 500 {
		p := &Proposal{}
		errs := []error{errors.New("a"), errors.New("b"), nil}
		var wg sync.WaitGroup
		seen := make([]error, 4)
		for w := range seen {
			wg.Go(func() { _, _, seen[w] = p.Wait(context.Background()) })
		}
		for _, err := range errs {
			wg.Go(func() { p.resolve(err) })
		}
		wg.Wait()
		_, _, got := p.Wait(context.Background())
		for w, err := range seen {
			if err != got {
				t.Fatalf("round %d: waiter %d saw %v, the proposal holds %v", i, w, err, got)
			}
		}
	}
}
