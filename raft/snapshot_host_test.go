package raft

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/raftmq/raftmq/protocol"
	"github.com/raftmq/raftmq/segmentlog"
	"github.com/raftmq/raftmq/snapshot"
)

var (
	_ LogResetter = (*segmentlog.Log)(nil)
	_ LogResetter = (*memLog)(nil)
	_ Restorer    = (*snapshotFSM)(nil)
)

// ResetOffsets makes memLog a LogResetter (it keeps no record offsets).
func (l *memLog) ResetOffsets(nextIndex, prevTerm, _ uint64) error {
	l.reset(nextIndex, prevTerm)
	return nil
}

// snapshotFSM is a state machine whose state is the data of every applied
// entry, in order; it snapshots and restores that list as JSON.
type snapshotFSM struct {
	mu       sync.Mutex
	last     uint64
	data     []string
	restores int
}

func (f *snapshotFSM) Apply(ents []protocol.Entry) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, e := range ents {
		if e.Index != f.last+1 {
			return fmt.Errorf("snapshotFSM: applied %d after %d", e.Index, f.last)
		}
		f.last = e.Index
		if e.Type != protocol.EntryNoop {
			f.data = append(f.data, string(e.Data))
		}
	}
	return nil
}

func (f *snapshotFSM) Restore(meta snapshot.Meta, body io.Reader) error {
	b, err := io.ReadAll(body)
	if err != nil {
		return err
	}
	var data []string
	if err := json.Unmarshal(b, &data); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.last, f.data = meta.Index, data
	f.restores++
	return nil
}

func (f *snapshotFSM) state() (uint64, []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.last, slices.Clone(f.data)
}

// snapshotNode is one replica's storage, kept across a stop and restart.
type snapshotNode struct {
	log interface {
		LogStorage
		LogResetter
	}
	compact func(before uint64) // deletes a log prefix (retention)
	stable  *memStable
	fsm     *snapshotFSM
	store   *snapshot.Store
	fs      *vfs.MemFS // crashable
	// sm, when set, is the group's state machine instead of fsm (a wrapper).
	sm StateMachine
}

// snapshotCluster is a 3-node Host cluster whose transport can drop,
// duplicate and hold snapshot messages.
type snapshotCluster struct {
	t      *testing.T
	ids    []uint64
	hosts  map[uint64]*Host
	nodes  map[uint64]*snapshotNode
	groups sync.Map // id -> *Group
	rng    *rand.Rand
	rngMu  sync.Mutex
	// lossy drops or duplicates one snapshot message in four.
	lossy atomic.Bool
	// blockChunks drops every MsgSnapshot; with limitChunks set, the
	// chunks after the first chunkBudget are dropped.
	blockChunks atomic.Bool
	limitChunks atomic.Bool
	chunkBudget atomic.Int64
	chunksSent  atomic.Int64
	lost, twice atomic.Int64 // snapshot messages the lossy transport dropped or duplicated
	// isolated, when not 0, is a node whose messages are all dropped.
	isolated atomic.Uint64
}

// newSnapshotCluster starts the cluster on memLogs, or on segmentlogs with
// small segments when onSegmentlog is set.
func newSnapshotCluster(t *testing.T, onSegmentlog bool) *snapshotCluster {
	sc := &snapshotCluster{t: t, ids: []uint64{1, 2, 3}, hosts: map[uint64]*Host{}, nodes: map[uint64]*snapshotNode{},
		rng: rand.New(rand.NewPCG(7, 7))}
	for _, id := range sc.ids {
		fs := vfs.NewCrashableMem()
		store, err := snapshot.OpenStore(fs, "snapshots")
		if err != nil {
			t.Fatal(err)
		}
		n := &snapshotNode{stable: &memStable{}, fsm: &snapshotFSM{}, store: store, fs: fs}
		if onSegmentlog {
			n.openSegmentlog(t)
		} else {
			log := newMemLog()
			n.log, n.compact = log, log.compact
		}
		sc.nodes[id] = n
	}
	for _, id := range sc.ids {
		h, err := NewHost(HostConfig{NodeID: id, Send: sc.send, Seed: id})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = h.Close() })
		sc.hosts[id] = h
	}
	for _, id := range sc.ids {
		sc.start(id)
	}
	return sc
}

// openSegmentlog opens the node's log on its file system, with small
// segments so that compaction deletes some.
func (n *snapshotNode) openSegmentlog(t *testing.T) {
	opts := segmentlog.DefaultOptions()
	opts.SegmentMaxBytes = 2 << 10
	log, err := segmentlog.Open(n.fs, "log", opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = log.Close() }) // after the host's (LIFO)
	n.log, n.compact = log, func(before uint64) {
		if _, err := log.DeleteBefore(before); err != nil {
			t.Error(err)
		}
	}
}

func (sc *snapshotCluster) send(msgs []protocol.RaftMessage) {
	for _, m := range msgs {
		h := sc.hosts[m.To]
		g, _ := sc.groups.Load(m.To)
		if h == nil || g == nil {
			continue // stopped
		}
		if iso := sc.isolated.Load(); iso != 0 && (m.From == iso || m.To == iso) {
			continue
		}
		copies := 1
		if isSnapshotMessage(m.Type) {
			if m.Type == protocol.MsgSnapshot {
				sc.chunksSent.Add(1)
				if sc.blockChunks.Load() || (sc.limitChunks.Load() && sc.chunkBudget.Add(-1) < 0) {
					continue
				}
			}
			if sc.lossy.Load() {
				sc.rngMu.Lock()
				copies = [4]int{0, 1, 1, 2}[sc.rng.IntN(4)]
				sc.rngMu.Unlock()
				switch copies {
				case 0:
					sc.lost.Add(1)
				case 2:
					sc.twice.Add(1)
				}
			}
		}
		// Through the wire encoding, as the transport carries it.
		b := protocol.AppendRaftMessage(nil, &m)
		for range copies {
			decoded, err := protocol.DecodeRaftMessage(b)
			if err != nil {
				sc.t.Errorf("decode %v: %v", m.Type, err)
				return
			}
			h.Step(decoded)
		}
	}
}

func (sc *snapshotCluster) start(id uint64) {
	n := sc.nodes[id]
	cfg := DefaultGroupConfig()
	cfg.GroupID, cfg.Voters = 1, sc.ids
	cfg.ElectionTimeout, cfg.HeartbeatInterval = 100*time.Millisecond, 10*time.Millisecond
	cfg.MaxAppendBytes = 512 // many chunks per snapshot
	cfg.Log, cfg.Stable, cfg.StateMachine, cfg.Snapshots = n.log, n.stable, n.fsm, n.store
	if n.sm != nil {
		cfg.StateMachine = n.sm
	}
	cfg.Applied, _ = n.fsm.state()
	g, err := sc.hosts[id].AddGroup(cfg)
	if err != nil {
		sc.t.Fatal(err)
	}
	sc.groups.Store(id, g)
}

func (sc *snapshotCluster) stop(id uint64) {
	sc.groups.Delete(id)
	if err := sc.hosts[id].RemoveGroup(1); err != nil {
		sc.t.Fatal(err)
	}
}

func (sc *snapshotCluster) group(id uint64) *Group {
	g, _ := sc.groups.Load(id)
	return g.(*Group)
}

func (sc *snapshotCluster) leader() uint64 {
	var leader uint64
	waitFor(sc.t, 10*time.Second, "a leader", func() bool {
		sc.groups.Range(func(id, g any) bool {
			if g.(*Group).Status().Role == RoleLeader {
				leader = id.(uint64)
			}
			return leader == 0
		})
		return leader != 0
	})
	return leader
}

func (sc *snapshotCluster) propose(count int, prefix string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i := range count {
		for {
			leader := sc.leader()
			// Random hex, so the snapshot compresses to many chunks.
			noise := rand.New(rand.NewPCG(uint64(i), uint64(len(prefix))))
			data := fmt.Sprintf("%s-%04d-%016x%016x%016x", prefix, i, noise.Uint64(), noise.Uint64(), noise.Uint64())
			_, _, err := sc.group(leader).Propose(ctx, protocol.EntryControl, []byte(data), AckApplied).Wait(ctx)
			if err == nil {
				break
			}
			if ctx.Err() != nil {
				sc.t.Fatalf("propose: %v", err)
			}
		}
	}
}

// snapshotAndCompact writes the leader's state as a snapshot, reports it,
// and deletes the log before the snapshot's index (retention).
func (sc *snapshotCluster) snapshotAndCompact(id uint64) snapshot.Meta {
	n := sc.nodes[id]
	last, data := n.fsm.state()
	term, err := n.log.Term(last)
	if err != nil {
		sc.t.Fatal(err)
	}
	meta := snapshot.Meta{Index: last, Term: term, Configuration: snapshot.Configuration{Voters: sc.ids}}
	w, err := n.store.Create(meta)
	if err != nil {
		sc.t.Fatal(err)
	}
	if err := json.NewEncoder(w).Encode(data); err != nil {
		sc.t.Fatal(err)
	}
	if _, err := w.Commit(); err != nil {
		sc.t.Fatal(err)
	}
	sc.group(id).SnapshotTaken(meta)
	n.compact(last)
	return meta
}

func (sc *snapshotCluster) waitConverged() {
	sc.t.Helper()
	waitFor(sc.t, 20*time.Second, "identical state machines", func() bool {
		last, want := sc.nodes[sc.ids[0]].fsm.state()
		for _, id := range sc.ids[1:] {
			l, got := sc.nodes[id].fsm.state()
			if l != last || !slices.Equal(got, want) {
				return false
			}
		}
		return true
	})
}

func (sc *snapshotCluster) lagBehindCompaction(lagging uint64) (leader uint64, meta snapshot.Meta) {
	sc.propose(20, "before")
	sc.waitConverged()
	sc.stop(lagging)
	sc.propose(200, "while-stopped")
	leader = sc.leader()
	meta = sc.snapshotAndCompact(leader)
	if first := sc.nodes[leader].log.FirstIndex(); first <= sc.nodes[lagging].log.LastIndex()+1 {
		sc.t.Fatalf("leader's log starts at %d, the lagging follower's next entry is %d: no snapshot needed", first, sc.nodes[lagging].log.LastIndex()+1)
	}
	return leader, meta
}

func (sc *snapshotCluster) otherFollower(leader, lagging uint64) uint64 {
	for _, id := range sc.ids {
		if id != leader && id != lagging {
			return id
		}
	}
	return 0
}

func TestHostFollowerBehindCompactionCatchesUpBySnapshot(t *testing.T) { // §7
	t.Run("memlog", func(t *testing.T) { testFollowerCatchesUpBySnapshot(t, false) })
	t.Run("segmentlog", func(t *testing.T) { testFollowerCatchesUpBySnapshot(t, true) })
}

func testFollowerCatchesUpBySnapshot(t *testing.T, onSegmentlog bool) {
	sc := newSnapshotCluster(t, onSegmentlog)
	leader := sc.leader()
	lagging := sc.otherFollower(leader, 0)
	leader, meta := sc.lagBehindCompaction(lagging)
	sc.start(lagging)
	sc.propose(20, "after")
	sc.waitConverged()
	n := sc.nodes[lagging]
	if n.fsm.restores != 1 {
		t.Fatalf("lagging follower restored %d times, want 1", n.fsm.restores)
	}
	if _, err := n.store.Get(meta.Index); err != nil {
		t.Fatalf("received snapshot not in the follower's store: %v", err)
	}
	if first := n.log.FirstIndex(); first != meta.Index+1 {
		t.Fatalf("follower's log starts at %d, want %d (reset after the snapshot)", first, meta.Index+1)
	}
	waitFor(t, 5*time.Second, "transfers to end", func() bool { return sc.transfersIdle() })
	_ = leader
}

func TestHostSnapshotSurvivesLostAndDuplicatedChunks(t *testing.T) {
	sc := newSnapshotCluster(t, false)
	lagging := sc.otherFollower(sc.leader(), 0)
	sc.lagBehindCompaction(lagging)
	sc.lossy.Store(true)
	sc.start(lagging)
	sc.propose(10, "after")
	sc.waitConverged()
	if sc.nodes[lagging].fsm.restores == 0 {
		t.Fatal("the follower caught up without a snapshot")
	}
	if sc.lost.Load() == 0 || sc.twice.Load() == 0 {
		t.Fatalf("the transport lost %d and duplicated %d snapshot messages; the test needs both", sc.lost.Load(), sc.twice.Load())
	}
	t.Logf("%d chunks sent, %d messages lost, %d duplicated", sc.chunksSent.Load(), sc.lost.Load(), sc.twice.Load())
	waitFor(t, 5*time.Second, "transfers to end", func() bool { return sc.transfersIdle() })
}

// A transfer in flight when leadership moves is abandoned on both ends; the
// new leader, whose log still holds the entries, catches the follower up
// with AppendEntries.
func TestHostLeadershipChangeAbandonsSnapshotTransfer(t *testing.T) {
	sc := newSnapshotCluster(t, false)
	lagging := sc.otherFollower(sc.leader(), 0)
	leader, _ := sc.lagBehindCompaction(lagging)
	sc.blockChunks.Store(true) // the transfer never completes
	sc.start(lagging)
	waitFor(t, 5*time.Second, "a snapshot transfer to start", func() bool {
		g := sc.group(leader)
		g.mu.Lock()
		defer g.mu.Unlock()
		return g.snap.outbound[lagging] != nil && sc.chunksSent.Load() > 0
	})
	next := sc.otherFollower(leader, lagging)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := sc.group(leader).TransferLeadership(ctx, next); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the old leader to abandon its transfer", func() bool {
		g := sc.group(leader)
		g.mu.Lock()
		defer g.mu.Unlock()
		return len(g.snap.outbound) == 0
	})
	sc.blockChunks.Store(false)
	sc.propose(10, "after")
	sc.waitConverged()
	if n := sc.nodes[lagging]; n.fsm.restores != 0 || n.log.FirstIndex() != 1 {
		t.Fatalf("follower restored %d times, log starts at %d: want AppendEntries from the new leader", n.fsm.restores, n.log.FirstIndex())
	}
	waitFor(t, 5*time.Second, "transfers to end", func() bool { return sc.transfersIdle() })
}

// transfersIdle reports whether no group has a transfer running.
func (sc *snapshotCluster) transfersIdle() bool {
	idle := true
	sc.groups.Range(func(_, v any) bool {
		g := v.(*Group)
		g.mu.Lock()
		idle = idle && len(g.snap.outbound) == 0 && g.snap.inbound == nil
		g.mu.Unlock()
		return idle
	})
	return idle
}
