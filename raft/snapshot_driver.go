package raft

import (
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/raftmq/raftmq/protocol"
	"github.com/raftmq/raftmq/snapshot"
)

// Restorer is an optional StateMachine capability (checked by type
// assertion): a follower that receives a snapshot it cannot reach from its
// own log (§7) restores the state machine from it. Restore replaces the
// whole state with the one as of meta.Index; it must read body to io.EOF
// (the body's CRC is checked only there) and return any error from body.
// The driver calls it on the group's worker, with no Apply running, and
// applies from meta.Index+1 afterwards. The log is reset (LogResetter)
// only after Restore returns, so a state machine whose readers read the
// log up to its applied index must not show them the restored index
// before that reset: until then the log may hold a suffix that never
// committed. An error stops the group. A replica whose state machine is
// not a Restorer never restores: it keeps asking for the log the leader
// no longer has.
type Restorer interface {
	Restore(meta snapshot.Meta, body io.Reader) error
}

// LogResetter is an optional LogStorage capability (segmentlog.Log has
// it): after a restore the driver discards the whole log, durably, and
// continues at nextIndex with Term(nextIndex-1) = prevTerm and record
// offsets from nextOffset (snapshot.Meta.NextOffset).
type LogResetter interface {
	ResetOffsets(nextIndex, prevTerm, nextOffset uint64) error
}

// ResumeSnapshotInstall is what the owner of a group runs on start, before
// it restores its state machine and calls AddGroup. It finishes an install
// that a crash interrupted after the snapshot reached the store but before
// the log was reset: when the store's newest snapshot is past the log's
// last index, or the log holds the snapshot's index with another term (the
// install was replacing a conflicting suffix, §7), it resets the log to
// continue after the snapshot (ResetOffsets). It returns the newest
// snapshot when one covers the log's compacted prefix (index at least
// FirstIndex-1): the owner restores from it unless its state machine is
// already at or past its index, and passes the applied index as
// GroupConfig.Applied. ok is false when the store holds no such snapshot.
func ResumeSnapshotInstall(store *snapshot.Store, log interface {
	LogStorage
	LogResetter
}) (latest snapshot.Info, ok bool, err error) {
	latest, ok = store.Latest()
	if !ok {
		return snapshot.Info{}, false, nil
	}
	meta := latest.Meta
	reset := meta.Index > log.LastIndex()
	if !reset && meta.Index+1 >= log.FirstIndex() {
		term, err := log.Term(meta.Index)
		if err != nil {
			return snapshot.Info{}, false, fmt.Errorf("raft: term of snapshot index %d: %w", meta.Index, err)
		}
		reset = term != meta.Term
	}
	if reset {
		if err := log.ResetOffsets(meta.Index+1, meta.Term, meta.NextOffset); err != nil {
			return snapshot.Info{}, false, fmt.Errorf("raft: reset log after snapshot %v: %w", meta.ID(), err)
		}
	}
	if meta.Index+1 < log.FirstIndex() {
		return snapshot.Info{}, false, nil
	}
	return latest, true, nil
}

const (
	// snapshotInflightChunks bounds the chunks of one transfer in flight.
	snapshotInflightChunks = 8
	// snapshotQueue bounds chunks or acks waiting for a transfer
	// goroutine; more are dropped (the window resends).
	snapshotQueue = 64
)

// snapshotDriver is a group's InstallSnapshot streaming state, guarded by
// the group's mu. A transfer (outbound to one follower, or the one inbound
// from the leader) runs on a goroutine of its own while active; an idle
// group has none.
type snapshotDriver struct {
	outbound map[uint64]*outboundTransfer // by follower
	term     uint64                       // leader term of the outbound transfers
	inbound  *inboundTransfer
	// waiting holds requests no stored snapshot could serve yet; a
	// SnapshotTaken retries them.
	waiting map[uint64]snapshotRequest
	retry   bool
	// failed lists followers whose transfer failed, for core.snapshotFailed.
	failed []uint64
	// installs are snapshots received into the store for the core to
	// decide about (snapshotAction).
	installs []receivedSnapshot
	// applyStopped is signalled when the apply loop stops or the group
	// closes; an install waits on it (claimApply). Created on first use.
	applyStopped *sync.Cond
}

type receivedSnapshot struct {
	from uint64
	meta snapshot.Meta
}

type outboundTransfer struct {
	to, term uint64
	acks     chan snapshot.Ack
	stop     chan struct{}
}

type inboundTransfer struct {
	from   uint64
	id     snapshot.ID
	chunks chan inboundChunk
	stop   chan struct{}
}

type inboundChunk struct {
	term  uint64
	chunk snapshot.Chunk
}

func (d *snapshotDriver) hasWork() bool {
	return d.retry || len(d.failed) > 0 || len(d.installs) > 0
}

// SnapshotTaken tells the group that its owner stored a snapshot (in
// GroupConfig.Snapshots) as of meta.Index, so the owner may now delete log
// entries up to it; the owner keeps deciding when (segmentlog.DeleteBefore).
// A leader retries followers that waited for a snapshot the store lacked.
// meta is informational for now: the driver streams the store's Latest().
func (g *Group) SnapshotTaken(meta snapshot.Meta) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.snap.waiting) > 0 {
		g.snap.retry = true
		g.scheduleLocked()
	}
}

func isSnapshotMessage(t protocol.RaftMessageType) bool {
	return t == protocol.MsgSnapshot || t == protocol.MsgSnapshotAck
}

// stepSnapshotLocked routes a chunk or an ack to its transfer (g.mu held).
func (g *Group) stepSnapshotLocked(m *protocol.RaftMessage) {
	if m.Type == protocol.MsgSnapshotAck {
		t := g.snap.outbound[m.From]
		if t == nil || t.term != m.Term {
			return
		}
		if ack, err := snapshot.DecodeAck(m.Snapshot); err == nil {
			select {
			case t.acks <- ack:
			default:
			}
		}
		return
	}
	if g.cfg.Snapshots == nil || m.Term < g.status.Term || (g.status.Role == RoleLeader && m.Term == g.status.Term) {
		return
	}
	chunk, err := snapshot.DecodeChunk(m.Snapshot)
	if err != nil {
		return
	}
	in := g.snap.inbound
	if in != nil && (in.from != m.From || in.id != chunk.ID) {
		close(in.stop)
		g.snap.inbound, in = nil, nil
	}
	if in == nil {
		in = &inboundTransfer{from: m.From, id: chunk.ID, chunks: make(chan inboundChunk, snapshotQueue), stop: make(chan struct{})}
		g.snap.inbound = in
		g.goInsideLocked(func() { g.receiveSnapshot(in) })
	}
	select {
	case in.chunks <- inboundChunk{term: m.Term, chunk: chunk}:
	default:
	}
}

// processSnapshots runs on the worker before the core takes new input:
// failed transfers, retries and received snapshots.
func (g *Group) processSnapshots() error {
	g.mu.Lock()
	failed, installs, retry := g.snap.failed, g.snap.installs, g.snap.retry
	g.snap.failed, g.snap.installs, g.snap.retry = nil, nil, false
	var waiting []snapshotRequest
	if retry {
		for _, req := range g.snap.waiting {
			waiting = append(waiting, req)
		}
		clear(g.snap.waiting)
	}
	g.mu.Unlock()
	for _, to := range failed {
		g.core.snapshotFailed(to)
	}
	if len(waiting) > 0 {
		g.startSnapshotTransfers(waiting)
	}
	for _, rs := range installs {
		if err := g.installSnapshot(rs); err != nil {
			return err
		}
	}
	return nil
}

// startSnapshotTransfers serves the core's ready.snapshots: stream the
// newest stored snapshot to each follower, unless one is already streaming.
func (g *Group) startSnapshotTransfers(reqs []snapshotRequest) {
	c := g.core
	if c.role != RoleLeader {
		return
	}
	var info snapshot.Info
	ok := false
	if g.cfg.Snapshots != nil {
		info, ok = g.cfg.Snapshots.Latest()
	}
	// The follower continues from info.Meta.Index+1, which the log must hold.
	usable := ok && info.Meta.Index+1 >= g.cfg.Log.FirstIndex() && info.Meta.Index <= c.commit
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return
	}
	if g.snap.term != c.term {
		g.abandonOutboundLocked()
		g.snap.term = c.term
	}
	for _, req := range reqs {
		if g.snap.outbound[req.to] != nil {
			continue
		}
		if !usable {
			if g.snap.waiting == nil {
				g.snap.waiting = make(map[uint64]snapshotRequest)
			}
			g.snap.waiting[req.to] = req
			g.host.cfg.Logger.Warn("raft: follower needs a snapshot the store lacks; waiting for SnapshotTaken",
				"group", g.id, "follower", req.to, "need", req.need, "firstIndex", g.cfg.Log.FirstIndex())
			continue
		}
		delete(g.snap.waiting, req.to)
		t := &outboundTransfer{to: req.to, term: c.term, acks: make(chan snapshot.Ack, snapshotQueue), stop: make(chan struct{})}
		if g.snap.outbound == nil {
			g.snap.outbound = make(map[uint64]*outboundTransfer)
		}
		g.snap.outbound[req.to] = t
		g.goInsideLocked(func() { g.sendSnapshot(t, info) })
	}
}

// checkSnapshotLeadership abandons outbound transfers once this replica is
// no longer the leader of the term they belong to.
func (g *Group) checkSnapshotLeadership(st Status) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.snap.outbound) > 0 && (st.Role != RoleLeader || st.Term != g.snap.term) {
		g.abandonOutboundLocked()
	}
	if st.Role != RoleLeader {
		clear(g.snap.waiting)
	}
}

func (g *Group) abandonOutboundLocked() {
	for to, t := range g.snap.outbound {
		close(t.stop)
		delete(g.snap.outbound, to)
	}
}

// stopSnapshots abandons every transfer (the group closes).
func (g *Group) stopSnapshots() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.applyStoppedLocked()
	g.abandonOutboundLocked()
	if in := g.snap.inbound; in != nil {
		close(in.stop)
		g.snap.inbound = nil
	}
}

// endOutbound removes t after it finished; failed hands the follower back
// to the core, which probes and asks again.
func (g *Group) endOutbound(t *outboundTransfer, failed bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.snap.outbound[t.to] != t {
		return // abandoned meanwhile
	}
	delete(g.snap.outbound, t.to)
	if failed && !g.closed {
		g.snap.failed = append(g.snap.failed, t.to)
		g.scheduleLocked()
	}
}

// sendSnapshot streams one snapshot to a follower in chunks of at most
// MaxAppendBytes (go-back-N with snapshot.SendWindow), resending from the
// acknowledged offset when no ack arrives for half an election timeout,
// and gives up after two election timeouts without progress.
func (g *Group) sendSnapshot(t *outboundTransfer, info snapshot.Info) {
	log := g.host.cfg.Logger.With("group", g.id, "follower", t.to, "snapshot", info.Meta.ID())
	sender, err := g.cfg.Snapshots.NewSender(info.Meta.Index, int(min(g.cfg.MaxAppendBytes, 1<<30)))
	if err != nil {
		log.Error("raft: open snapshot to send", "err", err)
		g.endOutbound(t, true)
		return
	}
	defer sender.Close()
	window := snapshot.NewSendWindow(sender.Size(), sender.MaxChunkLen(), snapshotInflightChunks)
	resendAfter := max(g.cfg.ElectionTimeout/2, g.cfg.HeartbeatInterval)
	giveUpAfter := 2 * g.cfg.ElectionTimeout
	timer := time.NewTimer(resendAfter)
	defer timer.Stop()
	lastProgress, acked := time.Now(), uint64(0)
	for {
		var msgs []protocol.RaftMessage
		for offset, ok := window.Next(); ok; offset, ok = window.Next() {
			chunk, err := sender.AppendChunk(nil, offset)
			if err != nil {
				log.Error("raft: read snapshot chunk", "offset", offset, "err", err)
				g.endOutbound(t, true)
				return
			}
			msgs = append(msgs, protocol.RaftMessage{GroupID: g.id, From: g.host.cfg.NodeID, To: t.to,
				Type: protocol.MsgSnapshot, Term: t.term, Snapshot: chunk})
		}
		if len(msgs) > 0 {
			g.host.cfg.Send(msgs)
		}
		select {
		case ack := <-t.acks:
			if ack.ID != sender.ID() {
				continue
			}
			window.Ack(ack)
			if window.Done() {
				log.Debug("raft: snapshot sent", "bytes", sender.Size())
				g.endOutbound(t, false)
				return
			}
			if window.Acked() != acked {
				// Forward, or back to where a receiver that started over
				// wants it: either way the transfer goes on.
				acked, lastProgress = window.Acked(), time.Now()
			}
		case <-timer.C:
			if time.Since(lastProgress) > giveUpAfter {
				log.Warn("raft: snapshot transfer made no progress; abandoned", "acked", acked, "size", sender.Size())
				g.endOutbound(t, true)
				return
			}
			window.Timeout()
			timer.Reset(resendAfter)
		case <-t.stop:
			return
		}
	}
}

// receiveSnapshot assembles one snapshot from the leader into the store
// (snapshot.Receiver: in order, checked end to end, installed atomically),
// acknowledging every chunk, and hands the installed snapshot to the
// worker. Two election timeouts without a chunk abandon it.
func (g *Group) receiveSnapshot(in *inboundTransfer) {
	store := g.cfg.Snapshots
	idle := time.NewTimer(2 * g.cfg.ElectionTimeout)
	defer idle.Stop()
	var receiver *snapshot.Receiver
	defer func() {
		if receiver != nil {
			_ = receiver.Abandon()
		}
		g.mu.Lock()
		if g.snap.inbound == in {
			g.snap.inbound = nil
		}
		g.mu.Unlock()
	}()
	for {
		var c inboundChunk
		select {
		case c = <-in.chunks:
		case <-idle.C:
			return
		case <-in.stop:
			return
		}
		idle.Reset(2 * g.cfg.ElectionTimeout)
		if receiver == nil {
			if have, err := store.Get(c.chunk.ID.Index); err == nil && have.Meta.Term == c.chunk.ID.Term {
				// Already installed (a late duplicate, or a restart after
				// the install): acknowledge and let the core decide again.
				g.replySnapshot(in.from, c.term, snapshot.Ack{ID: c.chunk.ID, Next: c.chunk.Total, Done: true})
				g.receivedSnapshot(in, have.Meta)
				return
			}
			r, err := store.NewReceiver(c.chunk.ID, c.chunk.Total)
			if err != nil {
				g.host.cfg.Logger.Error("raft: receive snapshot", "group", g.id, "snapshot", c.chunk.ID, "err", err)
				return
			}
			receiver = r
		}
		ack, err := receiver.Receive(c.chunk)
		if err != nil && !errors.Is(err, snapshot.ErrWrongSnapshot) && !errors.Is(err, snapshot.ErrBadChunk) {
			g.host.cfg.Logger.Error("raft: receive snapshot", "group", g.id, "snapshot", c.chunk.ID, "err", err)
			return
		}
		g.replySnapshot(in.from, c.term, ack)
		if ack.Done {
			meta := receiver.Info().Meta
			receiver = nil
			g.receivedSnapshot(in, meta)
			return
		}
	}
}

func (g *Group) replySnapshot(to, term uint64, ack snapshot.Ack) {
	g.host.cfg.Send([]protocol.RaftMessage{{GroupID: g.id, From: g.host.cfg.NodeID, To: to,
		Type: protocol.MsgSnapshotAck, Term: term, Snapshot: snapshot.AppendAck(nil, ack)}})
}

func (g *Group) receivedSnapshot(in *inboundTransfer, meta snapshot.Meta) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return
	}
	g.snap.installs = append(g.snap.installs, receivedSnapshot{from: in.from, meta: meta})
	g.scheduleLocked()
}

// installSnapshot carries out the core's decision about a snapshot now in
// the store (§7): skip it, keep the log, or restore the state machine and
// reset the log, then report it to the core, which acknowledges the leader.
// A crash before the log reset leaves the snapshot in the store, newer than
// the applied state: the owner restores from it on restart.
func (g *Group) installSnapshot(rs receivedSnapshot) error {
	meta := rs.meta
	action := g.core.snapshotAction(meta.Index, meta.Term)
	if action == snapshotRestore {
		restorer, ok := g.cfg.StateMachine.(Restorer)
		resetter, ok2 := g.cfg.Log.(LogResetter)
		if !ok || !ok2 {
			g.host.cfg.Logger.Error("raft: cannot install a snapshot: the state machine is no Restorer or the log no LogResetter", "group", g.id)
			return nil
		}
		body, err := g.cfg.Snapshots.Open(meta.Index)
		if err != nil {
			// Pruned or damaged meanwhile: the leader sends it again.
			g.host.cfg.Logger.Error("raft: open received snapshot", "group", g.id, "snapshot", meta.ID(), "err", err)
			return nil
		}
		if !g.claimApply() {
			body.Close()
			return nil // closed meanwhile
		}
		err = restorer.Restore(meta, body)
		body.Close()
		if err != nil {
			return fmt.Errorf("raft: restore snapshot %v: %w", meta.ID(), err)
		}
		if err := resetter.ResetOffsets(meta.Index+1, meta.Term, meta.NextOffset); err != nil {
			return fmt.Errorf("raft: reset log after snapshot %v: %w", meta.ID(), err)
		}
		g.releaseApply(meta.Index)
		g.resolveRestored(meta, rs.from)
		g.core.restoreConfiguration(meta.Index, snapshotConfiguration(meta.Configuration))
		g.host.cfg.Logger.Info("raft: snapshot restored", "group", g.id, "snapshot", meta.ID())
	}
	g.core.snapshotInstalled(rs.from, meta.Index, meta.Term, action)
	return nil
}

// claimApply waits until no Apply runs and keeps the apply loop from
// starting (only this worker queues batches, and it is here). It waits on
// a condition the apply loop signals when it stops (applyStoppedLocked),
// and reports false when the group closed meanwhile.
func (g *Group) claimApply() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.snap.applyStopped == nil {
		g.snap.applyStopped = sync.NewCond(&g.mu)
	}
	for g.applying && !g.closed {
		g.snap.applyStopped.Wait()
	}
	if g.closed {
		return false
	}
	g.applying = true
	return true
}

// applyStoppedLocked wakes an install waiting in claimApply; the apply
// loop calls it when it stops, and stopSnapshots when the group closes
// (g.mu held).
func (g *Group) applyStoppedLocked() {
	if g.snap.applyStopped != nil {
		g.snap.applyStopped.Broadcast()
	}
}

// releaseApply records the restored state as applied through index. The
// AckApplied proposals waiting for batches it dropped are applied now: a
// restore happens only past the commit index, so they are all at or
// below index, and committed.
func (g *Group) releaseApply(index uint64) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.applyQueue = nil // everything queued was handed out at or below index
	g.applied = index
	g.applying = false
	for _, p := range g.applyWaiters {
		p.resolve(nil)
	}
	clear(g.applyWaiters)
	g.applyWaiters = g.applyWaiters[:0]
	g.releaseReadsLocked()
}

// resolveRestored resolves every pending proposal after a restore replaced
// the log: its entries are gone, and committed entries continue after
// meta.Index, so none would resolve. The core restores only when the log
// does not hold (meta.Index, meta.Term), and a pending proposal's entry is
// in the log (dropOverwritten removes the others), so:
//   - at or after meta.Index, the log conflicted with the committed one
//     there: the entry never commits (ErrProposalDropped);
//   - before it with a term above meta.Term: the same (terms do not
//     decrease along a log);
//   - before it with meta.Term: this replica led that term and appended
//     its entry before the one at meta.Index, which is committed, so it is
//     committed too (and applied: the state machine is at meta.Index);
//   - before it with a lower term: unknown; another leader may have
//     committed it (*NotLeaderError, as Wait documents).
func (g *Group) resolveRestored(meta snapshot.Meta, leader uint64) {
	for _, p := range g.pending[g.pendingHead:] {
		switch {
		case p.index >= meta.Index || p.term > meta.Term:
			p.resolve(ErrProposalDropped)
		case p.term == meta.Term:
			p.resolve(nil)
		default:
			p.resolve(&NotLeaderError{Leader: leader})
		}
	}
	clear(g.pending)
	g.pending, g.pendingHead = g.pending[:0], 0
}
