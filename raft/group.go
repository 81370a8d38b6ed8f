package raft

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/raftmq/raftmq/protocol"
)

// AckMode says when a proposal's future resolves.
type AckMode uint8

const (
	// AckCommitted resolves once the entry is committed: durable on a
	// majority of the voters (the leader counts once its own write is
	// durable). The default.
	AckCommitted AckMode = iota
	// AckApplied resolves once this replica's state machine applied it.
	AckApplied
	// AckAppendedUnsafe resolves once the leader has appended the entry to
	// its own log, before it is durable anywhere or replicated: an entry
	// acknowledged this way is lost if the leader fails before it
	// commits. For users who choose speed over safety, knowingly.
	AckAppendedUnsafe
)

// Proposal is the future of one proposed entry. Proposals are allocated
// in slabs, and the channel behind Done and a blocking Wait is made only
// when someone waits before the proposal resolves (a proposer with many
// proposals in flight mostly finds the later ones resolved already).
type Proposal struct {
	// state is proposalPending until resolve publishes index, term and
	// err, then proposalResolved; read without mu on the fast path.
	state atomic.Uint32
	mu    sync.Mutex // guards done and the state change
	done  chan struct{}

	index, term uint64
	err         error
	mode        AckMode
	// The proposed entry waits in the group's inbox (inbox.go), not here:
	// a Proposal lives as long as its caller keeps it, the entry only
	// until the core takes it, and a smaller Proposal is less memory
	// allocated (and first touched) per entry.
}

const (
	proposalPending uint32 = iota
	proposalResolved
)

// ErrEmptyBatch is returned by ProposeBatch for a batch of no entries.
var ErrEmptyBatch = errors.New("raft: empty batch proposed")

// closedChan is the Done channel of proposals that resolved before anyone
// asked for it.
var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// Wait blocks until the proposal resolves or ctx ends, and returns the
// entry's index and term. A proposal that fails returns an error: a
// *NotLeaderError (errors.As), ErrTransferring, ErrProposalDropped,
// ErrClosed, or the storage error that stopped the group. A ctx error does
// not cancel the proposal; it may still commit.
//
// ErrProposalDropped means the entry will never commit (another entry
// committed at its index). A *NotLeaderError for a proposal the leader had
// already appended means its outcome is unknown here: the replica stepped
// down and its copy of the entry was then overwritten by a new leader's
// entries or replaced by a snapshot, but another replica may still hold
// the entry and a later leader commit it (ErrClosed and ErrStopped say the
// same of the proposals pending when the group stops).
func (p *Proposal) Wait(ctx context.Context) (index, term uint64, err error) {
	if p.state.Load() == proposalResolved {
		return p.index, p.term, p.err
	}
	select {
	case <-p.Done():
		return p.index, p.term, p.err
	case <-ctx.Done():
		return 0, 0, ctx.Err()
	}
}

// Done is closed when the proposal resolves.
func (p *Proposal) Done() <-chan struct{} {
	if p.state.Load() == proposalResolved {
		return closedChan
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.done == nil {
		if p.state.Load() == proposalResolved {
			return closedChan
		}
		p.done = make(chan struct{})
	}
	return p.done
}

// resolve publishes the outcome; later calls do nothing (an
// AckAppendedUnsafe proposal resolves before it commits). index and term
// are set before, by the one goroutine that owns the proposal then.
func (p *Proposal) resolve(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.state.Load() == proposalResolved {
		return
	}
	p.err = err
	p.state.Store(proposalResolved)
	if p.done != nil {
		close(p.done)
	}
}

func failedProposal(err error) *Proposal {
	p := &Proposal{err: err}
	p.state.Store(proposalResolved)
	return p
}

// proposalSlab is how many Proposals one allocation holds: the allocation
// per proposal becomes 1/proposalSlab, and a Proposal a caller keeps
// holds at most proposalSlab-1 others' memory (about 3 KiB).
const proposalSlab = 32

type transferRequest struct {
	to       uint64
	done     chan error
	deadline time.Duration
	started  bool
}

// Group is one replica of a Raft group on a Host. Its methods are safe from
// any goroutine.
type Group struct {
	host *Host
	id   uint64
	cfg  GroupConfig

	// proposals is where Propose leaves proposals, without mu
	// (inbox.go). A proposer that finds it empty schedules the group, the
	// others only push; the worker takes all of it at once.
	proposals proposalInbox
	// accepting is whether Propose takes proposals (this replica leads,
	// transfers no leadership and is open): status and closed say so
	// under mu, and whoever changes them under mu sets it. A proposer
	// that finds it false asks under mu for the reason; one that finds
	// it true pushes, and the core refuses the entry if the replica
	// stepped down meanwhile.
	accepting atomic.Bool

	// mu guards the message inbox and everything the sync and apply
	// goroutines share with the worker running the core.
	mu          sync.Mutex
	closed      bool
	closeErr    error
	stopped     chan struct{} // closed by close, after closeErr is set
	scheduled   bool
	tickDue     bool
	inbox       []protocol.RaftMessage
	newTransfer []*transferRequest
	notice      durableMark // latest durable notice not yet given to the core
	newReads    []*readRequest
	// newMembership holds membership changes not yet given to the core.
	newMembership []*membershipRequest
	// campaignEarly is GroupConfig.CampaignEarly as SetCampaignEarly last
	// set it, given to the core on its next run.
	campaignEarly bool
	readSeq       uint64
	status        Status

	// Log sync state (guarded by mu).
	appended durableMark // last entry appended to the log
	syncing  bool
	// syncTook is how long the last log sync took; a run worker syncs
	// inline only while syncs are quick (see handleReady).
	syncTook time.Duration
	// windowHeld is what the entry window held after the last round
	// (guarded by mu; for tests and benchmarks).
	windowHeld windowUse

	// active counts the goroutines inside the group: run, sync and apply
	// workers (Host.runWorker etc.) and snapshot transfers. RemoveGroup
	// waits on workersIdle (L is &mu) until it is 0, so that no storage or
	// state machine call follows its return.
	active      int
	workersIdle sync.Cond

	// Apply state (guarded by mu).
	applyQueue   [][]protocol.Entry // committed batches, in order
	applyWaiters []*Proposal
	readWaiters  []*readRequest // confirmed reads waiting for apply, by index
	applying     bool
	applied      uint64

	// Owned by whichever worker runs process (one at a time).
	core *core
	// window serves the core recent entries from memory (window.go); the
	// core reads the log through it and persistReady writes through it.
	window *entryWindow
	// pending[pendingHead:] are proposed, not yet committed, in index
	// order; resolved ones are cut from the front by moving pendingHead,
	// and the array is compacted when half of it is dead (a sliding
	// slice would reallocate and copy every proposal in flight each time
	// it runs out of capacity).
	pending     []*Proposal
	pendingHead int
	transfers   []*transferRequest
	// membership holds changes the core accepted, until they finish.
	membership []*membershipRequest
	reads      map[uint64]*readRequest // handed to the core, by id
	inboxBuf   []protocol.RaftMessage
	// The arrays of the last proposals taken from the inbox, given back
	// to it at the next take.
	propBuf  []*Proposal
	entryBuf []protocol.Entry

	// InstallSnapshot streaming (snapshot_driver.go), guarded by mu.
	snap snapshotDriver

	// Timer heap state (guarded by host.timerMu).
	deadline  time.Duration
	heapIndex int
}

type durableMark struct{ term, index uint64 }

func newGroup(h *Host, cfg GroupConfig, hs HardState, seed uint64) *Group {
	g := &Group{host: h, id: cfg.GroupID, cfg: cfg, heapIndex: -1, campaignEarly: cfg.CampaignEarly, stopped: make(chan struct{})}
	g.workersIdle.L = &g.mu
	windowBytes := cfg.EntryWindowBytes
	if windowBytes == 0 {
		windowBytes = defaultWindowBytes
	}
	g.window = newEntryWindow(cfg.Log, windowBytes)
	coreCfg := cfg.coreConfig(h.cfg.NodeID, hs, seed)
	coreCfg.Log = g.window
	g.core = newCore(coreCfg, h.now())
	g.applied = cfg.Applied
	g.status = g.core.status()
	g.status.GroupID = g.id
	g.status.AppliedIndex = g.applied
	g.setStatusLocked(g.status)
	return g
}

// setStatusLocked publishes the core's status (g.mu held) and whether
// Propose takes proposals now.
func (g *Group) setStatusLocked(st Status) {
	if g.closed {
		// A stopped group leads nothing and knows no leader (see close).
		st.Role, st.Leader, st.Transferee = RoleFollower, 0, 0
	}
	g.status = st
	g.accepting.Store(!g.closed && st.Role == RoleLeader && st.Transferee == 0)
}

// proposeRefusal returns why Propose refuses proposals now, or nil when
// it takes them (accepting changed since the caller looked).
func (g *Group) proposeRefusal() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	switch {
	case g.closed:
		return g.closeErr
	case g.status.Role != RoleLeader:
		return &NotLeaderError{Leader: g.status.Leader}
	case g.status.Transferee != 0:
		return ErrTransferring
	}
	return nil
}

// ID is the group id.
func (g *Group) ID() uint64 { return g.id }

// Stopped returns a channel closed once the group stops: when it is
// removed from its host (Err then returns ErrClosed), or when a storage
// error (an append, a sync, the hard state) or a state machine error stops
// it, which Err then returns wrapped in ErrStopped. A stopped group sends
// nothing, fails every proposal with that error and reports (Status) a
// follower that knows no leader; its host keeps it until RemoveGroup. A
// worker that was inside the group when it stopped finishes the storage
// or state machine call it is in (an Apply, a Sync, an Append) and makes
// no further one; RemoveGroup returns only after it did, so the owner
// closes the storage after RemoveGroup, not on Stopped. A caller that
// wants the replica back reopens its storage and adds a new group with
// the same id: after a failed sync, the entries written since the last
// successful one may be in the operating system's cache but not on disk,
// so the log should be cut back to its last durable entry first (as a
// crash would have cut it).
func (g *Group) Stopped() <-chan struct{} { return g.stopped }

// Err returns why the group stopped (see Stopped), nil while it runs. A
// non-nil Err does not mean the driver is done with the group's storage:
// after RemoveGroup returns it is.
func (g *Group) Err() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.closeErr
}

// Status returns a snapshot of the replica's state.
func (g *Group) Status() Status {
	g.mu.Lock()
	defer g.mu.Unlock()
	s := g.status
	s.AppliedIndex = g.applied
	return s
}

// Propose appends an entry to the group's log through the leader on this
// node. It fails fast with *NotLeaderError when this replica is not the
// leader. data is owned by Raft from now on: the caller must neither modify
// nor read it after the call (Raft stamps a record batch's base offset into
// it in place when it appends it; see docs/adr/0001).
// Proposals queued while the previous append is in flight go out together.
//
// Propose does not take the group's lock: it queues the proposal in the
// group's inbox, under a lock of the inbox's own, and only the proposer
// that finds the inbox empty schedules the group (one per batch). A
// proposal that raced a step-down, a leadership transfer or Close still
// resolves, with the error the core or Close gives it.
func (g *Group) Propose(ctx context.Context, typ protocol.EntryType, data []byte, mode AckMode) *Proposal {
	if p := g.refuseProposal(ctx, typ); p != nil {
		return p
	}
	return g.pushed(g.proposals.push(typ, data, mode))
}

// ProposeBatch is Propose for many entries of one type at once, under one
// future: one push into the group's inbox (one lock, one Proposal), and
// the entries take consecutive indexes in the log, in the order given.
// The future resolves as the batch's last entry does (every entry before
// it in the batch is then committed, or applied, too), and Wait returns
// that last entry's index: the batch holds indexes index-len(datas)+1 to
// index. An error means what it means for Propose, for the whole batch.
// Ownership of the slices in datas is as for Propose (datas itself stays
// the caller's). An empty batch fails with ErrEmptyBatch.
func (g *Group) ProposeBatch(ctx context.Context, typ protocol.EntryType, datas [][]byte, mode AckMode) *Proposal {
	if len(datas) == 0 {
		return failedProposal(ErrEmptyBatch)
	}
	if p := g.refuseProposal(ctx, typ); p != nil {
		return p
	}
	return g.pushed(g.proposals.pushBatch(typ, datas, mode))
}

// refuseProposal returns a failed proposal when Propose refuses one now,
// else nil.
func (g *Group) refuseProposal(ctx context.Context, typ protocol.EntryType) *Proposal {
	if err := ctx.Err(); err != nil {
		return failedProposal(err)
	}
	if typ == protocol.EntryConfig {
		// The core refuses a config entry, and with it every proposal
		// of its batch: refuse it here, alone.
		return failedProposal(ErrConfigEntry)
	}
	if !g.accepting.Load() {
		if err := g.proposeRefusal(); err != nil {
			return failedProposal(err)
		}
	}
	return nil
}

// pushed finishes a push into the inbox: the proposer that found it empty
// schedules the group; one that found it closed fails.
func (g *Group) pushed(p *Proposal, wasEmpty bool) *Proposal {
	switch {
	case p == nil:
		// Closed since accepting was read: close took what it found;
		// this one was never in the inbox.
		g.mu.Lock()
		err := g.closeErr
		g.mu.Unlock()
		return failedProposal(err)
	case wasEmpty:
		g.mu.Lock()
		g.scheduleLocked()
		g.mu.Unlock()
	}
	return p
}

// TransferLeadership hands leadership to another voter (thesis §3.10) and
// waits until this node sees it lead. A transfer that does not finish in an
// election timeout is abandoned and returns an error; proposals fail with
// ErrTransferring meanwhile.
func (g *Group) TransferLeadership(ctx context.Context, to uint64) error {
	req := &transferRequest{to: to, done: make(chan error, 1)}
	return g.request(ctx, req.done, func() { g.newTransfer = append(g.newTransfer, req) })
}

// SetCampaignEarly changes GroupConfig.CampaignEarly of a running replica
// (its owner's preferred leader moved). It applies from the next election
// timer the replica draws: on the next message from its leader, or when
// the current timer runs out. It fails, changing nothing, where the
// group's timings do not allow CampaignEarly.
func (g *Group) SetCampaignEarly(on bool) error {
	if on && !g.cfg.CanCampaignEarly() {
		return g.cfg.errCampaignEarly()
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.campaignEarly = on
	return nil
}

// CampaignsEarly reports GroupConfig.CampaignEarly as the group runs with
// it (SetCampaignEarly).
func (g *Group) CampaignsEarly() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.campaignEarly
}

// request queues a request for the group's worker with enqueue (called
// under g.mu), unless the group is closed, and waits for the worker's
// answer on done or for ctx.
func (g *Group) request(ctx context.Context, done <-chan error, enqueue func()) error {
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return g.closeErr
	}
	enqueue()
	g.scheduleLocked()
	g.mu.Unlock()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (g *Group) scheduleLocked() {
	if !g.scheduled && !g.closed {
		g.scheduled = true
		g.host.enqueue(g)
	}
}

func (g *Group) hasWorkLocked() bool {
	return len(g.inbox) > 0 || g.proposals.waiting() || g.tickDue || g.notice.index != 0 || len(g.newTransfer) > 0 || len(g.newReads) > 0 || len(g.newMembership) > 0 || g.snap.hasWork()
}

// process runs the core on everything that arrived, then carries out its
// decisions. Only one worker runs it for a group at a time. When more
// arrived meanwhile it goes on here, unless other groups wait for a worker
// (then it queues the group behind them): handing the group to another
// worker would cost a wake-up and buy no parallelism.
func (g *Group) process() {
	for g.processOnce() {
		if g.host.runq.yield(g) {
			return
		}
		// Let goroutines that are ready (proposers, this process's other
		// workers) run first, so that the next round takes more at once
		// instead of spinning on a trickle; with none ready it returns at
		// once.
		runtime.Gosched()
	}
}

// processOnce is one round of process. It reports whether more work
// arrived meanwhile; the group then stays scheduled, and the caller runs or
// queues it.
func (g *Group) processOnce() (more bool) {
	g.mu.Lock()
	if g.closed {
		err := g.closeErr
		g.mu.Unlock()
		g.failOwned(err)
		return false
	}
	msgs, transfers, reads := g.inbox, g.newTransfer, g.newReads
	g.inbox, g.newTransfer, g.newReads = g.inboxBuf[:0], nil, nil
	membership := g.newMembership
	g.newMembership = nil
	notice, tickDue := g.notice, g.tickDue
	g.notice, g.tickDue = durableMark{}, false
	campaignEarly := g.campaignEarly
	g.mu.Unlock()
	props, propEnts := g.proposals.take(g.propBuf, g.entryBuf)
	g.propBuf, g.entryBuf = nil, nil // the inbox's now

	now := g.host.now()
	c := g.core
	c.cfg.CampaignEarly = campaignEarly
	snapshotErr := g.processSnapshots()
	for i := range msgs {
		c.step(&msgs[i], now)
		msgs[i] = protocol.RaftMessage{}
	}
	if len(props) > 0 {
		g.propose(props, propEnts, now)
	}
	clear(propEnts) // the array is reused: keep no proposal's data alive
	g.requestReads(reads, now)
	if notice.index != 0 {
		c.durableNotice(notice.term, notice.index, now)
	}
	if tickDue || now >= c.deadline() {
		c.tick(now)
	}
	for _, t := range transfers {
		if err := c.transferLeadership(t.to, now); err != nil {
			t.done <- err
			continue
		}
		t.deadline = now + 2*g.cfg.ElectionTimeout
		g.transfers = append(g.transfers, t)
	}
	g.startMembershipChanges(membership, now)
	err := snapshotErr
	for err == nil && c.hasReady() {
		err = g.handleReady(c.takeReady())
	}
	releaseWindow(g.window, c)
	if err == errRoundClosed {
		// Closed meanwhile (RemoveGroup, or a sync or apply worker's
		// error): touch the storage no more.
		g.mu.Lock()
		err = g.closeErr
		g.mu.Unlock()
		g.failOwned(err)
		return false
	}
	if err != nil {
		g.host.cfg.Logger.Error("raft: group stopped", "group", g.id, "err", err)
		err = fmt.Errorf("%w: %w", ErrStopped, err)
		g.close(err)
		g.failOwned(err)
		return false
	}
	st := c.status()
	g.checkTransfers(st, now)
	g.checkMembershipChanges(st)
	g.checkSnapshotLeadership(st)
	g.host.setDeadline(g, c.deadline())

	g.mu.Lock()
	g.inboxBuf, g.propBuf, g.entryBuf = msgs[:0], props[:0], propEnts[:0]
	prev := g.status
	st.GroupID = g.id
	g.setStatusLocked(st)
	g.windowHeld = g.window.held()
	if g.closed {
		err := g.closeErr
		g.mu.Unlock()
		g.failOwned(err)
		return false
	}
	more = g.hasWorkLocked()
	if !more {
		g.scheduled = false
	}
	g.mu.Unlock()
	if prev.Role != st.Role || prev.Term != st.Term || prev.Leader != st.Leader {
		g.host.cfg.Logger.Debug("raft: state change", "group", g.id, "node", st.ID, "role", st.Role, "term", st.Term, "leader", st.Leader)
	}
	return more
}

// propose hands proposals to the core; ents[i] is the entry of props[i].
func (g *Group) propose(props []*Proposal, ents []protocol.Entry, now time.Duration) {
	first, term, err := g.core.propose(ents, now)
	if err == nil {
		g.window.own(ents)
	}
	for i, p := range props {
		if p == nil {
			continue // an entry of a batch, not its last (ProposeBatch)
		}
		if err != nil {
			p.resolve(err)
			continue
		}
		p.index, p.term = first+uint64(i), term
		if len(g.pending) == cap(g.pending) && g.pendingHead >= len(g.pending)/2 {
			n := copy(g.pending, g.pending[g.pendingHead:])
			clear(g.pending[n:])
			g.pending, g.pendingHead = g.pending[:n], 0
		}
		g.pending = append(g.pending, p)
	}
	clear(props)
}

// errRoundClosed is what handleReady returns when it finds the group
// closed: the round ends without another storage call (see processOnce).
var errRoundClosed = errors.New("raft: group closed during the round")

// handleReady persists, sends and hands out committed entries, in the order
// the core's contract requires. It returns errRoundClosed, having written
// nothing, when the group closed meanwhile.
func (g *Group) handleReady(rd ready) error {
	if rd.err != nil {
		return rd.err
	}
	g.mu.Lock()
	closed := g.closed
	g.mu.Unlock()
	if closed {
		return errRoundClosed
	}
	if n := len(rd.entries); n > 0 && rd.entries[0].Index <= g.window.LastIndex() {
		g.dropOverwritten(rd.entries)
	}
	if err := persistReady(g.window, g.cfg.Stable, &rd); err != nil {
		return err
	}
	var syncInline bool
	var appended durableMark
	if n := len(rd.entries); n > 0 {
		last := rd.entries[n-1]
		appended = durableMark{term: last.Term, index: last.Index}
		g.resolveAppended(rd.entries)
		g.mu.Lock()
		g.appended = appended
		startSync := false
		if !g.syncing && !g.closed {
			// No sync runs for the group. When nothing more is queued
			// for it, no other group waits for a run worker and another
			// one is idle, sync here, after sending (the followers append
			// in parallel, §10.2.1): a sync worker would cost two
			// wake-ups (to it and back) and buy no parallelism, since
			// this group has nothing to do but wait for the sync.
			// Otherwise a sync worker does it: when proposals or messages
			// are already queued, this worker appends and sends them
			// while the sync runs (under a steady load an inline sync
			// kept the leader's worker from its next append for most of
			// the time); and so it does while syncs are slow: the core,
			// waiting for an inline sync, sends no heartbeats.
			syncInline = g.syncTook < g.cfg.HeartbeatInterval/4 && !g.hasWorkLocked() && g.host.runq.spare()
			startSync = !syncInline
			g.syncing = startSync
		}
		g.mu.Unlock()
		if startSync {
			g.host.submitSync(g)
		}
	}
	if len(rd.messages) > 0 {
		for i := range rd.messages {
			rd.messages[i].GroupID = g.id
		}
		g.host.cfg.Send(rd.messages)
	}
	if len(rd.committed) > 0 {
		// Status shows the commit before any proposal learns it, so whoever
		// is told "committed" and then asks Status sees at least that index
		// (the broker waits for apply up to it: read your acknowledged writes).
		last := rd.committed[len(rd.committed)-1].Index
		g.mu.Lock()
		g.status.CommitIndex = max(g.status.CommitIndex, last)
		g.mu.Unlock()
		g.resolveCommitted(rd.committed)
	}
	if len(rd.reads) > 0 {
		g.resolveReads(rd.reads)
	}
	if len(rd.snapshots) > 0 {
		g.startSnapshotTransfers(rd.snapshots)
	}
	if syncInline {
		g.mu.Lock()
		closed := g.closed
		g.mu.Unlock()
		if closed {
			return errRoundClosed
		}
		now, err := g.syncLog()
		if err != nil {
			return fmt.Errorf("raft: sync log: %w", err)
		}
		// Nobody else appends while this worker holds the group: the sync
		// covered exactly what this ready appended.
		g.core.durableNotice(appended.term, appended.index, now)
	}
	return nil
}

// syncLog syncs the log and records how long it took (syncTook, which
// decides whether the next sync may run inline). It returns the time it
// finished.
func (g *Group) syncLog() (time.Duration, error) {
	start := g.host.now()
	if _, err := g.cfg.Log.Sync(); err != nil {
		return 0, err
	}
	now := g.host.now()
	g.mu.Lock()
	g.syncTook = now - start
	g.mu.Unlock()
	return now, nil
}

// persistReady writes a ready's entries and hard state: truncate when the
// entries replace a suffix, append (buffered), and save the hard state
// durably. Messages go out only after it returns.
func persistReady(log LogStorage, stable StableStorage, rd *ready) error {
	if len(rd.entries) > 0 {
		first := rd.entries[0].Index
		if first <= log.LastIndex() {
			if err := log.TruncateAfter(first - 1); err != nil {
				return fmt.Errorf("raft: truncate log after %d: %w", first-1, err)
			}
		}
		if err := log.Append(rd.entries); err != nil {
			return fmt.Errorf("raft: append %d entries at %d: %w", len(rd.entries), first, err)
		}
	}
	if rd.saveHardState {
		if err := stable.Save(rd.hardState); err != nil {
			return fmt.Errorf("raft: save hard state: %w", err)
		}
	}
	return nil
}

// resolveAppended resolves the AckAppendedUnsafe proposals among entries,
// which the leader has just appended to its log.
func (g *Group) resolveAppended(entries []protocol.Entry) {
	first, last := entries[0].Index, entries[len(entries)-1].Index
	// pending is in index order and entries are the newest: walk back
	// from the end over just those (not every proposal in flight).
	for i := len(g.pending) - 1; i >= g.pendingHead; i-- {
		p := g.pending[i]
		if p.index < first {
			break
		}
		if p.index <= last && p.mode == AckAppendedUnsafe && entries[p.index-first].Term == p.term {
			p.resolve(nil)
		}
	}
}

// dropOverwritten fails the pending proposals whose entries the ready's
// entries overwrite: entries replace the log's suffix from their first
// index (a follower's conflict truncation), so a proposal of this replica
// at or after that index is gone from its log unless entries hold it
// again with its term. Left pending, it would resolve only when the commit
// index passed it (never, in an idle group), and proposals of a later
// leadership of this replica would queue behind it at lower indexes,
// breaking the index order resolveCommitted relies on (they would hang
// after committing and then fail as dropped).
//
// The outcome of such a proposal is unknown, not failed: another replica
// may hold the entry and a later leader commit it (a leader elected
// without it can lose leadership before its own entry at that index
// reaches a majority). It fails with *NotLeaderError, as Wait documents.
// A step-down alone fails nothing: the next leader may commit the entries.
func (g *Group) dropOverwritten(entries []protocol.Entry) {
	first, last := entries[0].Index, entries[len(entries)-1].Index
	start := len(g.pending)
	for start > g.pendingHead && g.pending[start-1].index >= first {
		start--
	}
	if start == len(g.pending) {
		return
	}
	var err error
	kept := start
	for _, p := range g.pending[start:] {
		if p.index <= last && entries[p.index-first].Term == p.term {
			g.pending[kept] = p // the same entry again: still in the log
			kept++
			continue
		}
		if err == nil {
			err = &NotLeaderError{Leader: g.core.leader}
		}
		p.resolve(err)
	}
	clear(g.pending[kept:])
	g.pending = g.pending[:kept]
	if g.pendingHead == len(g.pending) {
		g.pending, g.pendingHead = g.pending[:0], 0
	}
}

// resolveCommitted resolves AckCommitted proposals and queues the entries
// (and AckApplied proposals) for the apply goroutine.
func (g *Group) resolveCommitted(committed []protocol.Entry) {
	first, last := committed[0].Index, committed[len(committed)-1].Index
	n := 0
	var toApply []*Proposal
	for _, p := range g.pending[g.pendingHead:] {
		if p.index > last {
			break
		}
		n++
		if p.index < first || committed[p.index-first].Term != p.term {
			p.resolve(ErrProposalDropped)
			continue
		}
		if p.mode == AckApplied {
			toApply = append(toApply, p)
			continue
		}
		p.resolve(nil)
	}
	clear(g.pending[g.pendingHead : g.pendingHead+n])
	g.pendingHead += n
	if g.pendingHead == len(g.pending) {
		g.pending, g.pendingHead = g.pending[:0], 0
	}
	g.mu.Lock()
	if g.closed {
		// close took applyWaiters already and no apply loop runs for a
		// closed group: these would never resolve.
		err := g.closeErr
		g.mu.Unlock()
		for _, p := range toApply {
			p.resolve(err)
		}
		return
	}
	g.applyQueue = append(g.applyQueue, committed)
	g.applyWaiters = append(g.applyWaiters, toApply...)
	startApply := !g.applying
	g.applying = true
	g.mu.Unlock()
	if startApply {
		g.host.submitApply(g)
	}
}

func (g *Group) checkTransfers(st Status, now time.Duration) {
	kept := g.transfers[:0]
	for _, t := range g.transfers {
		switch {
		case st.Leader == t.to:
			t.done <- nil
		case st.Role == RoleLeader && st.Transferee != t.to:
			t.done <- fmt.Errorf("raft: transfer of group %d to %d abandoned after an election timeout", g.id, t.to)
		case st.Role != RoleLeader && st.Leader != 0:
			t.done <- &NotLeaderError{Leader: st.Leader}
		case now > t.deadline:
			t.done <- fmt.Errorf("raft: transfer of group %d to %d did not finish", g.id, t.to)
		default:
			kept = append(kept, t)
		}
	}
	clear(g.transfers[len(kept):])
	g.transfers = kept
}

// syncLoop runs on a sync worker: it syncs the log, tells the core what is
// durable as (term, index), and, while more was appended meanwhile (group
// commit), syncs again: here, or after the groups already queued. When no
// worker holds the group it runs the core on the notice itself rather than
// waking a run worker for it.
func (g *Group) syncLoop() {
	for {
		g.mu.Lock()
		mark := g.appended
		closed := g.closed
		g.mu.Unlock()
		if closed {
			return
		}
		if _, err := g.syncLog(); err != nil {
			g.host.cfg.Logger.Error("raft: log sync failed; group stopped", "group", g.id, "err", err)
			g.close(fmt.Errorf("%w: raft: sync log: %w", ErrStopped, err))
			return
		}
		g.mu.Lock()
		g.notice = mark
		run := !g.scheduled && !g.closed
		g.scheduled = g.scheduled || run
		g.mu.Unlock()
		if run {
			// syncing stays set meanwhile, so what process appends is
			// left for this loop to sync.
			g.process()
		}
		g.mu.Lock()
		if g.appended == mark || g.closed {
			g.syncing = false
			g.mu.Unlock()
			return
		}
		g.mu.Unlock()
		// More was appended meanwhile: go to the back of the queue when
		// other groups wait, so a busy group does not keep this worker
		// from them; otherwise sync again here.
		if g.host.syncq.yield(g) {
			return
		}
	}
}

// applyLoop runs on an apply worker: it applies queued committed entries in
// batches and resolves AckApplied proposals.
func (g *Group) applyLoop() {
	for {
		g.mu.Lock()
		batches := g.applyQueue
		g.applyQueue = nil
		if len(batches) == 0 || g.closed {
			g.applying = false
			g.applyStoppedLocked()
			g.mu.Unlock()
			return
		}
		g.mu.Unlock()
		for i, batch := range batches {
			if i > 0 {
				// Closed meanwhile: RemoveGroup waits for this loop, and
				// the owner closes the state machine right after it.
				g.mu.Lock()
				if g.closed {
					g.applying = false
					g.applyStoppedLocked()
					g.mu.Unlock()
					return
				}
				g.mu.Unlock()
			}
			if err := g.cfg.StateMachine.Apply(batch); err != nil {
				g.host.cfg.Logger.Error("raft: state machine failed; group stopped", "group", g.id, "err", err)
				g.close(fmt.Errorf("%w: raft: apply: %w", ErrStopped, err))
				return
			}
		}
		last := batches[len(batches)-1]
		applied := last[len(last)-1].Index
		g.mu.Lock()
		g.applied = applied
		n := 0
		for _, p := range g.applyWaiters {
			if p.index > applied {
				break
			}
			p.resolve(nil)
			n++
		}
		clear(g.applyWaiters[:n])
		g.applyWaiters = g.applyWaiters[n:]
		g.releaseReadsLocked()
		more := len(g.applyQueue) > 0 && !g.closed
		g.mu.Unlock()
		if more && g.host.applyq.yield(g) {
			// As in syncLoop: other groups wait; go behind them.
			return
		}
	}
}

// enter and leave bracket a goroutine's stay in the group (a run, sync or
// apply worker's loop, a snapshot transfer): awaitWorkers waits until
// none is inside. A goroutine that enters a closed group finds it closed
// before any storage call and leaves.
func (g *Group) enter() {
	g.mu.Lock()
	g.active++
	g.mu.Unlock()
}

func (g *Group) leave() {
	g.mu.Lock()
	g.active--
	if g.active == 0 {
		g.workersIdle.Broadcast()
	}
	g.mu.Unlock()
}

// goInsideLocked runs f on a goroutine of the host's that is inside the
// group until f returns (a snapshot transfer): RemoveGroup waits for it.
// g.mu is held.
func (g *Group) goInsideLocked(f func()) {
	g.active++
	g.host.wg.Go(func() {
		defer g.leave()
		f()
	})
}

// awaitWorkers waits until no goroutine of the driver is inside the
// group (see enter). After close, none makes another storage or state
// machine call once it returns. It must not run on one of those
// goroutines (from a StateMachine, LogStorage or Send callback): it would
// wait for itself.
func (g *Group) awaitWorkers() {
	g.mu.Lock()
	for g.active > 0 {
		g.workersIdle.Wait()
	}
	g.mu.Unlock()
}

// close stops the group and fails everything pending with err.
func (g *Group) close(err error) {
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return
	}
	g.closed = true
	g.closeErr = err
	close(g.stopped)
	// It sends nothing any more: it must not go on claiming to lead (a
	// broker would keep answering as the partition's or the controller's
	// leader) or to know the leader.
	g.setStatusLocked(g.status)
	props := g.proposals.close()
	waiters := g.applyWaiters
	g.applyWaiters = nil
	newTransfers := g.newTransfer
	g.newTransfer = nil
	newMembership := g.newMembership
	g.newMembership = nil
	reads := append(g.newReads, g.readWaiters...)
	g.newReads, g.readWaiters = nil, nil
	g.mu.Unlock()
	g.stopSnapshots()
	for _, r := range reads {
		r.resolve(0, err)
	}
	for _, p := range props {
		p.resolve(err)
	}
	for _, p := range waiters {
		p.resolve(err)
	}
	for _, t := range newTransfers {
		t.done <- err
	}
	for _, r := range newMembership {
		r.done <- err
	}
	// pending and transfers belong to the worker; a worker in process()
	// sees closed on its next run. Resolve them here only when no worker
	// holds the group.
	g.mu.Lock()
	idle := !g.scheduled
	g.scheduled = true // keep workers away from now on
	g.mu.Unlock()
	if idle {
		g.failOwned(err)
	}
}

// failOwned fails the proposals and transfers owned by the worker side.
func (g *Group) failOwned(err error) {
	for _, p := range g.pending[g.pendingHead:] {
		p.resolve(err)
	}
	g.pending, g.pendingHead = nil, 0
	for _, t := range g.transfers {
		t.done <- err
	}
	g.transfers = nil
	for _, r := range g.membership {
		r.done <- err
	}
	g.membership = nil
	for _, r := range g.reads {
		r.resolve(0, err)
	}
	g.reads = nil
}
