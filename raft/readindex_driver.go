package raft

import (
	"context"
	"slices"
	"time"
)

// readRequest is one ReadIndex call waiting in the driver.
type readRequest struct {
	id    uint64
	index uint64
	err   error
	done  chan struct{}
}

func (r *readRequest) resolve(index uint64, err error) {
	r.index, r.err = index, err
	close(r.done)
}

// ReadIndex returns an index at which this replica's state machine may be
// read linearizably (thesis §6.4): the leader's commit index confirmed by a
// heartbeat round that started after the call, and this replica's state
// machine has applied at least that far when ReadIndex returns. Concurrent
// calls share heartbeat rounds. On a follower the leader is asked for the
// index (MsgReadIndex) and the follower waits for its own apply.
//
// It fails with *NotLeaderError when no leader is known or the leader
// changes before the read is confirmed (retry), ErrClosed, or ctx's error.
func (g *Group) ReadIndex(ctx context.Context) (index uint64, err error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	r := &readRequest{done: make(chan struct{})}
	g.mu.Lock()
	if g.closed {
		err := g.closeErr
		g.mu.Unlock()
		return 0, err
	}
	g.readSeq++
	r.id = g.readSeq
	g.newReads = append(g.newReads, r)
	g.scheduleLocked()
	g.mu.Unlock()
	select {
	case <-r.done:
		return r.index, r.err
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// requestReads hands new reads to the core (worker side).
func (g *Group) requestReads(reads []*readRequest, now time.Duration) {
	if len(reads) == 0 {
		return
	}
	if g.reads == nil {
		g.reads = make(map[uint64]*readRequest)
	}
	for _, r := range reads {
		g.reads[r.id] = r
		g.core.requestRead(r.id, now)
	}
}

// resolveReads takes the core's finished reads: failures resolve now,
// confirmed reads once the state machine applied their index. In a group
// closed meanwhile they fail with its error: close already took
// readWaiters, and no apply would release a read left there.
func (g *Group) resolveReads(states []readState) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, st := range states {
		r := g.reads[st.id]
		if r == nil {
			continue
		}
		delete(g.reads, st.id)
		switch {
		case st.err != nil:
			r.resolve(0, st.err)
		case g.closed:
			r.resolve(0, g.closeErr)
		case st.index <= g.applied:
			r.resolve(st.index, nil)
		default:
			r.index = st.index
			at, _ := slices.BinarySearchFunc(g.readWaiters, st.index, func(w *readRequest, index uint64) int {
				return compareIndex(w.index, index+1) // after equal indexes: FIFO
			})
			g.readWaiters = slices.Insert(g.readWaiters, at, r)
		}
	}
}

func compareIndex(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// releaseReadsLocked resolves the reads whose index is now applied.
func (g *Group) releaseReadsLocked() {
	n := 0
	for _, r := range g.readWaiters {
		if r.index > g.applied {
			break
		}
		r.resolve(r.index, nil)
		n++
	}
	clear(g.readWaiters[:n])
	g.readWaiters = g.readWaiters[n:]
}
