package raft

import (
	"sync"
	"sync/atomic"

	"github.com/raftmq/raftmq/protocol"
)

// proposalInbox is where Propose leaves proposals for the worker running
// the group, without the group's lock: a lock-free stack (Treiber) of
// Proposals linked through Proposal.next, pushed by any number of
// proposers with one compare-and-swap each and taken whole by the worker
// with one swap. Pushes are linearizable, so the taken list reversed is
// the order the pushes happened in (a proposer's proposals keep their
// order). A node is pushed once and never popped alone, so a stack that
// is only ever emptied whole has no ABA problem.
//
// Closing swaps in a sentinel: a push that finds it fails (the proposer
// resolves its proposal itself), and close resolves whatever it took. So a
// proposal pushed is taken exactly once, by the worker or by close, never
// left behind.
type proposalInbox struct {
	head atomic.Pointer[Proposal]
}

// inboxClosed is the head of a closed inbox.
var inboxClosed = &Proposal{}

// push adds p (its next is overwritten). It reports whether the inbox was
// empty before (the caller then makes sure the group is scheduled: one
// proposer per batch does, not every one) and false in ok when the inbox
// is closed.
func (q *proposalInbox) push(p *Proposal) (wasEmpty, ok bool) {
	for {
		old := q.head.Load()
		if old == inboxClosed {
			return false, false
		}
		p.next = old
		if q.head.CompareAndSwap(old, p) {
			return old == nil, true
		}
	}
}

// take empties the inbox and returns its proposals, newest first (nil when
// empty or closed).
func (q *proposalInbox) take() *Proposal {
	for {
		old := q.head.Load()
		if old == nil || old == inboxClosed {
			return nil
		}
		if q.head.CompareAndSwap(old, nil) {
			return old
		}
	}
}

// close closes the inbox and returns the proposals it held, newest first.
func (q *proposalInbox) close() *Proposal {
	old := q.head.Swap(inboxClosed)
	if old == inboxClosed {
		return nil
	}
	return old
}

// waiting reports whether proposals wait in an open inbox.
func (q *proposalInbox) waiting() bool {
	head := q.head.Load()
	return head != nil && head != inboxClosed
}

// appendTaken appends the proposals of a list take or close returned to
// props in the order they were pushed, and their entries to ents
// (ents[i] is that of props[i]), and unlinks them: once taken, a Proposal
// keeps neither its data nor other proposals alive.
func appendTaken(props []*Proposal, ents []protocol.Entry, newestFirst *Proposal) ([]*Proposal, []protocol.Entry) {
	start := len(props)
	for p := newestFirst; p != nil; {
		next := p.next
		p.next = nil
		props = append(props, p)
		p = next
	}
	// Oldest first.
	for i, j := start, len(props)-1; i < j; i, j = i+1, j-1 {
		props[i], props[j] = props[j], props[i]
	}
	for _, p := range props[start:] {
		ents = append(ents, protocol.Entry{Type: p.typ, Data: p.data})
		p.data = nil
	}
	return props, ents
}

// proposalSlabs holds partly used slabs of Proposals (*proposalSlabRest),
// per P, so that proposers take Proposals from slabs without sharing a
// lock: one allocation per proposalSlab proposals.
var proposalSlabs sync.Pool

type proposalSlabRest struct{ free []Proposal }

// newProposal returns a zero Proposal from a slab.
func newProposal() *Proposal {
	rest, _ := proposalSlabs.Get().(*proposalSlabRest)
	if rest == nil {
		rest = &proposalSlabRest{}
	}
	if len(rest.free) == 0 {
		rest.free = make([]Proposal, proposalSlab)
	}
	p := &rest.free[0]
	rest.free = rest.free[1:]
	proposalSlabs.Put(rest)
	return p
}
