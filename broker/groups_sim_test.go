package broker

import (
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/raftmq/raftmq/protocol"
	"github.com/raftmq/raftmq/raft"
	"github.com/raftmq/raftmq/segmentlog"
	"github.com/raftmq/raftmq/snapshot"
)

// A deterministic simulation of one partition's consumer state on three
// replicas: offset commits (consumer-op control entries), idempotent
// producer batches (the producer dedup state), consumer-state snapshots,
// retention and snapshot installs, under replica crashes (unsynced data
// lost) and network faults (links cut, leaders deposed).
//
// Every replica runs the broker's own code on its own storage: a
// segmentlog.Log and a snapshot.Store on one crashable in-memory file
// system, the state database (Pebble) on another; partitionStateMachine
// with consumerState and producerState applies committed entries; a
// restart runs startReplica's recovery sequence; retention takes the
// snapshot as snapshotConsumerState does and deletes segments with
// DeleteBefore; an install streams the leader's snapshot through
// snapshot.Sender/Receiver, then Restore and ResetOffsets. Raft itself is
// modelled (one leader per term, the §5.4.1 vote rule, §5.3 log matching
// with truncation, commit by a majority of durable logs in the leader's
// term, §5.4.2), not run: its own simulation is raft/sim_test.go.
//
// Checked at every step: every replica's consumer state (group records
// and producer records, byte for byte as stored) equals an oracle's, which
// applied the committed log entry by entry, at the same applied index; so
// does the high watermark; no acknowledged commit is lost (commits of the
// checked groups only move forward, so a replica that applied an
// acknowledged commit's index holds at least its offset); a new leader
// holds every committed entry. At the end, with faults healed, all
// replicas hold the committed entries byte for byte (records at the same
// offsets) and the same state.
//
// Default: a few seeds, fast. Soak: go test ./broker -run TestGroupStateSimulation
// -groupsim.seeds=500 -groupsim.steps=1500. Replay: -groupsim.seed=N.

var (
	groupSimSeeds = flag.Int("groupsim.seeds", 10, "seeds of TestGroupStateSimulation")
	groupSimSteps = flag.Int("groupsim.steps", 500, "steps per seed of TestGroupStateSimulation")
	groupSimSeed  = flag.Int64("groupsim.seed", 0, "run only this seed of TestGroupStateSimulation")
)

func TestGroupStateSimulation(t *testing.T) {
	seeds := make([]int64, 0, *groupSimSeeds)
	if *groupSimSeed != 0 {
		seeds = append(seeds, *groupSimSeed)
	} else {
		for i := range *groupSimSeeds {
			seeds = append(seeds, int64(i+1))
		}
	}
	var total simStats
	for _, seed := range seeds {
		sim := newGroupSim(t, seed)
		sim.run(*groupSimSteps)
		sim.close()
		if t.Failed() {
			return
		}
		total.add(sim.stats)
	}
	t.Logf("groupsim: %d seeds x %d steps: %s", len(seeds), *groupSimSteps, total)
	if len(seeds) >= 4 && (total.ackedCommits == 0 || total.crashes == 0 || total.snapshots == 0 ||
		total.segmentsDeleted == 0 || total.installs == 0 || total.elections == 0) {
		t.Fatalf("the simulation did not exercise everything: %s", total)
	}
}

type simStats struct {
	ackedCommits, rejectedOps, batches, crashes, restarts, elections, snapshots,
	snapshotCrashes, segmentsDeleted, installs, installsOverConflict, interruptedInstalls, linkCuts int
}

func (s *simStats) add(o simStats) {
	s.ackedCommits += o.ackedCommits
	s.rejectedOps += o.rejectedOps
	s.batches += o.batches
	s.crashes += o.crashes
	s.restarts += o.restarts
	s.elections += o.elections
	s.snapshots += o.snapshots
	s.snapshotCrashes += o.snapshotCrashes
	s.segmentsDeleted += o.segmentsDeleted
	s.installs += o.installs
	s.installsOverConflict += o.installsOverConflict
	s.interruptedInstalls += o.interruptedInstalls
	s.linkCuts += o.linkCuts
}

func (s simStats) String() string {
	return fmt.Sprintf("%d commits acknowledged, %d ops rejected, %d record batches, %d crashes (%d during a snapshot write, %d during an install), "+
		"%d restarts, %d elections, %d link cuts, %d snapshots, %d segments deleted, %d snapshot installs (%d over a conflicting suffix)",
		s.ackedCommits, s.rejectedOps, s.batches, s.crashes, s.snapshotCrashes, s.interruptedInstalls,
		s.restarts, s.elections, s.linkCuts, s.snapshots, s.segmentsDeleted, s.installs, s.installsOverConflict)
}

const (
	simRaftGroup = 1
	simReplicas  = 3
	simLogDir    = "log"
	simDBDir     = "db"
)

// simCheckedGroups get commits with increasing offsets, so an acknowledged
// commit can be checked; simOtherGroup also gets resets and deletes.
var (
	simCheckedGroups = []string{"g0", "g1", "g2"}
	simOtherGroup    = "other"
)

type simReplica struct {
	id        int
	logFS     *vfs.MemFS // segment log and snapshots
	dbFS      *vfs.MemFS // state database
	log       *segmentlog.Log
	db        *pebble.DB
	store     *stateStore
	snapshots *snapshot.Store
	state     *partitionStateMachine
	up        bool
	commit    uint64 // the commit index this replica knows
}

type simAck struct {
	index  uint64
	offset uint64
}

type simProposal struct {
	index uint64
	term  uint64
	ops   []protocol.ConsumerOp
	began uint64 // results.begin's return
}

type groupSim struct {
	t        *testing.T
	seed     int64
	rng      *rand.Rand
	clock    time.Time
	replicas []*simReplica
	term     uint64
	leader   int // -1: none
	link     [simReplicas][simReplicas]bool
	match    [simReplicas]uint64 // the leader's matchIndex (durable, matching)
	oracle   *simOracle
	acked    map[string]simAck // per checked group, the newest acknowledged commit
	pending  []simProposal     // the leader's consumer-op entries not yet acknowledged
	trace    []string

	nextCommitOffset map[string]uint64
	epoch            map[string]uint64
	producerEpoch    [4]int16
	producerSequence [4]int32
	settling         bool // faults healed: no more crashes or cut transfers
	stats            simStats
}

// simOracle applies the committed log entry by entry, with no crash, no
// snapshot and no retention, and remembers the state after each index.
type simOracle struct {
	db            *pebble.DB
	consumers     *consumerState
	entries       []protocol.Entry // entries[i] has index i+1
	fingerprints  []string         // fingerprints[i]: the state as of index i
	highWatermark []uint64         // highWatermark[i]: the offset after the last batch at or below index i
}

func newGroupSim(t *testing.T, seed int64) *groupSim {
	s := &groupSim{t: t, seed: seed, rng: rand.New(rand.NewPCG(uint64(seed), 0x6a09e667)), clock: time.Unix(1_800_000_000, 0),
		leader: -1, acked: map[string]simAck{}, nextCommitOffset: map[string]uint64{}, epoch: map[string]uint64{}}
	for a := range simReplicas {
		for b := range simReplicas {
			s.link[a][b] = true
		}
	}
	db, err := pebble.Open("", &pebble.Options{FS: vfs.NewMem(), Logger: quietPebbleLogger{}})
	if err != nil {
		t.Fatal(err)
	}
	consumers := &consumerState{store: &stateStore{db: db}, raftGroup: simRaftGroup, groups: map[string]consumerRecord{}}
	consumers.producers = newProducerState(consumers.store, simRaftGroup, nil)
	s.oracle = &simOracle{db: db, consumers: consumers, fingerprints: []string{fingerprintConsumerState(consumers)}, highWatermark: []uint64{0}}
	for id := range simReplicas {
		r := &simReplica{id: id, logFS: vfs.NewCrashableMem(), dbFS: vfs.NewCrashableMem()}
		s.replicas = append(s.replicas, r)
		s.open(r)
	}
	return s
}

func (s *groupSim) close() {
	for _, r := range s.replicas {
		if r.up {
			_ = r.log.Close()
			_ = r.db.Close()
		}
	}
	_ = s.oracle.db.Close()
}

func (s *groupSim) logf(format string, args ...any) {
	s.trace = append(s.trace, fmt.Sprintf("term %d: ", s.term)+fmt.Sprintf(format, args...))
	if len(s.trace) > 40 {
		s.trace = s.trace[len(s.trace)-40:]
	}
}

func (s *groupSim) fatalf(format string, args ...any) {
	s.t.Helper()
	s.t.Fatalf("groupsim seed %d: %s\nreplay: go test ./broker -run 'TestGroupStateSimulation$' -groupsim.seed=%d -groupsim.steps=%d\nlast events:\n  %s",
		s.seed, fmt.Sprintf(format, args...), s.seed, *groupSimSteps, strings.Join(s.trace, "\n  "))
}

func (s *groupSim) must(err error, what string) {
	s.t.Helper()
	if err != nil {
		s.fatalf("%s: %v", what, err)
	}
}

// open starts a replica from its file systems the way startReplica does.
func (s *groupSim) open(r *simReplica) {
	s.t.Helper()
	db, err := pebble.Open(simDBDir, &pebble.Options{FS: r.dbFS, Logger: quietPebbleLogger{}})
	s.must(err, "open state database")
	r.db, r.store = db, &stateStore{db: db}
	opts := segmentlog.DefaultOptions()
	opts.SegmentMaxBytes = 1024
	opts.IndexIntervalBytes = 256
	opts.Now = func() time.Time { return s.clock }
	r.log, err = segmentlog.Open(r.logFS, simLogDir, opts)
	s.must(err, "open log")
	r.snapshots, err = snapshot.OpenStore(r.logFS, snapshotDir(simLogDir))
	s.must(err, "open snapshot store")
	hs, err := (&hardStateStorage{store: r.store, groupID: simRaftGroup}).Load()
	s.must(err, "load hard state")
	s.must(resumeInterruptedRestore(r.snapshots, r.log), "resume interrupted restore")
	state, applied, err := recoverPartitionState(r.log, hs.Commit)
	s.must(err, "recover partition state")
	state.consumers, err = loadConsumerState(r.store, simRaftGroup)
	s.must(err, "load consumer state")
	state.consumers.producers, err = loadProducerState(r.store, simRaftGroup, r.log)
	s.must(err, "load producer state")
	s.must(state.consumers.restoreFromSnapshot(r.snapshots, r.log), "restore consumer state from snapshot")
	s.must(state.consumers.replay(r.log, applied), "replay consumer state")
	r.state, r.commit, r.up = state, applied, true
	s.check(r)
}

// crash loses what r did not sync (segment log: a random share of it;
// state database: all of it) and stops r.
func (s *groupSim) crash(r *simReplica) {
	r.logFS = r.logFS.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: s.rng.IntN(101), RNG: rand.New(rand.NewPCG(s.rng.Uint64(), s.rng.Uint64()))})
	r.dbFS = r.dbFS.CrashClone(vfs.CrashCloneCfg{})
	_ = r.log.Close()
	_ = r.db.Close()
	r.up = false
	if s.leader == r.id {
		s.leader = -1
		s.pending = nil
	}
	s.stats.crashes++
	s.logf("replica %d crashed", r.id)
}

func (s *groupSim) run(steps int) {
	for step := 0; step < steps && !s.t.Failed(); step++ {
		s.clock = s.clock.Add(time.Duration(1+s.rng.IntN(200)) * time.Millisecond)
		switch roll := s.rng.IntN(100); {
		case roll < 30:
			s.propose()
		case roll < 58:
			s.replicate(s.rng.IntN(simReplicas))
		case roll < 66:
			if s.leader >= 0 {
				_, err := s.replicas[s.leader].log.Sync()
				s.must(err, "leader sync")
			}
		case roll < 70:
			if r := s.replicas[s.rng.IntN(simReplicas)]; r.up && s.upCount() > 1 {
				s.crash(r)
			}
		case roll < 77:
			if r := s.replicas[s.rng.IntN(simReplicas)]; !r.up {
				s.open(r)
				s.stats.restarts++
				s.logf("replica %d restarted at applied index %d", r.id, r.commit)
			}
		case roll < 81:
			s.toggleLink()
		case roll < 86:
			s.elect(s.rng.IntN(simReplicas))
		case roll < 92:
			if r := s.replicas[s.rng.IntN(simReplicas)]; r.up {
				s.retain(r, s.rng.IntN(8) == 0)
			}
		default:
			if s.leader < 0 {
				s.elect(s.rng.IntN(simReplicas))
			}
		}
		s.advanceCommit()
		for _, r := range s.replicas {
			s.apply(r)
		}
	}
	if !s.t.Failed() {
		s.settle()
	}
}

func (s *groupSim) upCount() int {
	n := 0
	for _, r := range s.replicas {
		if r.up {
			n++
		}
	}
	return n
}

func (s *groupSim) toggleLink() {
	a, b := s.rng.IntN(simReplicas), s.rng.IntN(simReplicas)
	if a == b {
		for x := range simReplicas { // heal everything
			for y := range simReplicas {
				s.link[x][y] = true
			}
		}
		s.logf("network healed")
		return
	}
	s.link[a][b] = !s.link[a][b]
	if !s.link[a][b] {
		s.stats.linkCuts++
	}
	s.logf("link %d->%d up=%v", a, b, s.link[a][b])
}

func lastTerm(l *segmentlog.Log) uint64 {
	term, err := l.Term(l.LastIndex())
	if err != nil {
		panic(err)
	}
	return term
}

// elect makes c leader if it wins a vote (§5.4.1: voters grant only to a
// log at least as up to date as theirs), appending its no-op.
func (s *groupSim) elect(c int) {
	candidate := s.replicas[c]
	if !candidate.up || s.leader == c {
		return
	}
	votes := 1
	for _, v := range s.replicas {
		if v.id == c || !v.up || !s.link[c][v.id] || !s.link[v.id][c] {
			continue
		}
		ct, vt := lastTerm(candidate.log), lastTerm(v.log)
		if ct > vt || ct == vt && candidate.log.LastIndex() >= v.log.LastIndex() {
			votes++
		}
	}
	if votes*2 <= simReplicas {
		return
	}
	s.term++
	if s.leader >= 0 {
		// The old leader's proposers give up (proposeOps ends them).
		for _, p := range s.pending {
			s.replicas[s.leader].state.consumers.results.end(p.began)
		}
	}
	s.leader = c
	s.pending = nil
	s.match = [simReplicas]uint64{}
	s.stats.elections++
	s.logf("replica %d elected (log %d..%d)", c, candidate.log.FirstIndex(), candidate.log.LastIndex())
	// Leader completeness (§5.4): the new leader holds every committed entry.
	for i := max(candidate.log.FirstIndex(), 1); i <= uint64(len(s.oracle.entries)); i++ {
		term, err := candidate.log.Term(i)
		if err != nil || term != s.oracle.entries[i-1].Term {
			s.fatalf("new leader %d lacks committed entry %d (term %d, err %v; committed term %d)", c, i, term, err, s.oracle.entries[i-1].Term)
		}
	}
	s.must(candidate.log.Append([]protocol.Entry{{Index: candidate.log.LastIndex() + 1, Term: s.term, Type: protocol.EntryNoop}}), "append no-op")
}

// propose appends one entry at the leader: consumer ops or a record batch.
func (s *groupSim) propose() {
	if s.leader < 0 {
		return
	}
	l := s.replicas[s.leader].log
	entry := protocol.Entry{Index: l.LastIndex() + 1, Term: s.term}
	if s.rng.IntN(3) == 0 {
		entry.Type, entry.Data = protocol.EntryRecordBatch, s.recordBatch()
		s.stats.batches++
	} else {
		ops := s.consumerOps()
		entry.Type, entry.Data = protocol.EntryControl, protocol.AppendConsumerOps(nil, ops)
		began := s.replicas[s.leader].state.consumers.results.begin(l.LastIndex())
		s.pending = append(s.pending, simProposal{index: entry.Index, term: s.term, ops: ops, began: began})
	}
	s.must(l.Append([]protocol.Entry{entry}), "leader append")
}

func (s *groupSim) recordBatch() []byte {
	h := protocol.BatchHeader{Magic: protocol.BatchMagic, Length: protocol.BatchHeaderSize, RecordCount: uint32(1 + s.rng.IntN(4)),
		AppendTime: s.clock.UnixMilli()}
	if producer := s.rng.IntN(4); producer > 0 { // 0: not idempotent
		switch s.rng.IntN(10) {
		case 0: // a new epoch starts the sequence over
			s.producerEpoch[producer]++
			s.producerSequence[producer] = 0
		case 1: // a retry of the last batch (the log is the truth; apply ignores it)
			s.producerSequence[producer] = max(s.producerSequence[producer]-int32(h.RecordCount), 0)
		}
		h.ProducerID, h.ProducerEpoch, h.BaseSequence = int64(producer), s.producerEpoch[producer], s.producerSequence[producer]
		s.producerSequence[producer] += int32(h.RecordCount)
	}
	data := make([]byte, protocol.BatchHeaderSize)
	protocol.PutBatchHeader(data, &h)
	return data
}

func (s *groupSim) consumerOps() []protocol.ConsumerOp {
	ops := make([]protocol.ConsumerOp, 0, 3)
	for range 1 + s.rng.IntN(3) {
		now := s.clock.UnixMilli()
		if s.rng.IntN(5) == 0 {
			op := protocol.ConsumerOp{Group: simOtherGroup, Member: "m", Epoch: uint64(s.rng.IntN(3)), Offset: uint64(s.rng.IntN(100)), Time: now}
			op.Kind = []protocol.ConsumerOpKind{protocol.ConsumerOpCommit, protocol.ConsumerOpReset, protocol.ConsumerOpDelete, protocol.ConsumerOpClaim}[s.rng.IntN(4)]
			ops = append(ops, op)
			continue
		}
		group := simCheckedGroups[s.rng.IntN(len(simCheckedGroups))]
		op := protocol.ConsumerOp{Kind: protocol.ConsumerOpCommit, Group: group, Member: fmt.Sprintf("m%d", s.epoch[group]%3), Epoch: s.epoch[group], Time: now}
		switch s.rng.IntN(8) {
		case 0: // a new owner claims the partition
			s.epoch[group]++
			op.Kind, op.Epoch, op.Member = protocol.ConsumerOpClaim, s.epoch[group], fmt.Sprintf("m%d", s.epoch[group]%3)
		case 1: // a former owner's late commit: refused
			if op.Epoch > 0 {
				op.Epoch--
			}
		}
		if op.Kind == protocol.ConsumerOpCommit {
			s.nextCommitOffset[group] += uint64(1 + s.rng.IntN(5))
			op.Offset = s.nextCommitOffset[group]
			op.Metadata = fmt.Sprintf("at %d", op.Offset)
		}
		ops = append(ops, op)
	}
	return ops
}

// replicate sends the leader's log to follower f (AppendEntries, or
// InstallSnapshot when the leader deleted the entries f needs) and
// processes the answer.
func (s *groupSim) replicate(f int) {
	if s.leader < 0 || f == s.leader {
		return
	}
	leader, follower := s.replicas[s.leader], s.replicas[f]
	if !follower.up || !s.link[s.leader][f] {
		return
	}
	common, ok := s.commonPrefix(leader.log, follower.log)
	if !ok {
		if !s.install(leader, follower) {
			return
		}
		common = follower.log.LastIndex()
	}
	if follower.log.LastIndex() > common {
		if common < follower.commit {
			s.fatalf("replica %d would truncate committed entries after %d (commit %d)", f, common, follower.commit)
		}
		s.must(follower.log.TruncateAfter(common), "follower truncate")
		s.logf("replica %d truncated after %d", f, common)
	}
	if hi := min(leader.log.LastIndex(), common+uint64(1+s.rng.IntN(8))); hi > common {
		entries, err := leader.log.Entries(common+1, hi+1, 1<<20)
		s.must(err, "leader entries")
		s.must(follower.log.Append(entries), "follower append")
	}
	if s.rng.IntN(10) < 7 {
		_, err := follower.log.Sync()
		s.must(err, "follower sync")
	}
	durableMatch := min(follower.log.DurableIndex(), follower.log.LastIndex())
	follower.commit = max(follower.commit, min(leader.commit, durableMatch))
	if s.link[f][s.leader] {
		s.match[f] = durableMatch
	}
}

// commonPrefix is the last index at which the two logs agree (log
// matching, §5.3); false when the leader no longer holds the entries after
// it (the follower needs a snapshot).
func (s *groupSim) commonPrefix(leader, follower *segmentlog.Log) (uint64, bool) {
	low := max(leader.FirstIndex(), follower.FirstIndex()) - 1
	for i := min(leader.LastIndex(), follower.LastIndex()); i >= low; i-- {
		lt, err := leader.Term(i)
		s.must(err, "leader term")
		ft, err := follower.Term(i)
		s.must(err, "follower term")
		if lt == ft {
			return i, i+1 >= leader.FirstIndex()
		}
		if i == 0 {
			break
		}
	}
	return 0, false
}

// install streams the leader's newest snapshot to the follower, which
// restores its state from it and resets its log after it (raft's
// snapshot driver, in order; a crash may come between the two).
func (s *groupSim) install(leader, follower *simReplica) bool {
	latest, ok := leader.snapshots.Latest()
	if !ok {
		s.fatalf("replica %d needs entries before %d that leader %d deleted without a snapshot", follower.id, leader.log.FirstIndex(), leader.id)
	}
	if have, err := follower.snapshots.Get(latest.Meta.Index); err == nil && have.Meta.Term == latest.Meta.Term {
		return s.restoreInstalled(follower, have.Meta) // received before a crash
	}
	sender, err := leader.snapshots.NewSender(latest.Meta.Index, 512)
	s.must(err, "snapshot sender")
	defer sender.Close()
	receiver, err := follower.snapshots.NewReceiver(sender.ID(), sender.Size())
	s.must(err, "snapshot receiver")
	for offset := uint64(0); !receiver.Done(); {
		if !s.settling && s.rng.IntN(40) == 0 { // the transfer is cut off; the next one starts over
			s.must(receiver.Abandon(), "abandon snapshot transfer")
			return false
		}
		msg, err := sender.AppendChunk(nil, offset)
		s.must(err, "snapshot chunk")
		chunk, err := snapshot.DecodeChunk(msg)
		s.must(err, "decode snapshot chunk")
		ack, err := receiver.Receive(chunk)
		s.must(err, "receive snapshot chunk")
		offset = ack.Next
	}
	return s.restoreInstalled(follower, receiver.Info().Meta)
}

func (s *groupSim) restoreInstalled(follower *simReplica, meta snapshot.Meta) bool {
	reader, err := follower.snapshots.Open(meta.Index)
	s.must(err, "open received snapshot")
	err = follower.state.Restore(meta, reader)
	_ = reader.Close()
	s.must(err, "restore snapshot")
	s.stats.installs++
	if follower.log.LastIndex() >= meta.Index {
		s.stats.installsOverConflict++ // its log holds the snapshot's index with another term
	}
	s.logf("replica %d installed snapshot %d", follower.id, meta.Index)
	if !s.settling && s.rng.IntN(6) == 0 { // crash before the log reset: start-up finishes it
		s.stats.interruptedInstalls++
		s.crash(follower)
		return false
	}
	s.must(partitionLog{timedLog{Log: follower.log}, follower.state}.ResetOffsets(meta.Index+1, meta.Term, meta.NextOffset), "reset log after snapshot")
	follower.commit = max(follower.commit, meta.Index)
	s.check(follower)
	return true
}

// advanceCommit moves the leader's commit index to the highest index a
// majority holds durably, if that entry is of the leader's term (§5.4.2),
// feeds newly committed entries to the oracle and acknowledges proposals.
func (s *groupSim) advanceCommit() {
	if s.leader < 0 {
		return
	}
	leader := s.replicas[s.leader]
	s.match[s.leader] = min(leader.log.DurableIndex(), leader.log.LastIndex())
	sorted := s.match
	slices.Sort(sorted[:])
	quorum := sorted[simReplicas/2]
	if quorum > leader.commit {
		term, err := leader.log.Term(quorum)
		s.must(err, "term at quorum index")
		if term == s.term {
			leader.commit = quorum
		}
	}
	for uint64(len(s.oracle.entries)) < leader.commit {
		index := uint64(len(s.oracle.entries)) + 1
		entries, err := leader.log.Entries(index, index+1, 0)
		s.must(err, "read committed entry")
		s.oracle.apply(s, entries[0])
	}
}

func (o *simOracle) apply(s *groupSim, e protocol.Entry) {
	e.Data = slices.Clone(e.Data)
	o.entries = append(o.entries, e)
	s.must(o.consumers.apply([]protocol.Entry{e}), "oracle apply")
	highWatermark := o.highWatermark[len(o.highWatermark)-1]
	if e.Type == protocol.EntryRecordBatch {
		h, err := protocol.ReadBatchHeader(e.Data)
		s.must(err, "oracle batch header")
		highWatermark = h.BaseOffset + uint64(h.RecordCount)
	}
	o.highWatermark = append(o.highWatermark, highWatermark)
	o.fingerprints = append(o.fingerprints, fingerprintConsumerState(o.consumers))
}

// apply applies r's known-committed entries (the leader acknowledges its
// proposals once applied) and checks its state.
func (s *groupSim) apply(r *simReplica) {
	if !r.up {
		return
	}
	applied, _, _ := r.state.visible()
	if r.commit > applied {
		entries, err := r.log.Entries(applied+1, r.commit+1, 1<<20)
		s.must(err, "entries to apply")
		s.must(r.state.Apply(entries), "apply")
		if s.rng.IntN(3) == 0 { // raft saves the commit index with the hard state now and then
			s.must((&hardStateStorage{store: r.store, groupID: simRaftGroup}).Save(raft.HardState{Term: s.term, Commit: r.commit}), "save hard state")
		}
	}
	if r.id == s.leader {
		s.acknowledge(r)
	}
	s.check(r)
}

// acknowledge answers the leader's applied proposals: each op's result.
func (s *groupSim) acknowledge(leader *simReplica) {
	applied, _, _ := leader.state.visible()
	for len(s.pending) > 0 && s.pending[0].index <= applied {
		p := s.pending[0]
		s.pending = s.pending[1:]
		results, ok := leader.state.consumers.results.take(p.index)
		leader.state.consumers.results.end(p.began)
		if !ok || len(results) != len(p.ops) {
			s.fatalf("proposal at %d: applied without results (%v, %d results for %d ops)", p.index, ok, len(results), len(p.ops))
		}
		for i, op := range p.ops {
			if results[i] != nil {
				s.stats.rejectedOps++
				continue
			}
			if op.Kind == protocol.ConsumerOpCommit && slices.Contains(simCheckedGroups, op.Group) {
				if prev := s.acked[op.Group]; op.Offset > prev.offset {
					s.acked[op.Group] = simAck{index: p.index, offset: op.Offset}
				}
				s.stats.ackedCommits++
			}
		}
	}
}

// check compares r's state with the oracle's at r's applied index.
func (s *groupSim) check(r *simReplica) {
	s.t.Helper()
	if !r.up {
		return
	}
	consumerIndex := r.state.consumers.appliedIndex()
	if consumerIndex >= uint64(len(s.oracle.fingerprints)) {
		s.fatalf("replica %d applied index %d is past the commit index %d", r.id, consumerIndex, len(s.oracle.entries))
	}
	if got, want := fingerprintConsumerState(r.state.consumers), s.oracle.fingerprints[consumerIndex]; got != want {
		s.fatalf("replica %d consumer state at applied index %d differs from the oracle's:\n got %s\nwant %s", r.id, consumerIndex, got, want)
	}
	applied, highWatermark, _ := r.state.visible()
	if applied >= uint64(len(s.oracle.highWatermark)) {
		s.fatalf("replica %d applied index %d is past the commit index %d", r.id, applied, len(s.oracle.entries))
	}
	if want := s.oracle.highWatermark[applied]; highWatermark != want {
		s.fatalf("replica %d high watermark at applied index %d is %d, want %d", r.id, applied, highWatermark, want)
	}
	records, _ := r.state.consumers.all()
	for _, group := range simCheckedGroups {
		if ack, ok := s.acked[group]; ok && consumerIndex >= ack.index && records[group].Offset < ack.offset {
			s.fatalf("replica %d lost an acknowledged commit: group %s offset %d (index %d), holds %d at applied index %d",
				r.id, group, ack.offset, ack.index, records[group].Offset, consumerIndex)
		}
	}
}

// retain takes a consumer-state snapshot as of r's applied index (as
// snapshotConsumerState does) and deletes the segments it covers that the
// size policy lets go; crashInWrite crashes r in the middle of writing the
// snapshot instead.
func (s *groupSim) retain(r *simReplica, crashInWrite bool) {
	applied, highWatermark, _ := r.state.visible()
	groups, consumerIndex := r.state.consumers.all()
	producers, producerIndex := r.state.consumers.producerRecords()
	if applied == 0 || consumerIndex != applied || producerIndex != applied {
		return // (after a restart the database may be ahead of the hard state's commit index)
	}
	latest, haveLatest := r.snapshots.Latest()
	if !haveLatest || latest.Meta.Index < applied {
		term, err := r.log.Term(applied)
		s.must(err, "snapshot term")
		body, err := json.Marshal(consumerSnapshotBody{Groups: groups, HighWatermark: highWatermark, Producers: producers})
		s.must(err, "encode snapshot")
		w, err := r.snapshots.Create(snapshot.Meta{Index: applied, Term: term, NextOffset: highWatermark,
			Configuration: snapshot.Configuration{Voters: []uint64{1, 2, 3}}, Extra: consumerSnapshotExtra, Created: s.clock})
		s.must(err, "create snapshot")
		if crashInWrite {
			_, err := w.Write(body[:len(body)/2])
			s.must(err, "write snapshot")
			s.stats.snapshotCrashes++
			s.crash(r)
			s.open(r)
			s.stats.restarts++
			if after, ok := r.snapshots.Latest(); ok != haveLatest || ok && after.Meta.ID() != latest.Meta.ID() {
				s.fatalf("replica %d: a crash during a snapshot write changed the newest snapshot from %v to %v", r.id, latest.Meta.ID(), after.Meta.ID())
			}
			if haveLatest {
				reader, err := r.snapshots.Open(latest.Meta.Index)
				s.must(err, "open the previous snapshot after a crash")
				_, err = io.Copy(io.Discard, reader)
				_ = reader.Close()
				s.must(err, "read the previous snapshot after a crash")
			}
			return
		}
		_, err = w.Write(body)
		s.must(err, "write snapshot")
		latest, err = w.Commit()
		s.must(err, "commit snapshot")
		s.stats.snapshots++
	}
	limit := min(r.log.RetentionIndex(segmentlog.RetentionPolicy{MaxBytes: 2048}, s.clock), applied+1, latest.Meta.Index+1)
	if limit <= r.log.FirstIndex() {
		return
	}
	deleted, err := r.log.DeleteBefore(limit)
	s.must(err, "delete segments")
	_, err = r.snapshots.Prune(2, r.log.FirstIndex()-1)
	s.must(err, "prune snapshots")
	if deleted > 0 {
		s.stats.segmentsDeleted += deleted
		s.logf("replica %d deleted %d segments; log starts at %d", r.id, deleted, r.log.FirstIndex())
	}
}

// settle heals every fault and replicates until all replicas applied the
// leader's whole log, then compares them.
func (s *groupSim) settle() {
	s.settling = true
	for x := range simReplicas {
		for y := range simReplicas {
			s.link[x][y] = true
		}
	}
	for _, r := range s.replicas {
		if !r.up {
			s.open(r)
		}
	}
	for round := 0; ; round++ {
		if round == 500 {
			var states []string
			for _, r := range s.replicas {
				applied, _, _ := r.state.visible()
				states = append(states, fmt.Sprintf("replica %d: log %d..%d, durable %d, commit %d, applied %d", r.id,
					r.log.FirstIndex(), r.log.LastIndex(), r.log.DurableIndex(), r.commit, applied))
			}
			s.fatalf("replicas never converged after the faults healed (leader %d):\n  %s", s.leader, strings.Join(states, "\n  "))
		}
		if s.leader < 0 {
			s.elect(round % simReplicas)
			continue
		}
		for f := range simReplicas {
			s.replicate(f)
		}
		leader := s.replicas[s.leader]
		_, err := leader.log.Sync()
		s.must(err, "leader sync")
		s.advanceCommit()
		for f := range simReplicas { // tell followers the commit index
			s.replicate(f)
		}
		done := leader.commit == leader.log.LastIndex()
		for _, r := range s.replicas {
			s.apply(r)
			applied, _, _ := r.state.visible()
			done = done && applied == leader.commit && r.log.LastIndex() == leader.commit
		}
		if done && !s.t.Failed() {
			break
		}
		if s.t.Failed() {
			return
		}
	}
	// Same records at the same offsets, and the same state, everywhere.
	for _, r := range s.replicas {
		for i := r.log.FirstIndex(); i <= r.log.LastIndex(); i++ {
			entries, err := r.log.Entries(i, i+1, 0)
			s.must(err, "read entry")
			want := s.oracle.entries[i-1]
			if got := entries[0]; got.Term != want.Term || got.Type != want.Type || string(got.Data) != string(want.Data) {
				s.fatalf("replica %d entry %d differs from the committed one", r.id, i)
			}
		}
		s.check(r)
	}
	records, _ := s.oracle.consumers.all()
	for _, group := range simCheckedGroups {
		if ack, ok := s.acked[group]; ok && records[group].Offset < ack.offset {
			s.fatalf("the committed log lost group %s's acknowledged offset %d", group, ack.offset)
		}
	}
}

// fingerprintConsumerState is a replica's consumer state as stored: every
// group record and producer record, encoded, in key order.
func fingerprintConsumerState(c *consumerState) string {
	groups, _ := c.all()
	producers, _ := c.producerRecords()
	var b strings.Builder
	names := make([]string, 0, len(groups))
	for name := range groups {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		rec := groups[name]
		fmt.Fprintf(&b, "group %s=%s ", name, hex.EncodeToString(rec.encode()))
	}
	ids := make([]int64, 0, len(producers))
	for id := range producers {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		fmt.Fprintf(&b, "producer %d=%s ", id, hex.EncodeToString(producers[id].encode()))
	}
	return b.String()
}
