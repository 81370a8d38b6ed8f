package raft

import (
	"fmt"
	"sort"
	"sync"

	"github.com/raftmq/raftmq/protocol"
)

// benchLog is the in-memory LogStorage of the throughput benchmarks: no
// disk, no copies. Append keeps the caller's slice instead of copying it:
// the driver hands over the core's unstable array, which nothing writes
// after (the LogStorage contract does not promise that; this log is for
// measuring Raft alone, a real store copies or serializes). The oldest
// batches are dropped once the log holds more than keepEntries entries or
// keepBytes of data (a follower that lags further fails the group
// loudly: the benchmarks have no snapshots). Sync is instant.
type benchLog struct {
	mu          sync.Mutex
	first       uint64 // index of batches[0].ents[0]
	last        uint64
	prevTerm    uint64
	batches     []benchBatch // dense: each starts where the previous ends
	bytes       uint64       // data bytes held
	keepEntries uint64
	keepBytes   uint64
}

type benchBatch struct {
	first uint64
	ents  []protocol.Entry
	bytes uint64
}

var _ LogStorage = (*benchLog)(nil)

// newBenchLog holds at least keepEntries entries, unless they hold more
// than keepBytes of data.
func newBenchLog(keepEntries int, keepBytes uint64) *benchLog {
	return &benchLog{first: 1, keepEntries: uint64(keepEntries), keepBytes: keepBytes}
}

func (l *benchLog) FirstIndex() uint64 { l.mu.Lock(); defer l.mu.Unlock(); return l.first }
func (l *benchLog) LastIndex() uint64  { l.mu.Lock(); defer l.mu.Unlock(); return l.last }

// find returns the batch holding index (first <= index <= last).
func (l *benchLog) find(index uint64) int {
	return sort.Search(len(l.batches), func(i int) bool {
		b := &l.batches[i]
		return b.first+uint64(len(b.ents)) > index
	})
}

func (l *benchLog) Term(index uint64) (uint64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if index == l.first-1 {
		return l.prevTerm, nil
	}
	if index < l.first || index > l.last {
		return 0, fmt.Errorf("benchlog: term of %d outside [%d, %d]", index, l.first-1, l.last)
	}
	b := &l.batches[l.find(index)]
	return b.ents[index-b.first].Term, nil
}

// Entries returns at most the rest of one appended batch; the core asks
// again for the rest (it handles a short read as it handles the maxBytes
// cut).
func (l *benchLog) Entries(lo, hi, maxBytes uint64) ([]protocol.Entry, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if lo < l.first || hi > l.last+1 || lo > hi {
		return nil, fmt.Errorf("benchlog: entries [%d, %d) outside the log [%d, %d]", lo, hi, l.first, l.last)
	}
	if lo == hi {
		return nil, nil
	}
	b := &l.batches[l.find(lo)]
	start := lo - b.first
	end := min(uint64(len(b.ents)), hi-b.first)
	ents := b.ents[start:end]
	return limitBytes(ents, maxBytes), nil
}

func (l *benchLog) Append(ents []protocol.Entry) error {
	if len(ents) == 0 {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for i := range ents {
		if ents[i].Index != l.last+1+uint64(i) {
			return fmt.Errorf("benchlog: append index %d, want %d", ents[i].Index, l.last+1+uint64(i))
		}
	}
	size := dataSize(ents)
	l.batches = append(l.batches, benchBatch{first: l.last + 1, ents: ents[:len(ents):len(ents)], bytes: size})
	l.bytes += size
	l.last += uint64(len(ents))
	drop := 0
	for drop < len(l.batches)-1 {
		b := &l.batches[drop]
		held := l.last + 1 - b.first
		if held-uint64(len(b.ents)) < l.keepEntries && l.bytes <= l.keepBytes {
			break
		}
		l.bytes -= b.bytes
		l.prevTerm = b.ents[len(b.ents)-1].Term
		drop++
	}
	if drop > 0 {
		l.first = l.batches[drop].first
		n := copy(l.batches, l.batches[drop:])
		clear(l.batches[n:])
		l.batches = l.batches[:n]
	}
	return nil
}

func (l *benchLog) TruncateAfter(index uint64) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if index+1 < l.first {
		return fmt.Errorf("benchlog: truncate below first index")
	}
	if index >= l.last {
		return nil
	}
	i := l.find(index + 1)
	for j := i; j < len(l.batches); j++ {
		l.bytes -= l.batches[j].bytes
	}
	b := &l.batches[i]
	if k := index + 1 - b.first; k > 0 {
		// Keep the batch's head; capacity-limited, and nothing is ever
		// appended into a kept batch anyway.
		b.ents = b.ents[:k:k]
		b.bytes = dataSize(b.ents)
		l.bytes += b.bytes
		i++
	}
	clear(l.batches[i:])
	l.batches = l.batches[:i]
	l.last = index
	return nil
}

func (l *benchLog) Sync() (uint64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.last, nil
}
