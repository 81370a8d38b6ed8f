package raft

import (
	"container/heap"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/raftmq/raftmq/protocol"
)

// ErrClosed is returned by operations on a removed group or a closed host.
var ErrClosed = errors.New("raft: closed")

// ErrStopped wraps the error that stopped a group on its own (a storage or
// state machine error: see Group.Stopped). Proposals pending then fail
// with it; they may still be committed by the group's other replicas.
var ErrStopped = errors.New("raft: group stopped")

// Host runs the cores of many groups on one node. Groups cost no goroutine
// and no timer of their own: a fixed pool of workers runs whichever group
// has work, one scheduler goroutine keeps every group's next deadline in a
// heap, and separate pools sync logs and apply committed entries.
//
// Work moves between the pools a group at a time, never an entry at a
// time: Propose queues in the group's inbox (inbox.go, a lock of its own)
// and Step under the group's lock, and the group is scheduled once per
// batch (by the proposer that found the inbox empty, by a Step that found
// the group unscheduled); a run worker takes everything queued (all proposals
// become one append and one AppendEntries per follower), and hands the
// group to a sync worker (which syncs whatever was appended by then, again
// and again while more arrives, yielding to other groups between rounds)
// and to an apply worker (which applies every committed batch queued).
// Handing over never blocks a worker: the queues are unbounded, and hold
// at most one slot per group each.
//
// A hand-off wakes a goroutine, which costs CPU and latency, so the
// driver skips those that buy no parallelism: a run worker that appended
// syncs the log itself, after sending, when nothing more is queued for the
// group, no other group waits and another run worker is idle (the group
// could only wait for the sync anyway; what arrives meanwhile is batched
// into the next round; with more queued already, a sync worker syncs while
// the run worker appends and sends it); a sync
// worker runs the core on its durable notice itself when no worker holds
// the group; and a worker goes on with a group that has more work unless
// other groups wait.
type Host struct {
	cfg   HostConfig
	start time.Time
	seeds *rand.Rand

	mu     sync.RWMutex
	groups map[uint64]*Group
	closed bool

	// Groups with work for the run, sync and apply workers. Pushing never
	// blocks, so a worker hands a group on without ever waiting for
	// another pool.
	runq   *workQueue
	syncq  *workQueue
	applyq *workQueue
	done   chan struct{}

	timerMu   sync.Mutex
	timerHeap deadlineHeap
	// timerAt is the deadline timerLoop sleeps until (guarded by timerMu);
	// it is woken only for an earlier one.
	timerAt   time.Duration
	timerWake chan struct{}
	// timerWakes counts wake-ups of timerLoop for an earlier deadline.
	timerWakes uint64

	wg sync.WaitGroup
}

// NewHost starts a host's goroutines.
func NewHost(cfg HostConfig) (*Host, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	seed := cfg.Seed
	if seed == 0 {
		seed = rand.Uint64()
	}
	h := &Host{
		cfg:       cfg,
		start:     time.Now(),
		seeds:     rand.New(rand.NewPCG(seed, cfg.NodeID)),
		groups:    make(map[uint64]*Group),
		runq:      newWorkQueue(),
		syncq:     newWorkQueue(),
		applyq:    newWorkQueue(),
		timerWake: make(chan struct{}, 1),
		done:      make(chan struct{}),
	}
	for range cfg.Workers {
		h.wg.Go(h.runWorker)
	}
	for range cfg.SyncWorkers {
		h.wg.Go(h.syncWorker)
	}
	for range cfg.ApplyWorkers {
		h.wg.Go(h.applyWorker)
	}
	h.wg.Go(h.timerLoop)
	return h, nil
}

func (h *Host) now() time.Duration { return time.Since(h.start) }

// Step hands an inbound message to its group. Messages for unknown groups
// are dropped. Safe from any goroutine.
func (h *Host) Step(m protocol.RaftMessage) {
	h.mu.RLock()
	g := h.groups[m.GroupID]
	h.mu.RUnlock()
	if g == nil || m.To != h.cfg.NodeID {
		return
	}
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return
	}
	if isSnapshotMessage(m.Type) {
		g.stepSnapshotLocked(&m)
		g.mu.Unlock()
		return
	}
	g.inbox = append(g.inbox, m)
	g.scheduleLocked()
	g.mu.Unlock()
}

// AddGroup starts a replica of a group on this host.
func (h *Host) AddGroup(cfg GroupConfig) (*Group, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	hs, err := cfg.Stable.Load()
	if err != nil {
		return nil, fmt.Errorf("raft: group %d: load hard state: %w", cfg.GroupID, err)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, ErrClosed
	}
	if h.groups[cfg.GroupID] != nil {
		return nil, fmt.Errorf("raft: group %d already on this host", cfg.GroupID)
	}
	g := newGroup(h, cfg, hs, h.seeds.Uint64())
	h.groups[cfg.GroupID] = g
	h.setDeadline(g, g.core.deadline())
	return g, nil
}

// RemoveGroup stops a group's replica; pending proposals, reads and
// requests fail with ErrClosed. It returns once no worker of the host is
// inside the group any more: a worker that was inside finishes the
// storage or state machine call it is in (an Apply, a Sync, an Append)
// and makes no further one, and snapshot transfers end; from then on the
// driver calls none of the group's LogStorage, StableStorage,
// StateMachine or snapshot store. The storage stays open; its owner
// closes it (and may delete it) after RemoveGroup returns.
//
// Because it waits for the group's workers, RemoveGroup must not be called
// from a callback the driver runs on them (StateMachine.Apply, Restore,
// LogStorage and StableStorage methods, HostConfig.Send): it would wait
// for itself, or for a worker of another group waiting for it. Hand the
// removal to another goroutine (the broker removes replicas from its run
// loop).
func (h *Host) RemoveGroup(groupID uint64) error {
	h.mu.Lock()
	g := h.groups[groupID]
	delete(h.groups, groupID)
	h.mu.Unlock()
	if g == nil {
		return fmt.Errorf("raft: group %d not on this host", groupID)
	}
	g.close(ErrClosed)
	g.awaitWorkers()
	h.clearDeadline(g)
	return nil
}

// Close removes every group and stops the host's goroutines, and returns
// once they all stopped (so, as after RemoveGroup, the driver calls no
// group's storage any more). Like RemoveGroup, it must not be called from
// a callback the driver runs.
func (h *Host) Close() error {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil
	}
	h.closed = true
	groups := h.groups
	h.groups = map[uint64]*Group{}
	h.mu.Unlock()
	for _, g := range groups {
		g.close(ErrClosed)
	}
	h.runq.stop()
	h.syncq.stop()
	h.applyq.stop()
	close(h.done)
	h.wg.Wait()
	// A group that was queued for a run worker when the queue stopped
	// still owns its pending proposals and requests (close leaves them to
	// the worker it expected): no worker runs any more, so fail them here.
	for _, g := range groups {
		g.mu.Lock()
		err := g.closeErr
		g.mu.Unlock()
		g.failOwned(err)
	}
	return nil
}

func (h *Host) enqueue(g *Group) { h.runq.push(g) }

func (h *Host) runWorker() {
	for g := h.runq.pop(); g != nil; g = h.runq.pop() {
		g.enter()
		g.process()
		g.leave()
	}
}

func (h *Host) syncWorker() {
	for g := h.syncq.pop(); g != nil; g = h.syncq.pop() {
		g.enter()
		g.syncLoop()
		g.leave()
	}
}

func (h *Host) applyWorker() {
	for g := h.applyq.pop(); g != nil; g = h.applyq.pop() {
		g.enter()
		g.applyLoop()
		g.leave()
	}
}

// submitSync and submitApply hand a group to the sync or apply workers;
// they never block (see workQueue), so a run worker never waits on them.
func (h *Host) submitSync(g *Group)  { h.syncq.push(g) }
func (h *Host) submitApply(g *Group) { h.applyq.push(g) }

// setDeadline records when g must be ticked next.
func (h *Host) setDeadline(g *Group, d time.Duration) {
	h.timerMu.Lock()
	defer h.timerMu.Unlock()
	if g.heapIndex >= 0 {
		if g.deadline == d {
			return
		}
		g.deadline = d
		heap.Fix(&h.timerHeap, g.heapIndex)
	} else {
		g.deadline = d
		heap.Push(&h.timerHeap, g)
	}
	if g.heapIndex == 0 && d < h.timerAt {
		// Earlier than the scheduler sleeps: wake it. A deadline that
		// moved later (the common case: a heartbeat or election timer
		// pushed back) waits for the sleep already set, which then
		// finds nothing due and sleeps again.
		h.timerAt = d
		select {
		case h.timerWake <- struct{}{}:
			h.timerWakes++
		default:
		}
	}
}

func (h *Host) clearDeadline(g *Group) {
	h.timerMu.Lock()
	defer h.timerMu.Unlock()
	if g.heapIndex >= 0 {
		heap.Remove(&h.timerHeap, g.heapIndex)
	}
}

// timerLoop is the single scheduler goroutine: it wakes each group at the
// deadline its core asked for.
func (h *Host) timerLoop() {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		h.timerMu.Lock()
		now := h.now()
		var due []*Group
		for len(h.timerHeap) > 0 && h.timerHeap[0].deadline <= now {
			due = append(due, heap.Pop(&h.timerHeap).(*Group))
		}
		wait := time.Hour
		if len(h.timerHeap) > 0 {
			wait = h.timerHeap[0].deadline - now
		}
		h.timerAt = now + wait
		h.timerMu.Unlock()
		for _, g := range due {
			g.mu.Lock()
			g.tickDue = true
			g.scheduleLocked()
			g.mu.Unlock()
		}
		timer.Reset(wait)
		select {
		case <-timer.C:
		case <-h.timerWake:
		case <-h.done:
			return
		}
	}
}

// hostWakeups counts the goroutine wake-ups the host's hand-offs caused:
// a group pushed to a pool with a worker waiting, per pool, and the
// scheduler woken for an earlier deadline. Benchmarks report them per
// committed batch.
type hostWakeups struct {
	run, sync, apply, timer uint64
}

func (w hostWakeups) total() uint64 { return w.run + w.sync + w.apply + w.timer }

func (w hostWakeups) sub(o hostWakeups) hostWakeups {
	return hostWakeups{run: w.run - o.run, sync: w.sync - o.sync, apply: w.apply - o.apply, timer: w.timer - o.timer}
}

func (w hostWakeups) add(o hostWakeups) hostWakeups {
	return hostWakeups{run: w.run + o.run, sync: w.sync + o.sync, apply: w.apply + o.apply, timer: w.timer + o.timer}
}

func (h *Host) wakeups() hostWakeups {
	h.timerMu.Lock()
	timer := h.timerWakes
	h.timerMu.Unlock()
	return hostWakeups{run: h.runq.wakeups(), sync: h.syncq.wakeups(), apply: h.applyq.wakeups(), timer: timer}
}

type deadlineHeap []*Group

func (d deadlineHeap) Len() int           { return len(d) }
func (d deadlineHeap) Less(i, j int) bool { return d[i].deadline < d[j].deadline }
func (d deadlineHeap) Swap(i, j int) {
	d[i], d[j] = d[j], d[i]
	d[i].heapIndex = i
	d[j].heapIndex = j
}
func (d *deadlineHeap) Push(x any) {
	g := x.(*Group)
	g.heapIndex = len(*d)
	*d = append(*d, g)
}
func (d *deadlineHeap) Pop() any {
	old := *d
	g := old[len(old)-1]
	old[len(old)-1] = nil
	*d = old[:len(old)-1]
	g.heapIndex = -1
	return g
}
