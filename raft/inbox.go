package raft

import (
	"sync"

	"github.com/raftmq/raftmq/protocol"
)

// proposalInbox is where Propose leaves proposals for the worker running
// the group. It has a lock of its own, not the group's: its critical
// section is a slab take and two appends, and only proposers and the
// worker's swap take it (the group's lock is also taken by Step, the
// timer, the sync and apply goroutines, and the worker's longer
// sections). The proposals and their entries wait in two arrays, the
// entries contiguous as the core takes them, and the worker swaps both out
// at once for the spare pair it used last time.
//
// A lock-free stack (one compare-and-swap per push) was tried first and
// measured no better: the worker then walks a linked list of Proposals
// that other cores just wrote, one dependent cache miss after another, on
// the one goroutine every entry of the group passes through.
//
// Closing fails later pushes (the proposer resolves its proposal itself)
// and hands back whatever waited, so a proposal pushed is taken exactly
// once, by the worker or by close, never left behind.
type proposalInbox struct {
	mu     sync.Mutex
	closed bool
	// props[i] is the future of ents[i]; nil for the entries of a batch
	// but its last (pushBatch).
	props []*Proposal
	// ents[i] is the entry of props[i] (Type and Data set).
	ents []protocol.Entry
	// slab holds unused Proposals, allocated proposalSlab at a time.
	slab []Proposal
}

// push queues an entry and returns its proposal. It reports whether the
// inbox was empty before (the caller then makes sure the group is
// scheduled: one proposer per batch does, not every one), and nil when
// the inbox is closed.
func (q *proposalInbox) push(typ protocol.EntryType, data []byte, mode AckMode) (p *Proposal, wasEmpty bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return nil, false
	}
	p = q.newProposal(mode)
	wasEmpty = len(q.props) == 0
	q.props = append(q.props, p)
	q.ents = append(q.ents, protocol.Entry{Type: typ, Data: data})
	return p, wasEmpty
}

// newProposal takes a Proposal from the slab, allocating proposalSlab of
// them when it is empty. q.mu must be held.
func (q *proposalInbox) newProposal(mode AckMode) *Proposal {
	if len(q.slab) == 0 {
		q.slab = make([]Proposal, proposalSlab)
	}
	p := &q.slab[0]
	q.slab = q.slab[1:]
	p.mode = mode
	return p
}

// pushBatch queues entries of one type, consecutive, under one future:
// props holds nil for each entry but the last, which holds the future
// (see Group.ProposeBatch). Like push otherwise; datas is not empty.
func (q *proposalInbox) pushBatch(typ protocol.EntryType, datas [][]byte, mode AckMode) (p *Proposal, wasEmpty bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return nil, false
	}
	p = q.newProposal(mode)
	wasEmpty = len(q.props) == 0
	for range len(datas) - 1 {
		q.props = append(q.props, nil)
	}
	q.props = append(q.props, p)
	for _, data := range datas {
		q.ents = append(q.ents, protocol.Entry{Type: typ, Data: data})
	}
	return p, wasEmpty
}

// take returns everything queued, in push order, and keeps the spare
// arrays (empty, from the previous take) for the next pushes.
func (q *proposalInbox) take(spareProps []*Proposal, spareEnts []protocol.Entry) ([]*Proposal, []protocol.Entry) {
	q.mu.Lock()
	defer q.mu.Unlock()
	props, ents := q.props, q.ents
	q.props, q.ents = spareProps[:0], spareEnts[:0]
	return props, ents
}

// close closes the inbox and returns the proposals that waited (without
// the nil places of a batch's entries).
func (q *proposalInbox) close() []*Proposal {
	q.mu.Lock()
	defer q.mu.Unlock()
	var props []*Proposal
	for _, p := range q.props {
		if p != nil {
			props = append(props, p)
		}
	}
	q.closed = true
	q.props, q.ents, q.slab = nil, nil, nil
	return props
}

// waiting reports whether proposals wait.
func (q *proposalInbox) waiting() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.props) > 0
}
