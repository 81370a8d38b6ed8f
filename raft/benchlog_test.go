package raft

import (
	"fmt"
	"sync"

	"github.com/raftmq/raftmq/protocol"
)

// benchLog is the in-memory LogStorage of the throughput benchmarks: no
// disk and little garbage. Entries live in fixed-size chunks; the oldest
// chunks are dropped once the log holds more than keepEntries entries or
// keepBytes of data (a follower that lags further fails the group
// loudly: the benchmarks have no snapshots). Sync is instant.
type benchLog struct {
	mu       sync.Mutex
	first    uint64 // index of chunks[0][0]
	last     uint64
	prevTerm uint64
	chunks   [][]protocol.Entry
	sizes    []uint64 // data bytes per chunk
	bytes    uint64   // data bytes held
	keep     int      // chunks held at most
	maxBytes uint64
}

const benchChunk = 1 << 14

var _ LogStorage = (*benchLog)(nil)

// newBenchLog holds at least keepEntries entries, unless they hold more
// than keepBytes of data.
func newBenchLog(keepEntries int, keepBytes uint64) *benchLog {
	return &benchLog{first: 1, keep: keepEntries/benchChunk + 2, maxBytes: keepBytes}
}

func (l *benchLog) FirstIndex() uint64 { l.mu.Lock(); defer l.mu.Unlock(); return l.first }
func (l *benchLog) LastIndex() uint64  { l.mu.Lock(); defer l.mu.Unlock(); return l.last }

func (l *benchLog) at(index uint64) *protocol.Entry {
	off := index - l.first
	return &l.chunks[off/benchChunk][off%benchChunk]
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
	return l.at(index).Term, nil
}

// Entries returns at most the rest of one chunk; the core asks again for
// the rest (it handles a short read as it handles the maxBytes cut).
func (l *benchLog) Entries(lo, hi, maxBytes uint64) ([]protocol.Entry, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if lo < l.first || hi > l.last+1 || lo > hi {
		return nil, fmt.Errorf("benchlog: entries [%d, %d) outside the log [%d, %d]", lo, hi, l.first, l.last)
	}
	if lo == hi {
		return nil, nil
	}
	off := lo - l.first
	c := l.chunks[off/benchChunk]
	start := int(off % benchChunk)
	end := min(len(c), start+int(hi-lo))
	ents := c[start:end]
	var size uint64
	for i := range ents {
		size += uint64(len(ents[i].Data))
		if size > maxBytes && i > 0 {
			ents = ents[:i]
			break
		}
	}
	return ents[:len(ents):len(ents)], nil
}

func (l *benchLog) Append(ents []protocol.Entry) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i := range ents {
		if ents[i].Index != l.last+1+uint64(i) {
			return fmt.Errorf("benchlog: append index %d, want %d", ents[i].Index, l.last+1+uint64(i))
		}
	}
	for len(ents) > 0 {
		n := len(l.chunks)
		if n == 0 || len(l.chunks[n-1]) == benchChunk {
			l.chunks = append(l.chunks, make([]protocol.Entry, 0, benchChunk))
			n++
		}
		if len(l.sizes) < n {
			l.sizes = append(l.sizes, 0)
		}
		c := l.chunks[n-1]
		k := min(len(ents), benchChunk-len(c))
		l.chunks[n-1] = append(c, ents[:k]...)
		size := dataSize(ents[:k])
		l.sizes[n-1] += size
		l.bytes += size
		ents = ents[k:]
		l.last += uint64(k)
	}
	drop := 0
	for len(l.chunks)-drop > l.keep || (len(l.chunks)-drop > 2 && l.bytes > l.maxBytes) {
		l.bytes -= l.sizes[drop]
		drop++
	}
	if drop > 0 {
		l.first += uint64(drop * benchChunk)
		l.prevTerm = l.chunks[drop-1][benchChunk-1].Term
		clear(l.chunks[:drop])
		l.chunks = append(l.chunks[:0], l.chunks[drop:]...)
		l.sizes = append(l.sizes[:0], l.sizes[drop:]...)
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
	off := index + 1 - l.first // entries kept
	n := int(off / benchChunk)
	k := int(off % benchChunk)
	for i := n + 1; i < len(l.chunks); i++ {
		l.bytes -= l.sizes[i]
	}
	clear(l.chunks[n+1:])
	l.chunks = l.chunks[:n+1]
	l.sizes = l.sizes[:n+1]
	// A fresh array for the cut chunk: entries returned earlier stay valid.
	fresh := make([]protocol.Entry, k, benchChunk)
	copy(fresh, l.chunks[n][:k])
	l.chunks[n] = fresh
	cut := l.sizes[n] - dataSize(fresh)
	l.sizes[n] -= cut
	l.bytes -= cut
	l.last = index
	return nil
}

func (l *benchLog) Sync() (uint64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.last, nil
}
