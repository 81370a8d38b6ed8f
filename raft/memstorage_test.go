package raft

import (
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/raftmq/raftmq/protocol"
)

// memLog is an in-memory LogStorage that models durability: Sync moves the
// durable mark; crashClone keeps only what was durable. A truncation is
// durable at once (the contract allows syncing it immediately).
// syncLies makes Sync report everything durable without making it so: the
// faulty store the simulation must catch.
type memLog struct {
	mu       sync.Mutex
	first    uint64 // index of ents[0]
	prevTerm uint64
	ents     []protocol.Entry
	durable  uint64
	syncLies bool
	failSync error
	syncs    int
	// window, when set, bounds memory: older entries are dropped (the
	// benchmarks' followers never lag that far).
	window int
}

var _ LogStorage = (*memLog)(nil)

func newMemLog() *memLog { return &memLog{first: 1} }

func (l *memLog) FirstIndex() uint64 { l.mu.Lock(); defer l.mu.Unlock(); return l.first }

func (l *memLog) LastIndex() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.first + uint64(len(l.ents)) - 1
}

func (l *memLog) Term(index uint64) (uint64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if index == l.first-1 {
		return l.prevTerm, nil
	}
	if index < l.first || index >= l.first+uint64(len(l.ents)) {
		return 0, fmt.Errorf("memlog: term of %d outside [%d, %d]", index, l.first-1, l.first+uint64(len(l.ents))-1)
	}
	return l.ents[index-l.first].Term, nil
}

func (l *memLog) Entries(lo, hi, maxBytes uint64) ([]protocol.Entry, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if lo < l.first || hi > l.first+uint64(len(l.ents)) || lo > hi {
		return nil, fmt.Errorf("memlog: entries [%d, %d) outside the log [%d, %d]", lo, hi, l.first, l.first+uint64(len(l.ents))-1)
	}
	ents := l.ents[lo-l.first : hi-l.first]
	return limitBytes(ents, maxBytes), nil
}

func (l *memLog) Append(ents []protocol.Entry) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	next := l.first + uint64(len(l.ents))
	for i := range ents {
		if ents[i].Index != next+uint64(i) {
			return fmt.Errorf("memlog: append index %d, want %d", ents[i].Index, next+uint64(i))
		}
	}
	if l.window > 0 && l.ents == nil {
		l.ents = make([]protocol.Entry, 0, 2*l.window+1<<16)
	}
	l.ents = append(l.ents, ents...)
	if l.window > 0 && len(l.ents) > 2*l.window {
		drop := len(l.ents) - l.window
		l.prevTerm = l.ents[drop-1].Term
		l.first += uint64(drop)
		l.durable = max(l.durable, l.first-1)
		kept := make([]protocol.Entry, l.window, 2*l.window+1<<16)
		copy(kept, l.ents[drop:])
		l.ents = kept
	}
	return nil
}

func (l *memLog) TruncateAfter(index uint64) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if index+1 < l.first {
		return errors.New("memlog: truncate below first index")
	}
	if n := index + 1 - l.first; n < uint64(len(l.ents)) {
		// A fresh array: entries returned earlier stay valid.
		l.ents = slices.Clone(l.ents[:n])
	}
	l.durable = min(l.durable, index)
	return nil
}

func (l *memLog) Sync() (uint64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.failSync != nil {
		return 0, l.failSync
	}
	l.syncs++
	last := l.first + uint64(len(l.ents)) - 1
	if !l.syncLies {
		l.durable = last
	}
	return last, nil
}

// crashClone returns the log a restarted node finds: the durable prefix.
func (l *memLog) crashClone() *memLog {
	l.mu.Lock()
	defer l.mu.Unlock()
	keep := l.durable + 1 - l.first
	return &memLog{first: l.first, prevTerm: l.prevTerm, ents: slices.Clone(l.ents[:keep]), durable: l.durable, syncLies: l.syncLies}
}

// memStable is an in-memory StableStorage; forgetVote makes a restarted
// node lose its vote (the faulty store the simulation must catch).
type memStable struct {
	mu         sync.Mutex
	hs         HardState
	forgetVote bool
	saves      int
}

func (s *memStable) Load() (HardState, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.hs, nil }

func (s *memStable) Save(hs HardState) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hs = hs
	s.saves++
	return nil
}

func (s *memStable) crashClone() *memStable {
	s.mu.Lock()
	defer s.mu.Unlock()
	hs := s.hs
	if s.forgetVote {
		hs.Vote = 0
	}
	return &memStable{hs: hs, forgetVote: s.forgetVote}
}

// memStateMachine records applied entries.
type memStateMachine struct {
	mu      sync.Mutex
	applied []protocol.Entry
	count   int
	last    uint64
	keep    bool
}

func (m *memStateMachine) Apply(ents []protocol.Entry) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for i := range ents {
		if ents[i].Index != m.last+1 {
			return fmt.Errorf("state machine: applied %d after %d", ents[i].Index, m.last)
		}
		m.last = ents[i].Index
	}
	m.count += len(ents)
	if m.keep {
		m.applied = append(m.applied, ents...)
	}
	return nil
}

// limitBytes cuts ents to at most maxBytes of Data, but keeps at least one
// entry, as LogStorage.Entries does; the result cannot be appended to in
// place.
func limitBytes(ents []protocol.Entry, maxBytes uint64) []protocol.Entry {
	var size uint64
	for i := range ents {
		size += uint64(len(ents[i].Data))
		if size > maxBytes && i > 0 {
			ents = ents[:i]
			break
		}
	}
	return ents[:len(ents):len(ents)]
}
