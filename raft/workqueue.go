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
	// wakes counts the pushes that woke a waiting worker (a goroutine
	// wake-up; a push to a busy pool costs none). Benchmarks report it.
	wakes uint64
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
	if wake {
		q.wakes++
	}
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

// spare reports whether no group waits and another worker is idle in pop:
// a worker holding a group may then block on its behalf (an inline log
// sync) without delaying anyone, since a group queued meanwhile finds a
// worker waiting.
func (q *workQueue) spare() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.head == len(q.items) && q.idle > 0
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

// wakeups returns how many pushes woke a waiting worker.
func (q *workQueue) wakeups() uint64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.wakes
}

func (q *workQueue) stop() {
	q.mu.Lock()
	q.stopped = true
	q.mu.Unlock()
	q.cond.Broadcast()
}
