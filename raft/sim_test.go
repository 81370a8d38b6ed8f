package raft

import (
	"container/heap"
	"flag"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/raftmq/raftmq/protocol"
	"github.com/raftmq/raftmq/segmentlog"
)

// The deterministic simulation: whole clusters of cores on a virtual clock,
// driven exactly as the Host drives them (persistReady, then send, sync in
// the background, durable notices with (term, index)), with a faulty network,
// partitions and crashes that lose unsynced data on segmentlog over Pebble's
// crashable MemFS. Every random choice comes from one seeded generator, so a
// seed replays a run exactly.

var (
	flagSimSeeds = flag.Int("sim.seeds", 0, "random seeds to run per cluster size in addition to the fixed corpus (soak)")
	flagSimSteps = flag.Int("sim.steps", 0, "steps per seed (0: default)")
	flagSimSeed  = flag.Uint64("sim.seed", 0, "run only this seed (reproduce a failure)")
	flagSimNodes = flag.Int("sim.nodes", 0, "with -sim.seed: the cluster size")
)

type simConfig struct {
	seed  uint64
	nodes int
	steps int

	// Faults. Probabilities are per fault round (every faultEvery) or per
	// message.
	faultEvery      time.Duration
	crashProb       float64
	partitionProb   float64
	restartMin      time.Duration
	restartMax      time.Duration
	dropProb        float64
	duplicateProb   float64
	minDelay        time.Duration
	maxDelay        time.Duration
	diskMin         time.Duration
	diskMax         time.Duration
	proposeEvery    time.Duration
	electionTimeout time.Duration
	heartbeat       time.Duration
	disablePreVote  bool
	// campaignEarly is the node configured to CampaignEarly (0: none).
	campaignEarly uint64

	// Faulty storage, to show that the checkers bite.
	forgetVote bool // the stable store loses the vote on restart
	lyingLog   bool // the log reports entries durable before syncing them
	memLogOnly bool // use the in-memory log instead of segmentlog
	// noRestartCheck skips the per-node check that a restart keeps the
	// committed prefix, so a test can show the end-to-end checks catch a
	// lying log on their own.
	noRestartCheck bool

	// readEvery issues a ReadIndex read on a random live node this often
	// (0: no reads); the reads and writes are checked for linearizability
	// (sim_read_test.go). staleReads serves reads from the node's applied
	// state without ReadIndex: the broken read path the check must catch.
	readEvery  time.Duration
	staleReads bool

	// membershipEvery makes the leader start a random membership change
	// this often (0: none; sim_membership_test.go). replaceNodes adds the
	// operation that replaces a server outside the configuration with an
	// empty-disk server under a new id.
	membershipEvery time.Duration
	replaceNodes    bool

	// snapshotEvery makes nodes take snapshots of their applied state and
	// compact their logs this often, and leaders stream snapshots to
	// followers that need compacted entries (0: none;
	// sim_snapshot_test.go). chunkDropProb and chunkDuplicateProb add
	// losses and duplicates of snapshot chunks and acks; installCrashProb
	// crashes a receiving node in the middle of an install.
	snapshotEvery      time.Duration
	chunkDropProb      float64
	chunkDuplicateProb float64
	installCrashProb   float64
	// staleSnapshotConf makes snapshots record the bootstrap configuration
	// instead of the one applied: the broken owner the checks must catch.
	staleSnapshotConf bool
	// newWindow wraps a node's log the way the driver does (window.go);
	// nil: an entryWindow of 1-8 KiB (by seed, so that it overflows, and
	// reads straddle it). A test passes a broken window here.
	newWindow func(log LogStorage, seed uint64) LogStorage
}

func defaultSimConfig(seed uint64, nodes int) simConfig {
	return simConfig{
		seed:            seed,
		nodes:           nodes,
		steps:           simDefaultSteps,
		faultEvery:      50 * time.Millisecond,
		crashProb:       0.08,
		partitionProb:   0.10,
		restartMin:      20 * time.Millisecond,
		restartMax:      600 * time.Millisecond,
		dropProb:        0.02,
		duplicateProb:   0.02,
		minDelay:        500 * time.Microsecond,
		maxDelay:        8 * time.Millisecond,
		diskMin:         200 * time.Microsecond,
		diskMax:         4 * time.Millisecond,
		proposeEvery:    time.Millisecond,
		electionTimeout: 100 * time.Millisecond,
		heartbeat:       20 * time.Millisecond,
		campaignEarly:   seed % 4, // nodes 1-3 in turn, none every fourth seed
	}
}

type simStats struct {
	steps, crashes, partitions, elections, committed int
	membershipChanges                                int
	snapshots, compactions, restores, installCrashes int
	transfers, replacements                          int
	virtual                                          time.Duration
}

func (s *simStats) add(o simStats) {
	s.steps += o.steps
	s.crashes += o.crashes
	s.partitions += o.partitions
	s.elections += o.elections
	s.committed += o.committed
	s.membershipChanges += o.membershipChanges
	s.snapshots += o.snapshots
	s.compactions += o.compactions
	s.restores += o.restores
	s.installCrashes += o.installCrashes
	s.transfers += o.transfers
	s.replacements += o.replacements
	s.virtual += o.virtual
}

// simViolation is an invariant the simulation found broken.
type simViolation struct {
	kind   string // "election safety", "lost acknowledged proposal", ...
	detail string
	at     time.Duration
	step   int
}

func (v *simViolation) Error() string {
	return fmt.Sprintf("%s at step %d (virtual %v): %s", v.kind, v.step, v.at, v.detail)
}

type simEventKind uint8

const (
	evDeliver simEventKind = iota
	evSyncDone
	evRestart
	evHeal
	evFault
	evPropose
	evRead
	evMembership
	evSnapshot
	evSnapshotTimer
)

type simEvent struct {
	at          time.Duration
	seq         uint64
	kind        simEventKind
	node        uint64
	incarnation int
	mark        durableMark
	msg         protocol.RaftMessage
	transfer    uint64 // evSnapshotTimer: the transfer's generation
}

type simEventHeap []*simEvent

func (h simEventHeap) Len() int { return len(h) }
func (h simEventHeap) Less(i, j int) bool {
	if h[i].at != h[j].at {
		return h[i].at < h[j].at
	}
	return h[i].seq < h[j].seq
}
func (h simEventHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *simEventHeap) Push(x any)   { *h = append(*h, x.(*simEvent)) }
func (h *simEventHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	*h = old[:len(old)-1]
	return e
}

// lyingLog reports entries durable without syncing them: only every
// fourth Sync really syncs.
type lyingLog struct {
	*segmentlog.Log
	calls int
}

func (l *lyingLog) Sync() (uint64, error) {
	l.calls++
	if l.calls%4 == 0 {
		return l.Log.Sync()
	}
	return l.Log.LastIndex(), nil
}

type simNode struct {
	id          uint64
	alive       bool
	incarnation int
	core        *core
	log         LogStorage
	fs          *vfs.MemFS
	memLog      *memLog
	stable      *memStable
	chain       []uint64 // chain[i] = hash of the log prefix up to index i
	lastApplied uint64
	lastCommit  uint64
	appended    durableMark
	syncing     bool
	leaderTerm  uint64 // term this node was last seen leading
	pending     map[uint64]simProposal
	reader      simReader
	// The state machine: a digest of the applied entries (the prefix hash
	// of the log at lastApplied), the term of the last one and the newest
	// configuration applied; snapshots hold these.
	appliedHash uint64
	appliedTerm uint64
	appliedConf protocol.RaftConfiguration
	// fresh marks a server that started with an empty disk under a new id:
	// it has no bootstrap configuration.
	fresh bool
	// Snapshot state (sim_snapshot_test.go).
	snap simNodeSnapshots
}

type simProposal struct {
	term uint64
	data string
}

type simEntry struct {
	term uint64
	data string
}

type sim struct {
	cfg    simConfig
	rand   *rand.Rand
	now    time.Duration
	events simEventHeap
	seq    uint64
	nodes  []*simNode
	voters []uint64 // ids of the nodes now (a replaced node gets a new id)
	// bootstrap is the initial configuration; nodes that started empty
	// under a new id have none.
	bootstrap []uint64
	byID      map[uint64]*simNode // every id a node ever had
	lastID    uint64
	step      int
	stats     simStats
	err       *simViolation

	blocked     map[[2]uint64]bool
	partitioned bool
	faults      bool

	leaders     map[uint64]uint64    // term -> leader
	chainAt     map[[2]uint64]uint64 // (index, term) -> prefix hash
	committed   map[uint64]simEntry  // index -> committed entry
	maxCommit   uint64               // highest index known committed
	acked       map[uint64]simEntry  // index -> acknowledged proposal
	maxAcked    uint64
	proposalSeq int
	history     simHistory
	// confByPrefix: prefix hash of a log -> the configuration (encoded)
	// a node whose log ends there uses.
	confByPrefix map[uint64]string
}

func newSim(cfg simConfig) *sim {
	s := &sim{
		cfg:       cfg,
		rand:      rand.New(rand.NewPCG(cfg.seed, uint64(cfg.nodes))),
		blocked:   map[[2]uint64]bool{},
		faults:    true,
		leaders:   map[uint64]uint64{},
		chainAt:   map[[2]uint64]uint64{},
		committed: map[uint64]simEntry{},
		acked:     map[uint64]simEntry{},
	}
	for i := range cfg.nodes {
		s.voters = append(s.voters, uint64(i+1))
	}
	s.bootstrap = slices.Clone(s.voters)
	s.lastID = uint64(cfg.nodes)
	s.byID = map[uint64]*simNode{}
	for _, id := range s.voters {
		n := &simNode{id: id, stable: &memStable{forgetVote: cfg.forgetVote}, chain: []uint64{0}}
		s.byID[id] = n
		if cfg.memLogOnly {
			n.memLog = newMemLog()
			n.memLog.syncLies = cfg.lyingLog
		} else {
			n.fs = vfs.NewCrashableMem()
		}
		s.nodes = append(s.nodes, n)
		if err := s.start(n); err != nil {
			panic(err)
		}
	}
	s.schedule(&simEvent{at: cfg.faultEvery, kind: evFault})
	s.schedule(&simEvent{at: cfg.proposeEvery, kind: evPropose})
	if cfg.readEvery > 0 {
		s.schedule(&simEvent{at: cfg.readEvery, kind: evRead})
	}
	if cfg.membershipEvery > 0 {
		s.schedule(&simEvent{at: cfg.membershipEvery, kind: evMembership})
	}
	if cfg.snapshotEvery > 0 {
		s.schedule(&simEvent{at: cfg.snapshotEvery, kind: evSnapshot})
	}
	return s
}

// node returns the node that has or had id (nil for an unknown id).
func (s *sim) node(id uint64) *simNode { return s.byID[id] }

func (s *sim) schedule(e *simEvent) {
	s.seq++
	e.seq = s.seq
	heap.Push(&s.events, e)
}

func (s *sim) between(lo, hi time.Duration) time.Duration {
	if hi <= lo {
		return lo
	}
	return lo + time.Duration(s.rand.Int64N(int64(hi-lo)))
}

func (s *sim) violate(kind, format string, args ...any) {
	if s.err == nil {
		s.err = &simViolation{kind: kind, detail: fmt.Sprintf(format, args...), at: s.now, step: s.step}
	}
}

// start opens a node's storage (what survived) and a fresh core on it.
func (s *sim) start(n *simNode) error {
	if n.memLog != nil {
		n.log = n.memLog
	} else {
		opts := segmentlog.DefaultOptions()
		if s.cfg.snapshotEvery > 0 {
			opts.SegmentMaxBytes = 1 << 10 // small segments, so compaction deletes some
		}
		l, err := segmentlog.Open(n.fs, "log", opts)
		if err != nil {
			return err
		}
		n.snap.seg = l
		if s.cfg.lyingLog {
			n.log = &lyingLog{Log: l}
		} else {
			n.log = l
		}
	}
	if s.cfg.newWindow != nil {
		n.log = s.cfg.newWindow(n.log, s.cfg.seed)
	} else {
		n.log = newEntryWindow(n.log, 1<<10<<(s.cfg.seed%4))
	}
	hs, _ := n.stable.Load()
	n.alive = true
	n.incarnation++
	n.syncing = false
	n.appended = durableMark{}
	n.pending = map[uint64]simProposal{}
	n.lastApplied = 0
	n.leaderTerm = 0
	n.reader = simReader{}
	n.appliedHash = 0
	voters := s.bootstrap
	if n.fresh {
		voters = nil // an empty-disk server joins through the leader
	}
	cfg := coreConfig{
		ID: n.id, Voters: voters, Log: n.log, HardState: hs,
		ElectionTimeout: s.cfg.electionTimeout, HeartbeatInterval: s.cfg.heartbeat,
		MaxAppendBytes: 4 << 10, MaxInflightMessages: 8, MaxInflightBytes: 32 << 10, MaxApplyBytes: 8 << 10,
		DisablePreVote: s.cfg.disablePreVote, CampaignEarly: n.id == s.cfg.campaignEarly, Seed: s.rand.Uint64(),
	}
	if s.cfg.snapshotEvery > 0 {
		if err := s.startSnapshots(n, &cfg); err != nil {
			return err
		}
	}
	n.core = newCore(cfg, s.now)
	n.lastCommit = n.core.commit
	return nil
}

var simTraceIndex uint64

func (s *sim) crash(n *simNode) {
	if simTraceIndex != 0 {
		fmt.Printf("%v crash node %d (last %d, commit %d, durable %d)\n", s.now, n.id, n.log.LastIndex(), n.core.commit, n.core.durable)
	}
	n.alive = false
	n.incarnation++
	s.stats.crashes++
	if n.memLog != nil {
		n.memLog = n.memLog.crashClone()
	} else {
		n.fs = n.fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 0})
	}
	n.stable = n.stable.crashClone()
	s.schedule(&simEvent{at: s.now + s.between(s.cfg.restartMin, s.cfg.restartMax), kind: evRestart, node: n.id})
}

func (s *sim) restart(n *simNode) {
	if err := s.start(n); err != nil {
		s.violate("storage", "node %d: reopen log: %v", n.id, err)
		return
	}
	last := n.log.LastIndex()
	// Entries a node committed were durable; a crash must not lose them.
	if last < n.lastCommit && !s.cfg.noRestartCheck {
		s.violate("lost committed entries", "node %d restarted with last index %d below its commit index %d", n.id, last, n.lastCommit)
	}
	n.chain = n.chain[:min(uint64(len(n.chain)), last+1)]
	for uint64(len(n.chain)) <= last {
		// Cannot happen: a restarted log is a prefix of what was appended.
		s.violate("storage", "node %d: log grew across a crash", n.id)
		return
	}
	n.lastCommit = n.core.commit
	if simTraceIndex != 0 {
		fmt.Printf("%v restart node %d (last %d, commit %d, hs %+v)\n", s.now, n.id, last, n.core.commit, n.stable.hs)
	}
}

// run executes the simulation and the final liveness phase.
func (s *sim) run() (simStats, *simViolation) {
	for s.step < s.cfg.steps && s.err == nil {
		s.runStep()
	}
	if s.err == nil {
		s.checkLiveness()
	}
	s.stats.steps = s.step
	s.stats.virtual = s.now
	s.stats.committed = int(s.maxCommit)
	return s.stats, s.err
}

// runStep processes the next event or node deadline.
func (s *sim) runStep() {
	s.step++
	var due *simNode
	next := time.Duration(1<<63 - 1)
	for _, n := range s.nodes {
		if n.alive {
			if d := n.core.deadline(); d < next {
				next, due = d, n
			}
		}
	}
	if len(s.events) > 0 && s.events[0].at <= next {
		e := heap.Pop(&s.events).(*simEvent)
		s.now = max(s.now, e.at)
		s.handle(e)
		return
	}
	s.now = max(s.now, next)
	due.core.tick(s.now)
	s.drive(due)
}

func (s *sim) handle(e *simEvent) {
	switch e.kind {
	case evDeliver:
		n := s.node(e.msg.To)
		if n == nil || !n.alive {
			return
		}
		if isSnapshotMessage(e.msg.Type) {
			s.stepSnapshot(n, &e.msg)
			return
		}
		n.core.step(&e.msg, s.now)
		s.drive(n)
	case evSyncDone:
		n := s.node(e.node)
		if !n.alive || n.incarnation != e.incarnation {
			return
		}
		if _, err := n.log.Sync(); err != nil {
			s.violate("storage", "node %d: sync: %v", n.id, err)
			return
		}
		n.core.durableNotice(e.mark.term, e.mark.index, s.now)
		if n.appended != e.mark {
			s.schedule(&simEvent{at: s.now + s.between(s.cfg.diskMin, s.cfg.diskMax), kind: evSyncDone, node: n.id, incarnation: n.incarnation, mark: n.appended})
		} else {
			n.syncing = false
		}
		s.drive(n)
	case evRestart:
		n := s.node(e.node)
		if n.alive {
			return // already restarted by the liveness phase
		}
		s.restart(n)
		s.drive(n)
	case evHeal:
		clear(s.blocked)
		s.partitioned = false
	case evFault:
		if s.faults {
			s.injectFault()
			s.schedule(&simEvent{at: s.now + s.cfg.faultEvery, kind: evFault})
		}
	case evPropose:
		s.propose()
		if s.faults {
			s.schedule(&simEvent{at: s.now + s.cfg.proposeEvery, kind: evPropose})
		}
	case evRead:
		s.read()
		if s.faults {
			s.schedule(&simEvent{at: s.now + s.cfg.readEvery, kind: evRead})
		}
	case evMembership:
		s.changeMembership()
		if s.faults {
			s.schedule(&simEvent{at: s.now + s.cfg.membershipEvery, kind: evMembership})
		}
	case evSnapshot:
		s.takeSnapshots()
		if s.faults {
			s.schedule(&simEvent{at: s.now + s.cfg.snapshotEvery, kind: evSnapshot})
		}
	case evSnapshotTimer:
		s.snapshotTimer(e)
	}
}

func (s *sim) injectFault() {
	if s.rand.Float64() < s.cfg.crashProb {
		var alive []*simNode
		for _, n := range s.nodes {
			if n.alive {
				alive = append(alive, n)
			}
		}
		if len(alive) > 0 {
			s.crash(alive[s.rand.IntN(len(alive))])
		}
	}
	if !s.partitioned && s.rand.Float64() < s.cfg.partitionProb {
		s.partition()
	}
}

// partition cuts the network in one of three shapes until a heal event.
func (s *sim) partition() {
	s.partitioned = true
	s.stats.partitions++
	ids := slices.Clone(s.voters)
	s.rand.Shuffle(len(ids), func(i, j int) { ids[i], ids[j] = ids[j], ids[i] })
	cutBoth := func(a, b uint64) { s.blocked[[2]uint64{a, b}] = true; s.blocked[[2]uint64{b, a}] = true }
	switch s.rand.IntN(3) {
	case 0: // symmetric: two sides
		k := 1 + s.rand.IntN(len(ids)-1)
		for _, a := range ids[:k] {
			for _, b := range ids[k:] {
				cutBoth(a, b)
			}
		}
	case 1: // one-way: a node can send but not receive, or the reverse
		a := ids[0]
		for _, b := range ids[1:] {
			if s.rand.IntN(2) == 0 {
				s.blocked[[2]uint64{a, b}] = true
			} else {
				s.blocked[[2]uint64{b, a}] = true
			}
		}
	case 2: // bridge: two sides that only one node can reach both of
		bridge, rest := ids[0], ids[1:]
		k := 1 + s.rand.IntN(max(1, len(rest)-1))
		for _, a := range rest[:k] {
			for _, b := range rest[k:] {
				cutBoth(a, b)
			}
		}
		_ = bridge
	}
	s.schedule(&simEvent{at: s.now + s.between(100*time.Millisecond, time.Second), kind: evHeal})
}

func (s *sim) propose() {
	var leaders []*simNode
	for _, n := range s.nodes {
		if n.alive && n.core.role == RoleLeader {
			leaders = append(leaders, n)
		}
	}
	if len(leaders) == 0 {
		return
	}
	n := leaders[s.rand.IntN(len(leaders))]
	count := 1 + s.rand.IntN(3)
	ents := make([]protocol.Entry, count)
	for i := range ents {
		s.proposalSeq++
		ents[i] = protocol.Entry{Type: protocol.EntryControl, Data: fmt.Appendf(nil, "p%d", s.proposalSeq)}
	}
	first, term, err := n.core.propose(ents, s.now)
	if err != nil {
		return
	}
	for i := range ents {
		n.pending[first+uint64(i)] = simProposal{term: term, data: string(ents[i].Data)}
		s.history.write(string(ents[i].Data))
	}
	s.drive(n)
}

func (s *sim) send(m protocol.RaftMessage) {
	if !s.faults {
		s.schedule(&simEvent{at: s.now + s.between(s.cfg.minDelay, s.cfg.maxDelay), kind: evDeliver, msg: m})
		return
	}
	if s.blocked[[2]uint64{m.From, m.To}] || s.rand.Float64() < s.cfg.dropProb {
		return
	}
	copies := 1
	if s.rand.Float64() < s.cfg.duplicateProb {
		copies = 2
	}
	if isSnapshotMessage(m.Type) {
		if s.rand.Float64() < s.cfg.chunkDropProb {
			return
		}
		if s.rand.Float64() < s.cfg.chunkDuplicateProb {
			copies++
		}
	}
	for range copies {
		delay := s.between(s.cfg.minDelay, s.cfg.maxDelay)
		if s.rand.IntN(50) == 0 {
			delay *= 10 // a straggler, delivered long after its successors
		}
		if m.Snapshot != nil {
			// Each delivery has its own bytes, as off the wire: a file
			// may scramble what was written (MemFS under -race).
			m.Snapshot = slices.Clone(m.Snapshot)
		}
		s.schedule(&simEvent{at: s.now + delay, kind: evDeliver, msg: m})
	}
}

func chainHash(prev uint64, e *protocol.Entry) uint64 {
	h := fnv.New64a()
	var b [17]byte
	for i := range 8 {
		b[i] = byte(prev >> (8 * i))
		b[8+i] = byte(e.Term >> (8 * i))
	}
	b[16] = byte(e.Type)
	h.Write(b[:])
	h.Write(e.Data)
	return h.Sum64()
}

// drive carries out a node's decisions the way Group.handleReady does and
// checks the invariants they touch.
func (s *sim) drive(n *simNode) {
	for s.err == nil && n.alive && n.core.hasReady() {
		rd := n.core.takeReady()
		if rd.err != nil {
			s.violate("storage", "node %d: %v", n.id, rd.err)
			return
		}
		if len(rd.entries) > 0 {
			if simTraceIndex != 0 && rd.entries[0].Index <= simTraceIndex && rd.entries[len(rd.entries)-1].Index >= simTraceIndex {
				e := rd.entries[simTraceIndex-rd.entries[0].Index]
				fmt.Printf("%v node %d role=%v term=%d appends [%d..%d] with %d=(t%d %q) storageLast=%d commit=%d\n", s.now, n.id, n.core.role, n.core.term, rd.entries[0].Index, rd.entries[len(rd.entries)-1].Index, simTraceIndex, e.Term, e.Data, n.log.LastIndex(), n.core.commit)
			}
			s.checkAppend(n, rd.entries)
		}
		if err := persistReady(n.log, n.stable, &rd); err != nil {
			s.violate("storage", "node %d: %v", n.id, err)
			return
		}
		if k := len(rd.entries); k > 0 {
			n.appended = durableMark{term: rd.entries[k-1].Term, index: rd.entries[k-1].Index}
			if !n.syncing {
				n.syncing = true
				s.schedule(&simEvent{at: s.now + s.between(s.cfg.diskMin, s.cfg.diskMax), kind: evSyncDone, node: n.id, incarnation: n.incarnation, mark: n.appended})
			}
		}
		for _, m := range rd.messages {
			s.send(m)
		}
		for i := range rd.committed {
			s.checkApply(n, &rd.committed[i])
		}
		s.readsDone(n, rd.reads)
		if len(rd.snapshots) > 0 {
			s.startSnapshotTransfers(n, rd.snapshots)
		}
	}
	if w, ok := n.log.(*entryWindow); ok && n.alive {
		releaseWindow(w, n.core)
	}
	s.checkNode(n)
	s.checkConfigurationPerPrefix(n)
	s.checkSnapshotLeadership(n)
}

// checkAppend maintains the node's prefix hashes and checks log matching:
// two logs with an entry of the same index and term hold the same prefix.
func (s *sim) checkAppend(n *simNode, ents []protocol.Entry) {
	first := ents[0].Index
	if first > uint64(len(n.chain)) {
		s.violate("storage", "node %d: append at %d leaves a gap after %d", n.id, first, len(n.chain)-1)
		return
	}
	if first <= n.lastCommit {
		s.violate("log matching", "node %d: overwrote committed index %d (commit %d)", n.id, first, n.lastCommit)
		return
	}
	n.chain = n.chain[:first]
	for i := range ents {
		e := &ents[i]
		h := chainHash(n.chain[len(n.chain)-1], e)
		n.chain = append(n.chain, h)
		key := [2]uint64{e.Index, e.Term}
		if prev, ok := s.chainAt[key]; !ok {
			s.chainAt[key] = h
		} else if prev != h {
			s.violate("log matching", "node %d: entry (index %d, term %d) follows a different prefix than on another node", n.id, e.Index, e.Term)
			return
		}
	}
}

// checkApply checks state machine safety (every node applies the same entry
// at each index, in order) and resolves the node's proposals.
func (s *sim) checkApply(n *simNode, e *protocol.Entry) {
	if e.Index != n.lastApplied+1 {
		s.violate("state machine safety", "node %d applied %d after %d", n.id, e.Index, n.lastApplied)
		return
	}
	n.lastApplied = e.Index
	n.appliedHash = chainHash(n.appliedHash, e)
	n.appliedTerm = e.Term
	if e.Type == protocol.EntryConfig {
		if conf, err := protocol.DecodeRaftConfiguration(e.Data); err == nil {
			n.appliedConf = conf
		}
	}
	got := simEntry{term: e.Term, data: string(e.Data)}
	if a, ok := s.acked[e.Index]; ok && a != got {
		s.violate("lost acknowledged proposal", "node %d applied %+v at index %d where %+v was acknowledged", n.id, got, e.Index, a)
		return
	}
	if c, ok := s.committed[e.Index]; ok && c != got {
		s.violate("state machine safety", "node %d applied %+v at index %d, others %+v", n.id, got, e.Index, c)
		return
	}
	s.committed[e.Index] = got
	s.applied(n, e)
	if p, ok := n.pending[e.Index]; ok {
		delete(n.pending, e.Index)
		if p.term == e.Term {
			if p.data != got.data {
				s.violate("state machine safety", "node %d: proposal at %d committed with other data", n.id, e.Index)
			}
			s.acked[e.Index] = got // AckCommitted: the client is told now
			s.maxAcked = max(s.maxAcked, e.Index)
			s.history.acked(got.data)
		}
	}
}

// checkNode checks election safety, leader completeness and monotonic commit.
func (s *sim) checkNode(n *simNode) {
	if s.err != nil || !n.alive {
		return
	}
	c := n.core
	if c.role == RoleLeader && c.commit > n.lastCommit {
		s.checkCommitQuorum(n)
	}
	if c.commit < n.lastCommit {
		s.violate("monotonic commit", "node %d commit went from %d to %d", n.id, n.lastCommit, c.commit)
		return
	}
	if c.commit > n.lastCommit {
		n.lastCommit = c.commit
		s.maxCommit = max(s.maxCommit, c.commit)
	}
	if c.role != RoleLeader || n.leaderTerm == c.term {
		return
	}
	n.leaderTerm = c.term
	s.stats.elections++
	if simTraceIndex != 0 {
		fmt.Printf("%v node %d leads term %d (last %d, commit %d)\n", s.now, n.id, c.term, c.log.lastIndex(), c.commit)
	}
	if other, ok := s.leaders[c.term]; ok && other != n.id {
		s.violate("election safety", "nodes %d and %d both lead term %d", other, n.id, c.term)
		return
	}
	s.leaders[c.term] = n.id
	// Leader completeness: the new leader holds every committed (and so
	// every acknowledged) entry. The prefix hashes make this O(1) unless it
	// fails; then find the first missing entry.
	top := uint64(len(s.committed)) // committed indexes are dense from 1
	if top == 0 {
		return
	}
	want := s.chainAt[[2]uint64{top, s.committed[top].term}]
	if top < uint64(len(n.chain)) && n.chain[top] == want {
		return
	}
	var missing uint64
	for index := uint64(1); index <= top; index++ {
		e := s.committed[index]
		if index < uint64(len(n.chain)) && n.chain[index] == s.chainAt[[2]uint64{index, e.term}] {
			continue
		}
		if a, ok := s.acked[index]; ok {
			s.violate("lost acknowledged proposal", "node %d leads term %d without acknowledged entry %d (term %d)", n.id, c.term, index, a.term)
			return
		}
		if missing == 0 {
			missing = index
		}
	}
	if missing != 0 {
		s.violate("leader completeness", "node %d leads term %d without committed entry %d (term %d)", n.id, c.term, missing, s.committed[missing].term)
	}
}

// checkLiveness heals everything and requires the cluster to elect a leader
// and commit a new entry on every node within bounded virtual time.
func (s *sim) checkLiveness() {
	s.faults = false
	clear(s.blocked)
	s.partitioned = false
	for _, n := range s.nodes {
		if !n.alive {
			s.restart(n)
			s.drive(n)
		}
	}
	deadline := s.now + 20*s.cfg.electionTimeout
	var target, targetTerm uint64
	var proposer *simNode
	for s.err == nil {
		if target != 0 && (proposer.core.role != RoleLeader || proposer.core.term != targetTerm) && s.committed[target].data != "final" {
			target = 0 // the proposer lost leadership before committing it; try again
		}
		if s.now > deadline {
			s.violate("liveness", "no leader committed a new entry on every node within %v after healing (target %d)%s", 20*s.cfg.electionTimeout, target, s.describe())
			return
		}
		if target == 0 {
			for _, n := range s.nodes {
				if n.core.role == RoleLeader && n.core.inLease() {
					first, term, err := n.core.propose([]protocol.Entry{{Type: protocol.EntryControl, Data: []byte("final")}}, s.now)
					if err == nil {
						target, targetTerm, proposer = first, term, n
						n.pending[first] = simProposal{term: term, data: "final"}
						s.drive(n)
					}
					break
				}
			}
		} else {
			done := true
			for _, n := range s.nodes {
				if !s.isMember(proposer, n) {
					continue // removed: it no longer receives the log
				}
				if n.lastApplied < max(target, s.maxAcked) {
					done = false
				}
			}
			if done {
				break
			}
		}
		s.runStep()
	}
	if s.err != nil {
		return
	}
	// Every acknowledged proposal is in every log, at its index.
	for _, n := range s.nodes {
		if !s.isMember(proposer, n) {
			continue
		}
		for index := uint64(1); index <= uint64(len(s.committed)); index++ {
			if a, ok := s.acked[index]; ok && (index >= uint64(len(n.chain)) || n.chain[index] != s.chainAt[[2]uint64{index, a.term}]) {
				s.violate("lost acknowledged proposal", "node %d lacks acknowledged entry %d after healing (target %d)%s", n.id, index, target, s.describe())
				return
			}
		}
	}
}

// describe renders every node's state for a failure report.
func (s *sim) describe() string {
	var out string
	for _, n := range s.nodes {
		c := n.core
		out += fmt.Sprintf("\n\tnode %d alive=%v role=%v term=%d vote=%d leader=%d commit=%d durable=%d last=%d applied=%d leaderMatch=%d",
			n.id, n.alive, c.role, c.term, c.vote, c.leader, c.commit, c.durable, c.log.lastIndex(), n.lastApplied, c.leaderMatch)
		for _, id := range s.voters {
			if p := c.progress[id]; p != nil {
				out += fmt.Sprintf("\n\t\tprogress %d: match=%d next=%d state=%v probeSent=%v inflight=%d", id, p.match, p.next, p.state, p.probeSent, p.inflights.count)
			}
		}
	}
	return out
}
