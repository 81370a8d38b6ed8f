package raft

import "sync"

// workQueue is a FIFO of groups that have work for one kind of worker (run,
// sync or apply). push never blocks: a group is in a queue at most once at
// a time (its scheduled, syncing or applying flag says so), so a queue
// holds at most one slot per group on the host. pop blocks until a group
// is queued or the queue stops.
type workQueue struct {
	mu      sync.Mutex
	cond    sync.Cond
	items   []*Group
	head    int
	stopped bool
	idle    int // workers waiting in pop
}

func newWorkQueue() *workQueue {
	q := &workQueue{}
	q.cond.L = &q.mu
	return q
}

func (q *workQueue) push(g *Group) {
	q.mu.Lock()
	q.items = append(q.items, g)
	wake := q.idle > 0
	q.mu.Unlock()
	if wake {
		q.cond.Signal()
	}
}

// yield queues g behind the groups already waiting and reports true, or
// reports false when none waits (the caller goes on with g itself, saving
// a hand-off to another worker).
func (q *workQueue) yield(g *Group) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.head == len(q.items) {
		return false
	}
	q.items = append(q.items, g)
	return true
}

// pop returns the next group, or nil once the queue stopped.
func (q *workQueue) pop() *Group {
	q.mu.Lock()
	defer q.mu.Unlock()
	for q.head == len(q.items) && !q.stopped {
		q.idle++
		q.cond.Wait()
		q.idle--
	}
	if q.stopped {
		return nil
	}
	g := q.items[q.head]
	q.items[q.head] = nil
	q.head++
	if q.head == len(q.items) {
		// Empty: reuse the array from its start.
		q.items, q.head = q.items[:0], 0
	} else if q.head >= 1024 && q.head*2 >= len(q.items) {
		// Mostly consumed: move the rest down so the array stays bounded.
		n := copy(q.items, q.items[q.head:])
		clear(q.items[n:])
		q.items, q.head = q.items[:n], 0
	}
	return g
}

func (q *workQueue) stop() {
	q.mu.Lock()
	q.stopped = true
	q.mu.Unlock()
	q.cond.Broadcast()
}
