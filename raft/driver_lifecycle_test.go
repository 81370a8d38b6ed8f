package raft

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/raftmq/raftmq/protocol"
)

// Tests of what the driver does when a group closes (RemoveGroup) while a
// worker is inside it: everything pending still resolves, and no storage
// or state machine call follows RemoveGroup's return.

// callGate blocks the goroutine that hits it while armed (once per arm),
// reporting on entered, until released.
type callGate struct {
	armed   atomic.Int32
	entered chan struct{}
	release chan struct{}
}

func newCallGate() *callGate {
	return &callGate{entered: make(chan struct{}, 16), release: make(chan struct{}, 16)}
}

func (g *callGate) hit() {
	if g.armed.Load() == 0 {
		return
	}
	if g.armed.Add(-1) < 0 {
		g.armed.Add(1)
		return
	}
	g.entered <- struct{}{}
	<-g.release
}

func (g *callGate) wait(t *testing.T, what string) {
	t.Helper()
	select {
	case <-g.entered:
	case <-time.After(10 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
	}
}

// lifecycleLog is a memLog with gates on Append and Sync that counts the calls
// made after removed is set.
type lifecycleLog struct {
	*memLog
	appendGate, syncGate *callGate
	removed              atomic.Bool
	callsAfterRemove     atomic.Int32
	lastAfterRemove      atomic.Value
	appendsDone          atomic.Int32 // Append calls that returned
}

func (l *lifecycleLog) after(call string) {
	if l.removed.Load() {
		l.callsAfterRemove.Add(1)
		l.lastAfterRemove.Store(call)
	}
}

func (l *lifecycleLog) Append(ents []protocol.Entry) error {
	l.after("Append")
	l.appendGate.hit()
	defer l.appendsDone.Add(1)
	return l.memLog.Append(ents)
}

func (l *lifecycleLog) Sync() (uint64, error) {
	l.after("Sync")
	l.syncGate.hit()
	return l.memLog.Sync()
}

// lifecycleFSM is a memStateMachine with a gate on Apply that counts the calls
// made after removed is set.
type lifecycleFSM struct {
	memStateMachine
	gate              *callGate
	removed           atomic.Bool
	appliesAfterRemov atomic.Int32
	appliesDone       atomic.Int32 // Apply calls that returned
}

func (f *lifecycleFSM) Apply(ents []protocol.Entry) error {
	if f.removed.Load() {
		f.appliesAfterRemov.Add(1)
	}
	f.gate.hit()
	defer f.appliesDone.Add(1)
	return f.memStateMachine.Apply(ents)
}

// newLifecycleHost starts a host for these tests.
func newLifecycleHost(t *testing.T, workers int) *Host {
	t.Helper()
	h, err := NewHost(HostConfig{NodeID: 1, Send: func([]protocol.RaftMessage) {}, Seed: 1, Workers: workers, ApplyWorkers: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Close() })
	return h
}

// addGatedGroup adds a one-voter group with gated storage to h and waits
// until it leads and has applied its no-op.
func addGatedGroup(t *testing.T, h *Host, id uint64) (*Group, *lifecycleLog, *lifecycleFSM) {
	t.Helper()
	log := &lifecycleLog{memLog: newMemLog(), appendGate: newCallGate(), syncGate: newCallGate()}
	fsm := &lifecycleFSM{gate: newCallGate()}
	cfg := DefaultGroupConfig()
	cfg.GroupID = id
	cfg.Voters = []uint64{1}
	cfg.ElectionTimeout = 250 * time.Millisecond
	cfg.HeartbeatInterval = 25 * time.Millisecond
	cfg.Log, cfg.Stable, cfg.StateMachine = log, &memStable{}, fsm
	g, err := h.AddGroup(cfg)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "leader", func() bool {
		st := g.Status()
		return st.Role == RoleLeader && st.AppliedIndex >= 1
	})
	return g, log, fsm
}

// removeGroupAsync calls RemoveGroup on a goroutine (it waits for the
// group's workers, which the caller holds in a gate) and then, if not nil,
// returned; it waits until the group closed and returns a channel closed
// once RemoveGroup returned.
func removeGroupAsync(t *testing.T, h *Host, g *Group, returned func()) <-chan struct{} {
	t.Helper()
	done := make(chan struct{})
	go func() {
		if err := h.RemoveGroup(g.ID()); err != nil {
			t.Error(err)
		}
		if returned != nil {
			returned()
		}
		close(done)
	}()
	select {
	case <-g.Stopped():
	case <-time.After(10 * time.Second):
		t.Fatal("RemoveGroup did not close the group")
	}
	return done
}

func waitClosed(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
	}
}

// An AckApplied proposal that commits in the round a worker is running
// when the group closes resolves (with ErrClosed): close already took the
// apply waiters and no apply loop runs for a closed group, so the round
// must not queue it for one (resolveCommitted).
func TestAckAppliedProposalResolvesWhenTheGroupClosesInTheRoundThatCommitsIt(t *testing.T) {
	// One run worker: it never syncs inline (no other is spare), and
	// group b can hold it while a's durable notice and next proposal
	// queue up for one round.
	h := newLifecycleHost(t, 1)
	a, alog, _ := addGatedGroup(t, h, 1)
	b, blog, _ := addGatedGroup(t, h, 2)
	ctx := context.Background()

	// a's entry 2 (AckApplied) waits for its sync on a sync worker.
	alog.syncGate.armed.Store(1)
	applied := a.Propose(ctx, protocol.EntryControl, []byte("applied"), AckApplied)
	alog.syncGate.wait(t, "the sync of a's entry 2")
	// b holds the run worker in its Append; a's next proposal queues.
	blog.appendGate.armed.Store(1)
	b.Propose(ctx, protocol.EntryControl, []byte("b"), AckCommitted)
	blog.appendGate.wait(t, "b's append")
	a.Propose(ctx, protocol.EntryControl, []byte("next"), AckCommitted)
	// The sync finishes; its notice waits for the run worker too.
	alog.appendGate.armed.Store(1)
	alog.syncGate.release <- struct{}{}
	waitFor(t, 5*time.Second, "a's durable notice", func() bool {
		a.mu.Lock()
		defer a.mu.Unlock()
		return a.notice.index >= 2 && !a.syncing
	})
	// a's next round appends entry 3 and commits entry 2 in one ready:
	// close the group while it appends.
	blog.appendGate.release <- struct{}{}
	alog.appendGate.wait(t, "a's round that appends entry 3 and commits entry 2")
	removed := removeGroupAsync(t, h, a, nil)
	alog.appendGate.release <- struct{}{}
	waitClosed(t, removed, "RemoveGroup to return")
	wctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	_, _, err := applied.Wait(wctx)
	if errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("AckApplied proposal never resolved after RemoveGroup (Wait: %v); want ErrClosed", err)
	}
	if !errors.Is(err, ErrClosed) {
		t.Fatalf("AckApplied proposal resolved with %v; want ErrClosed", err)
	}
}

// A ReadIndex confirmed in the round a worker is running when the group
// closes resolves (with ErrClosed): close already took the read waiters,
// so the round must not leave it there for an apply that never comes
// (resolveReads).
func TestReadIndexResolvesWhenTheGroupClosesInTheRoundThatConfirmsIt(t *testing.T) {
	h := newLifecycleHost(t, 4)
	g, log, fsm := addGatedGroup(t, h, 1)
	ctx := context.Background()
	// Keep the state machine behind the commit index: block Apply of e1.
	fsm.gate.armed.Store(1)
	if _, _, err := g.Propose(ctx, protocol.EntryControl, []byte("e1"), AckCommitted).Wait(ctx); err != nil {
		t.Fatal(err)
	}
	fsm.gate.wait(t, "apply of e1")
	fsmReleased := false
	defer func() {
		if !fsmReleased {
			fsm.gate.release <- struct{}{}
		}
	}()

	// Round A: hold the worker in Append while a read and a proposal queue.
	log.appendGate.armed.Store(1)
	g.Propose(ctx, protocol.EntryControl, []byte("e2"), AckCommitted)
	log.appendGate.wait(t, "round A append")
	readErr := make(chan error, 1)
	go func() {
		rctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
		_, err := g.ReadIndex(rctx)
		readErr <- err
	}()
	waitFor(t, 5*time.Second, "read queued", func() bool {
		g.mu.Lock()
		defer g.mu.Unlock()
		return len(g.newReads) == 1
	})
	g.Propose(ctx, protocol.EntryControl, []byte("e3"), AckCommitted)
	// Round B (the read and e3): block its Append, then close the group.
	log.appendGate.armed.Store(1)
	log.appendGate.release <- struct{}{}
	log.appendGate.wait(t, "round B append")
	removed := removeGroupAsync(t, h, g, nil)
	log.appendGate.release <- struct{}{}
	// The read must resolve without any apply: the one of e1 is still
	// held (and RemoveGroup waits for it).
	err := <-readErr
	fsm.gate.release <- struct{}{}
	fsmReleased = true
	waitClosed(t, removed, "RemoveGroup to return")
	if errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("ReadIndex never resolved after RemoveGroup (got %v); want ErrClosed", err)
	}
	if !errors.Is(err, ErrClosed) {
		t.Fatalf("ReadIndex returned %v; want ErrClosed", err)
	}
}

// RemoveGroup returns only once the apply worker is out of the group: an
// Apply running when it is called finishes first, and the batches the
// apply loop took after it are not applied, neither before RemoveGroup
// returns nor after (the broker closes the replica's storage right after
// RemoveGroup: broker.stopReplica).
func TestRemoveGroupWaitsForARunningApplyAndNoApplyFollows(t *testing.T) {
	h := newLifecycleHost(t, 4)
	g, _, fsm := addGatedGroup(t, h, 1)
	ctx := context.Background()
	fsm.gate.armed.Store(1)
	if _, _, err := g.Propose(ctx, protocol.EntryControl, []byte("e1"), AckCommitted).Wait(ctx); err != nil {
		t.Fatal(err)
	}
	fsm.gate.wait(t, "apply of e1")
	// Two more batches commit while Apply of e1 blocks.
	for _, d := range []string{"e2", "e3"} {
		if _, _, err := g.Propose(ctx, protocol.EntryControl, []byte(d), AckCommitted).Wait(ctx); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 5*time.Second, "two batches queued", func() bool {
		g.mu.Lock()
		defer g.mu.Unlock()
		return len(g.applyQueue) >= 2
	})
	// The apply loop takes both and blocks in the first.
	fsm.gate.armed.Store(1)
	fsm.gate.release <- struct{}{}
	fsm.gate.wait(t, "apply of the first queued batch")
	running := fsm.appliesDone.Load()
	removed := removeGroupAsync(t, h, g, func() {
		if fsm.appliesDone.Load() == running {
			t.Error("RemoveGroup returned while the state machine's Apply was running")
		}
	})
	// Closed, and Apply still blocked: count every Apply from now on.
	fsm.removed.Store(true)
	fsm.gate.release <- struct{}{}
	waitClosed(t, removed, "RemoveGroup to return")
	time.Sleep(200 * time.Millisecond)
	if n := fsm.appliesAfterRemov.Load(); n > 0 {
		fsm.mu.Lock()
		last := fsm.last
		fsm.mu.Unlock()
		t.Fatalf("StateMachine.Apply called %d time(s) after the group closed (state machine now at index %d)", n, last)
	}
}

// The same for the log: RemoveGroup called while a run worker appends
// returns once the Append did, and no Sync (inline or on a sync worker)
// follows, neither before RemoveGroup returns nor after.
func TestRemoveGroupWaitsForARunningAppendAndNoSyncFollows(t *testing.T) {
	// The run worker syncs inline when it can (another worker idle,
	// nothing queued); try a few times.
	for range 3 {
		h := newLifecycleHost(t, 4)
		g, log, _ := addGatedGroup(t, h, 1)
		log.appendGate.armed.Store(1)
		g.Propose(context.Background(), protocol.EntryControl, []byte("x"), AckCommitted)
		log.appendGate.wait(t, "append")
		running := log.appendsDone.Load()
		removed := removeGroupAsync(t, h, g, func() {
			if log.appendsDone.Load() == running {
				t.Error("RemoveGroup returned while the log's Append was running")
			}
		})
		// Closed, and Append still blocked: count every call from now on.
		// (Released at once: a heartbeat tick queued meanwhile would keep
		// the worker from syncing inline, the path this checks.)
		log.removed.Store(true)
		log.appendGate.release <- struct{}{}
		waitClosed(t, removed, "RemoveGroup to return")
		time.Sleep(100 * time.Millisecond)
		if n := log.callsAfterRemove.Load(); n > 0 {
			t.Fatalf("LogStorage Append/Sync called %d time(s) after the group closed (last: %v)", n, log.lastAfterRemove.Load())
		}
		_ = h.Close()
	}
}
