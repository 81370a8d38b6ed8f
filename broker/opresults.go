package broker

import (
	"slices"
	"sync"
)

// proposerResults keeps, for the proposers of this replica, what a state
// machine's Apply made of their entries (a controller command's outcome,
// the outcome of each consumer op), by log index, until they take them.
//
// A proposer begins before it proposes, with an index its entry will be
// above: the group's applied index then (a leader appends past its commit
// index). Apply keeps a result only while a proposer waits, and only above
// the lowest index a waiting proposer began with. So nothing a waiting
// proposer may take is dropped, however many entries one Apply covers; a
// follower keeps nothing; and since a proposer waits within its request's
// time, what is kept stays bounded. The results are this replica's
// bookkeeping, not replicated state.
//
// It is safe for concurrent use. Its mutex is its own, not the state
// machine's: a proposer must not wait for an Apply in progress to begin.
type proposerResults[R any] struct {
	mu      sync.Mutex
	byIndex map[uint64]R
	// waiting holds, sorted, the index each proposer between begin and
	// end began with: waiting[0] is the lowest.
	waiting []uint64
}

// begin registers a proposer about to propose an entry that will be above
// index (the group's applied index), and returns what end takes.
func (p *proposerResults[R]) begin(index uint64) uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	i, _ := slices.BinarySearch(p.waiting, index)
	p.waiting = slices.Insert(p.waiting, i, index)
	return index
}

// keep keeps the result of the entry at index if a waiting proposer may
// take it. Apply calls it.
func (p *proposerResults[R]) keep(index uint64, result R) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.waiting) == 0 || index <= p.waiting[0] {
		return
	}
	if p.byIndex == nil {
		p.byIndex = map[uint64]R{}
	}
	p.byIndex[index] = result
}

// take returns (and forgets) the result of the entry at index; ok is false
// when none is kept (the entry is not applied, or has no result).
func (p *proposerResults[R]) take(index uint64) (result R, ok bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	result, ok = p.byIndex[index]
	delete(p.byIndex, index)
	return result, ok
}

// end unregisters a proposer (begin's return) and forgets the results no
// proposer still waiting may take.
func (p *proposerResults[R]) end(began uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	i, found := slices.BinarySearch(p.waiting, began)
	if !found {
		return
	}
	p.waiting = slices.Delete(p.waiting, i, i+1)
	switch {
	case len(p.waiting) == 0:
		clear(p.byIndex)
	case p.waiting[0] > began:
		for index := range p.byIndex {
			if index <= p.waiting[0] {
				delete(p.byIndex, index)
			}
		}
	}
}

// forget drops every kept result (a snapshot replaced the state: the
// results of its entries are unknown here); proposers stay registered.
func (p *proposerResults[R]) forget() {
	p.mu.Lock()
	defer p.mu.Unlock()
	clear(p.byIndex)
}
