package raft

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/raftmq/raftmq/protocol"
	"github.com/raftmq/raftmq/segmentlog"
	"github.com/raftmq/raftmq/snapshot"
)

// Snapshots, compaction and InstallSnapshot in the simulation (issue 4).
//
// Every node keeps a snapshot.Store on its crashable file system next to
// its segmentlog. Now and then a node snapshots its applied state (the
// digest of the applied entries, the last written value for the reads,
// the configuration as of the index, padding so a transfer takes several
// chunks), deletes the log segments the snapshot covers and prunes old
// snapshots. A leader asked for a snapshot streams its newest one the way
// snapshot_driver.go does — snapshot.Sender and SendWindow, chunks and acks
// as MsgSnapshot/MsgSnapshotAck through the faulty network, resend on a
// virtual-time timeout, given up after two election timeouts without
// progress, abandoned when leadership changes — and the follower receives
// it with a snapshot.Receiver, asks the core (skip, keep log, restore),
// restores its state machine, resets its log and reports the install.
// Chunks and acks are lost and duplicated more often than other messages,
// and a receiving node may crash in the middle of the transfer, after the
// store installed the snapshot, or after the log reset but before the core
// heard of it. A restarting node does what an owner must: finish an
// interrupted install (reset the log when the newest snapshot is past the
// log's end or disagrees with the log's term at its index) and restore its
// state machine from the newest snapshot. A restored state must equal the
// committed prefix at its index; everything else is checked as in every
// run.

// simSnapshotChunk is the largest encoded chunk: small, so that a transfer
// takes several chunks and losses hit the middle of one.
const simSnapshotChunk = snapshot.ChunkHeaderSize + 96

// simSnapshotPadding pads every snapshot body.
const simSnapshotPadding = 600

type simNodeSnapshots struct {
	seg   *segmentlog.Log
	store *snapshot.Store
	out   map[uint64]*simOutbound // by follower, while leading
	term  uint64                  // the leader term of out
	in    *simInbound
	// waiting: followers that need a snapshot the store cannot serve yet.
	waiting map[uint64]bool
	gen     uint64
}

type simOutbound struct {
	to, term     uint64
	gen          uint64
	sender       *snapshot.Sender
	window       *snapshot.SendWindow
	lastProgress time.Duration
	acked        uint64
}

type simInbound struct {
	from      uint64
	id        snapshot.ID
	receiver  *snapshot.Receiver
	lastChunk time.Duration
}

// startSnapshots opens the node's snapshot store, finishes an install a
// crash interrupted and restores the state machine from the newest
// snapshot, filling in the core's configuration.
func (s *sim) startSnapshots(n *simNode, cfg *coreConfig) error {
	n.snap.out, n.snap.in, n.snap.waiting = nil, nil, nil
	n.appliedTerm, n.appliedConf = 0, protocol.RaftConfiguration{}
	store, err := snapshot.OpenStore(n.fs, "snap")
	if err != nil {
		return err
	}
	n.snap.store = store
	if _, ok := store.Latest(); !ok {
		if n.log.FirstIndex() > 1 {
			s.violate("snapshot", "node %d: log starts at %d without a snapshot", n.id, n.log.FirstIndex())
		}
		return nil
	}
	seg := n.snap.seg
	latest, ok, err := ResumeSnapshotInstall(store, seg)
	if err != nil {
		return err
	}
	if !ok {
		s.violate("snapshot", "node %d: no snapshot reaches the log's first index %d", n.id, seg.FirstIndex())
		return nil
	}
	meta := latest.Meta
	// The prefix the snapshot covers is the committed one; what the log
	// holds after it (none when it was reset) keeps its hashes.
	chain := s.committedChain(n, meta.Index)
	if uint64(len(n.chain)) > meta.Index+1 && seg.LastIndex() > meta.Index {
		chain = append(chain, n.chain[meta.Index+1:]...)
	}
	n.chain = chain
	if !s.restoreState(n, meta) {
		return nil
	}
	cfg.Applied = meta.Index
	cfg.Configuration = snapshotConfiguration(meta.Configuration)
	cfg.ConfigurationIndex = meta.Index
	return nil
}

// committedChain returns the prefix hashes of the committed log up to index.
func (s *sim) committedChain(n *simNode, index uint64) []uint64 {
	chain := make([]uint64, index+1)
	for i := uint64(1); i <= index; i++ {
		e, ok := s.committed[i]
		if !ok {
			s.violate("snapshot", "node %d: index %d of a snapshot was never applied anywhere", n.id, i)
			return chain[:i]
		}
		chain[i] = s.chainAt[[2]uint64{i, e.term}]
	}
	return chain
}

// snapshotBody encodes the node's state machine.
func snapshotBody(n *simNode) []byte {
	b := binary.LittleEndian.AppendUint64(nil, n.appliedHash)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(n.reader.value)))
	b = append(b, n.reader.value...)
	for i := range simSnapshotPadding {
		b = append(b, byte(n.appliedHash>>(8*(i%8)))^byte(i))
	}
	return b
}

// restoreState replaces the node's state machine with the snapshot's and
// checks it is the committed state at its index.
func (s *sim) restoreState(n *simNode, meta snapshot.Meta) bool {
	r, err := n.snap.store.Open(meta.Index)
	if err != nil {
		s.violate("snapshot", "node %d: open snapshot %v: %v", n.id, meta.ID(), err)
		return false
	}
	body, err := io.ReadAll(r)
	r.Close()
	if err != nil || len(body) < 12 {
		s.violate("snapshot", "node %d: read snapshot %v: %v (%d bytes)", n.id, meta.ID(), err, len(body))
		return false
	}
	hash := binary.LittleEndian.Uint64(body)
	valueLen := binary.LittleEndian.Uint32(body[8:])
	c, ok := s.committed[meta.Index]
	if !ok || c.term != meta.Term || hash != s.chainAt[[2]uint64{meta.Index, c.term}] {
		s.violate("snapshot state", "node %d: snapshot %v holds a state other than the committed prefix (committed term %d)", n.id, meta.ID(), c.term)
		return false
	}
	n.appliedHash, n.appliedTerm, n.lastApplied = hash, meta.Term, meta.Index
	n.appliedConf = snapshotConfiguration(meta.Configuration)
	n.reader.value = string(body[12 : 12+valueLen])
	s.stats.restores++
	return true
}

// takeSnapshots lets every live node snapshot its applied state when it
// applied enough since its newest snapshot, then compact and prune.
func (s *sim) takeSnapshots() {
	for _, n := range s.nodes {
		if !n.alive || n.snap.store == nil || s.rand.IntN(3) == 0 {
			continue
		}
		latest, ok := n.snap.store.Latest()
		if (ok && n.lastApplied < latest.Meta.Index+16) || n.lastApplied == 0 {
			continue
		}
		conf := n.appliedConf
		if len(conf.Voters) == 0 || s.cfg.staleSnapshotConf {
			conf = protocol.RaftConfiguration{Voters: s.bootstrap}
		}
		w, err := n.snap.store.Create(snapshot.Meta{
			Index: n.lastApplied, Term: n.appliedTerm, NextOffset: n.snap.seg.NextOffset(),
			Configuration: snapshot.Configuration{Voters: conf.Voters, OutgoingVoters: conf.OutgoingVoters, Learners: conf.Learners},
			Created:       time.Unix(0, int64(s.now)),
		})
		if err == nil {
			_, err = w.Write(snapshotBody(n))
		}
		if err == nil {
			_, err = w.Commit()
		}
		if err != nil {
			s.violate("snapshot", "node %d: take snapshot at %d: %v", n.id, n.lastApplied, err)
			return
		}
		s.stats.snapshots++
		if s.rand.IntN(4) != 0 {
			deleted, err := n.snap.seg.DeleteBefore(n.lastApplied + 1)
			if err != nil {
				s.violate("snapshot", "node %d: compact before %d: %v", n.id, n.lastApplied+1, err)
				return
			}
			s.stats.compactions += deleted
		}
		if _, err := n.snap.store.Prune(2, n.snap.seg.FirstIndex()-1); err != nil {
			s.violate("snapshot", "node %d: prune: %v", n.id, err)
			return
		}
		if len(n.snap.waiting) > 0 && n.core.role == RoleLeader {
			var reqs []snapshotRequest
			for to := range n.snap.waiting {
				reqs = append(reqs, snapshotRequest{to: to})
			}
			slices.SortFunc(reqs, func(a, b snapshotRequest) int { return int(a.to) - int(b.to) })
			clear(n.snap.waiting)
			s.startSnapshotTransfers(n, reqs)
			s.drive(n)
		}
	}
}

// startSnapshotTransfers serves a leader's snapshot requests like
// Group.startSnapshotTransfers: stream the newest stored snapshot unless a
// transfer to that follower runs; wait for one when the store has none the
// log continues from.
func (s *sim) startSnapshotTransfers(n *simNode, reqs []snapshotRequest) {
	c := n.core
	if c.role != RoleLeader || n.snap.store == nil {
		return
	}
	if n.snap.term != c.term {
		s.abandonOutbound(n)
		n.snap.term = c.term
	}
	info, ok := n.snap.store.Latest()
	usable := ok && info.Meta.Index+1 >= n.log.FirstIndex() && info.Meta.Index <= c.commit
	for _, req := range reqs {
		if n.snap.out[req.to] != nil {
			continue
		}
		if !usable {
			if n.snap.waiting == nil {
				n.snap.waiting = map[uint64]bool{}
			}
			n.snap.waiting[req.to] = true
			continue
		}
		delete(n.snap.waiting, req.to)
		sender, err := n.snap.store.NewSender(info.Meta.Index, simSnapshotChunk)
		if err != nil {
			s.violate("snapshot", "node %d: open snapshot %v to send: %v", n.id, info.Meta.ID(), err)
			return
		}
		n.snap.gen++
		t := &simOutbound{to: req.to, term: c.term, gen: n.snap.gen, sender: sender, lastProgress: s.now,
			window: snapshot.NewSendWindow(sender.Size(), sender.MaxChunkLen(), snapshotInflightChunks)}
		if n.snap.out == nil {
			n.snap.out = map[uint64]*simOutbound{}
		}
		n.snap.out[req.to] = t
		s.stats.transfers++
		s.pumpSnapshot(n, t)
		s.scheduleSnapshotTimer(n, t)
	}
}

func (s *sim) scheduleSnapshotTimer(n *simNode, t *simOutbound) {
	resendAfter := max(s.cfg.electionTimeout/2, s.cfg.heartbeat)
	s.schedule(&simEvent{at: s.now + resendAfter, kind: evSnapshotTimer, node: n.id, incarnation: n.incarnation, transfer: t.gen, msg: protocol.RaftMessage{To: t.to}})
}

// pumpSnapshot sends the chunks the window allows.
func (s *sim) pumpSnapshot(n *simNode, t *simOutbound) {
	for offset, ok := t.window.Next(); ok; offset, ok = t.window.Next() {
		chunk, err := t.sender.AppendChunk(nil, offset)
		if err != nil {
			s.violate("snapshot", "node %d: read chunk at %d: %v", n.id, offset, err)
			return
		}
		s.send(protocol.RaftMessage{From: n.id, To: t.to, Type: protocol.MsgSnapshot, Term: t.term, Snapshot: chunk})
	}
}

// snapshotTimer resends from the acknowledged offset, or gives the
// transfer up after two election timeouts without progress.
func (s *sim) snapshotTimer(e *simEvent) {
	n := s.node(e.node)
	if n == nil || !n.alive || n.incarnation != e.incarnation {
		return
	}
	t := n.snap.out[e.msg.To]
	if t == nil || t.gen != e.transfer {
		return
	}
	if s.now-t.lastProgress > 2*s.cfg.electionTimeout {
		s.endOutbound(n, t)
		n.core.snapshotFailed(t.to)
		s.drive(n)
		return
	}
	t.window.Timeout()
	s.pumpSnapshot(n, t)
	s.scheduleSnapshotTimer(n, t)
}

func (s *sim) endOutbound(n *simNode, t *simOutbound) {
	t.sender.Close()
	delete(n.snap.out, t.to)
}

func (s *sim) abandonOutbound(n *simNode) {
	for _, t := range n.snap.out {
		s.endOutbound(n, t)
	}
}

// checkSnapshotLeadership abandons a node's outbound transfers once it no
// longer leads their term.
func (s *sim) checkSnapshotLeadership(n *simNode) {
	if !n.alive {
		return
	}
	if len(n.snap.out) > 0 && (n.core.role != RoleLeader || n.core.term != n.snap.term) {
		s.abandonOutbound(n)
	}
	if n.core.role != RoleLeader {
		clear(n.snap.waiting)
	}
}

// stepSnapshot handles a chunk or an ack, as Group.stepSnapshotLocked and
// the transfer goroutines do.
func (s *sim) stepSnapshot(n *simNode, m *protocol.RaftMessage) {
	if m.To != n.id || n.snap.store == nil {
		return
	}
	if m.Type == protocol.MsgSnapshotAck {
		t := n.snap.out[m.From]
		if t == nil || t.term != m.Term {
			return
		}
		ack, err := snapshot.DecodeAck(m.Snapshot)
		if err != nil || ack.ID != t.sender.ID() {
			return
		}
		t.window.Ack(ack)
		if t.window.Done() {
			s.endOutbound(n, t)
			return
		}
		if t.window.Acked() > t.acked {
			t.acked, t.lastProgress = t.window.Acked(), s.now
		}
		s.pumpSnapshot(n, t)
		return
	}
	c := n.core
	if m.Term < c.term || (c.role == RoleLeader && m.Term == c.term) {
		return
	}
	chunk, err := snapshot.DecodeChunk(m.Snapshot)
	if err != nil {
		s.violate("snapshot", "node %d: chunk from %d does not decode: %v", n.id, m.From, err)
		return
	}
	in := n.snap.in
	if in != nil && (in.from != m.From || in.id != chunk.ID || s.now-in.lastChunk > 2*s.cfg.electionTimeout) {
		_ = in.receiver.Abandon()
		n.snap.in, in = nil, nil
	}
	reply := func(ack snapshot.Ack) {
		s.send(protocol.RaftMessage{From: n.id, To: m.From, Type: protocol.MsgSnapshotAck, Term: m.Term, Snapshot: snapshot.AppendAck(nil, ack)})
	}
	if in == nil {
		if have, err := n.snap.store.Get(chunk.ID.Index); err == nil && have.Meta.Term == chunk.ID.Term {
			reply(snapshot.Ack{ID: chunk.ID, Next: chunk.Total, Done: true})
			s.installSnapshot(n, m.From, have.Meta)
			return
		}
		r, err := n.snap.store.NewReceiver(chunk.ID, chunk.Total)
		if err != nil {
			s.violate("snapshot", "node %d: new receiver for %v: %v", n.id, chunk.ID, err)
			return
		}
		in = &simInbound{from: m.From, id: chunk.ID, receiver: r}
		n.snap.in = in
	}
	in.lastChunk = s.now
	ack, err := in.receiver.Receive(chunk)
	if err != nil && !errors.Is(err, snapshot.ErrWrongSnapshot) && !errors.Is(err, snapshot.ErrBadChunk) {
		s.violate("snapshot", "node %d: receive %v: %v", n.id, chunk.ID, err)
		return
	}
	if !ack.Done && s.faults && s.rand.Float64() < s.cfg.installCrashProb/4 {
		s.stats.installCrashes++
		s.crash(n) // in the middle of a transfer
		return
	}
	reply(ack)
	if ack.Done {
		n.snap.in = nil
		s.installSnapshot(n, m.From, in.receiver.Info().Meta)
	}
}

// installSnapshot carries out the core's decision about a snapshot in the
// store, like Group.installSnapshot, with crashes at its steps.
func (s *sim) installSnapshot(n *simNode, from uint64, meta snapshot.Meta) {
	crashHere := func() bool {
		if s.faults && s.rand.Float64() < s.cfg.installCrashProb {
			s.stats.installCrashes++
			s.crash(n)
			return true
		}
		return false
	}
	action := n.core.snapshotAction(meta.Index, meta.Term)
	if action == snapshotRestore {
		if crashHere() { // installed in the store, state machine not restored
			return
		}
		if !s.restoreState(n, meta) {
			return
		}
		if err := n.snap.seg.ResetOffsets(meta.Index+1, meta.Term, meta.NextOffset); err != nil {
			s.violate("snapshot", "node %d: reset log after %v: %v", n.id, meta.ID(), err)
			return
		}
		n.chain = s.committedChain(n, meta.Index)
		if crashHere() { // log reset, the core (and the leader) not told
			return
		}
		n.core.restoreConfiguration(meta.Index, snapshotConfiguration(meta.Configuration))
		s.serveReads(n)
	}
	n.core.snapshotInstalled(from, meta.Index, meta.Term, action)
	s.drive(n)
}

// replaceNode gives a server outside every configuration an empty disk and
// a new id: the machine of a removed server reused for a new one, which
// the leader can then add as a learner, catch up and promote.
func (s *sim) replaceNode(leader *simNode) bool {
	c := leader.core
	if c.confIndex() > c.commit || len(c.conf.OutgoingVoters) > 0 {
		return false // a removal that is not committed could still be reverted
	}
	var candidates []*simNode
	for _, n := range s.nodes {
		if !slices.Contains(leader.core.members, n.id) {
			candidates = append(candidates, n)
		}
	}
	if len(candidates) == 0 {
		return false
	}
	n := candidates[s.rand.IntN(len(candidates))]
	if n.alive {
		s.crash(n) // its restart event (by the old id) starts the new server
	}
	s.lastID++
	old := n.id
	n.id = s.lastID
	n.fresh = true
	n.fs = vfs.NewCrashableMem()
	n.stable = &memStable{forgetVote: s.cfg.forgetVote}
	n.chain = []uint64{0}
	n.lastCommit = 0
	s.byID[n.id] = n
	s.voters[slices.Index(s.voters, old)] = n.id
	s.stats.replacements++
	return true
}

// TestSimulationWithSnapshotsAndMembership combines everything: faults,
// crashes, random membership changes (empty-disk replacements included),
// compactions, snapshot installs with lost and duplicated chunks and
// crashes in the middle of installs, and ReadIndex reads checked for
// linearizability.
func TestSimulationWithSnapshotsAndMembership(t *testing.T) {
	var total simStats
	start := time.Now()
	var seeds []uint64
	for i, seed := range simCorpus {
		if i%(3*simCorpusScale) == 0 {
			seeds = append(seeds, 100+seed)
		}
	}
	if *flagSimSeed != 0 {
		seeds = []uint64{*flagSimSeed}
	}
	for range *flagSimSeeds {
		seeds = append(seeds, rand.Uint64())
	}
	for _, seed := range seeds {
		cfg := simSnapshotConfig(seed)
		stats := runSimSeedNamed(t, cfg, "TestSimulationWithSnapshotsAndMembership")
		total.add(stats)
		if t.Failed() {
			t.FailNow()
		}
	}
	exercised := total.restores > 0 && total.transfers > 0 && total.compactions > 0
	if simCorpusScale == 1 { // the full run (the race detector's is shorter)
		exercised = exercised && total.replacements > 0 && total.installCrashes > 0
	}
	if !exercised {
		t.Fatalf("the run did not exercise snapshots: %+v", total)
	}
	fmt.Printf("raft snapshot simulation: seeds=%d steps=%d crashes=%d elections=%d committed=%d membership=%d replacements=%d snapshots=%d compactions=%d transfers=%d restores=%d installCrashes=%d virtual=%v wall=%v\n",
		len(seeds), total.steps, total.crashes, total.elections, total.committed, total.membershipChanges, total.replacements,
		total.snapshots, total.compactions, total.transfers, total.restores, total.installCrashes,
		total.virtual.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
}

func simSnapshotConfig(seed uint64) simConfig {
	cfg := defaultSimConfig(seed, 5)
	cfg.membershipEvery = 30 * time.Millisecond
	cfg.replaceNodes = true
	cfg.snapshotEvery = 20 * time.Millisecond
	cfg.chunkDropProb = 0.05
	cfg.chunkDuplicateProb = 0.05
	cfg.installCrashProb = 0.1
	return cfg
}

// TestSimulationReadIndexIsLinearizableWithSnapshots checks ReadIndex reads
// with porcupine while nodes compact, restore snapshots (their read state
// included), crash mid-install and change membership: shorter runs, so that
// the histories stay checkable in seconds.
func TestSimulationReadIndexIsLinearizableWithSnapshots(t *testing.T) {
	checked, reads, restores := 0, 0, 0
	// Whether a seed restores a snapshot depends on every detail of the
	// run (message sizes included), and so does how long its history
	// takes to check: go on past the planned seeds, a few at most, until
	// one restored and one history was checked in time.
	planned := uint64(max(1, 3/simCorpusScale))
	for seed := uint64(1); seed <= planned || ((restores == 0 || checked == 0) && seed <= planned+6); seed++ {
		cfg := simSnapshotConfig(200 + seed)
		// The planned seeds' histories with a node campaigning early took
		// porcupine over 10 s each (201, 202; 3 s without), which the
		// other simulations' checks cover: kept out here.
		cfg.campaignEarly = 0
		cfg.steps = 4000
		cfg.snapshotEvery = 10 * time.Millisecond
		cfg.readEvery = 2 * time.Millisecond
		cfg.proposeEvery = 3 * time.Millisecond
		s := newSim(cfg)
		stats, v := s.run()
		if v != nil {
			t.Fatalf("seed %d: %v", cfg.seed, v)
		}
		restores += stats.restores
		start := time.Now()
		res, n := s.linearizable(10 * time.Second)
		t.Logf("seed %d: %d reads, check %v in %v", cfg.seed, n, res, time.Since(start).Round(time.Millisecond))
		switch res {
		case porcupine.Illegal:
			t.Fatalf("seed %d: reads are not linearizable (%d reads)", cfg.seed, n)
		case porcupine.Ok:
			checked++
			reads += n
		default:
			t.Logf("seed %d: linearizability check timed out", cfg.seed)
		}
	}
	if checked == 0 || restores == 0 {
		t.Fatalf("%d histories checked, %d snapshot restores: the test needs both", checked, restores)
	}
	t.Logf("%d histories, %d reads linearizable; %d snapshot restores", checked, reads, restores)
}

// TestSimulationCatchesSnapshotsWithAStaleConfiguration shows the
// configuration check bites: snapshots that record the bootstrap
// configuration instead of the one in effect at their index give a
// restored node another configuration than the nodes holding the log.
func TestSimulationCatchesSnapshotsWithAStaleConfiguration(t *testing.T) {
	cfg := simSnapshotConfig(0)
	cfg.steps = 6000
	cfg.readEvery = 0
	cfg.staleSnapshotConf = true
	seed, v := findViolation(cfg, 20, "configuration per prefix")
	if v == nil {
		t.Fatalf("stale snapshot configurations: no violation within 20 seeds")
	}
	t.Logf("seed %d: %v", seed, v)
}
