package raft

import (
	"errors"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/raftmq/raftmq/protocol"
	"github.com/raftmq/raftmq/snapshot"
)

// Targeted tests of a follower's snapshot install in the driver: its race
// with the apply of entries the snapshot covers, and crashes in the middle
// of it (issue 4: the install is atomic, a crash leaves the old state
// usable).

// gatedFSM blocks every Apply until gate is closed; entered is closed when
// the first Apply starts.
type gatedFSM struct {
	*snapshotFSM
	once    sync.Once
	entered chan struct{}
	gate    chan struct{}
}

func (f *gatedFSM) Apply(ents []protocol.Entry) error {
	f.once.Do(func() { close(f.entered) })
	<-f.gate
	return f.snapshotFSM.Apply(ents)
}

// A snapshot whose install is decided while the apply worker is still
// applying entries the snapshot covers waits for that Apply to return
// (without spinning), then restores; the state machine never sees an
// entry at or below the snapshot's index afterwards (snapshotFSM fails
// an out-of-order Apply, which would stop the group).
func TestHostSnapshotInstallWaitsForAnApplyOfEntriesItCovers(t *testing.T) {
	sc := newSnapshotCluster(t, false)
	lagging := sc.otherFollower(sc.leader(), 0)
	_, meta := sc.lagBehindCompaction(lagging)
	n := sc.nodes[lagging]
	// The follower restarts with an empty state machine and a commit hint
	// that covers its log, so it applies its log again; the first Apply
	// blocks while the leader streams the snapshot.
	fsm := &snapshotFSM{}
	gated := &gatedFSM{snapshotFSM: fsm, entered: make(chan struct{}), gate: make(chan struct{})}
	n.fsm, n.sm = fsm, gated
	n.stable.hs.Commit = n.log.LastIndex()
	if n.stable.hs.Commit >= meta.Index {
		t.Fatalf("follower's log reaches %d, past the snapshot at %d", n.stable.hs.Commit, meta.Index)
	}
	sc.start(lagging)
	select {
	case <-gated.entered:
	case <-time.After(10 * time.Second):
		t.Fatal("the follower did not apply its log")
	}
	waitFor(t, 10*time.Second, "the install to wait for the running Apply", func() bool {
		g := sc.group(lagging)
		g.mu.Lock()
		defer g.mu.Unlock()
		return g.snap.applyStopped != nil
	})
	if last, _ := fsm.state(); fsm.restores != 0 || last != 0 {
		t.Fatalf("restored %d times (applied %d) while an Apply ran", fsm.restores, last)
	}
	close(gated.gate)
	sc.propose(5, "after")
	sc.waitConverged()
	if fsm.restores != 1 {
		t.Fatalf("restores %d, want 1", fsm.restores)
	}
	if st := sc.group(lagging).Status(); st.AppliedIndex < meta.Index {
		t.Fatalf("applied %d after restoring %d", st.AppliedIndex, meta.Index)
	}
}

// crash stops a node's group and replaces its storage with what a crash
// would leave (unsynced data lost), reopened.
func (sc *snapshotCluster) crash(id uint64) {
	sc.stop(id)
	n := sc.nodes[id]
	n.fs = n.fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 0})
	store, err := snapshot.OpenStore(n.fs, "snapshots")
	if err != nil {
		sc.t.Fatal(err)
	}
	n.store = store
	n.openSegmentlog(sc.t)
	n.stable = n.stable.crashClone()
}

// restartAfterCrash does what an owner does on start: finish an
// interrupted install, restore the state machine from the newest snapshot
// when it is behind it, and add the group.
func (sc *snapshotCluster) restartAfterCrash(id uint64) (restored bool) {
	n := sc.nodes[id]
	latest, ok, err := ResumeSnapshotInstall(n.store, n.log)
	if err != nil {
		sc.t.Fatal(err)
	}
	if last, _ := n.fsm.state(); ok && latest.Meta.Index > last {
		body, err := n.store.Open(latest.Meta.Index)
		if err != nil {
			sc.t.Fatal(err)
		}
		err = n.fsm.Restore(latest.Meta, body)
		body.Close()
		if err != nil {
			sc.t.Fatal(err)
		}
		restored = true
	}
	sc.start(id)
	return restored
}

// failingRestorer fails its first Restore: the group stops after the
// snapshot reached the store but before the log was reset, which is where
// a crash in the middle of an install hurts most.
type failingRestorer struct {
	*snapshotFSM
	failed bool
}

var errRestoreCrash = errors.New("test: crash during restore")

func (f *failingRestorer) Restore(meta snapshot.Meta, body io.Reader) error {
	if !f.failed {
		f.failed = true
		return errRestoreCrash
	}
	return f.snapshotFSM.Restore(meta, body)
}

func TestHostCrashBetweenSnapshotInstallAndLogResetFinishesOnRestart(t *testing.T) {
	sc := newSnapshotCluster(t, true)
	lagging := sc.otherFollower(sc.leader(), 0)
	_, meta := sc.lagBehindCompaction(lagging)
	n := sc.nodes[lagging]
	lastBefore := n.log.LastIndex()
	fsmBefore, dataBefore := n.fsm.state()
	n.sm = &failingRestorer{snapshotFSM: n.fsm}
	sc.start(lagging)
	waitFor(t, 10*time.Second, "the snapshot in the follower's store", func() bool {
		_, err := n.store.Get(meta.Index)
		return err == nil
	})
	waitFor(t, 10*time.Second, "the follower to stop on the failed restore", func() bool {
		g := sc.group(lagging)
		g.mu.Lock()
		defer g.mu.Unlock()
		return g.closed
	})
	if n.log.LastIndex() != lastBefore || n.log.FirstIndex() != 1 {
		t.Fatalf("log [%d, %d] changed before the restore (was [1, %d])", n.log.FirstIndex(), n.log.LastIndex(), lastBefore)
	}
	sc.crash(lagging)
	n.sm = nil
	// The old state is intact and the received snapshot durable.
	if last, data := n.fsm.state(); last != fsmBefore || len(data) != len(dataBefore) {
		t.Fatalf("state machine at %d before the restart, was %d", last, fsmBefore)
	}
	if _, err := n.store.Get(meta.Index); err != nil {
		t.Fatalf("installed snapshot lost in the crash: %v", err)
	}
	if !sc.restartAfterCrash(lagging) {
		t.Fatal("the restart did not restore from the received snapshot")
	}
	if first := n.log.FirstIndex(); first != meta.Index+1 {
		t.Fatalf("log starts at %d after the restart, want %d (reset after the snapshot)", first, meta.Index+1)
	}
	sc.propose(10, "after")
	sc.waitConverged()
}

func TestHostCrashInTheMiddleOfASnapshotTransferLeavesTheOldStateUsable(t *testing.T) {
	sc := newSnapshotCluster(t, true)
	lagging := sc.otherFollower(sc.leader(), 0)
	_, meta := sc.lagBehindCompaction(lagging)
	n := sc.nodes[lagging]
	lastBefore := n.log.LastIndex()
	sc.chunkBudget.Store(3)
	sc.limitChunks.Store(true) // the transfer stops after three chunks
	sc.start(lagging)
	waitFor(t, 10*time.Second, "a partly received snapshot", func() bool {
		g := sc.group(lagging)
		g.mu.Lock()
		defer g.mu.Unlock()
		return g.snap.inbound != nil && sc.chunkBudget.Load() < 0
	})
	sc.crash(lagging)
	if _, err := n.store.Get(meta.Index); err == nil {
		t.Fatal("a partly received snapshot is listed after the crash")
	}
	if len(n.store.List()) != 0 {
		t.Fatalf("store lists %v after the crash, want nothing", n.store.List())
	}
	if n.log.FirstIndex() != 1 || n.log.LastIndex() != lastBefore {
		t.Fatalf("log [%d, %d] after the crash, want [1, %d]", n.log.FirstIndex(), n.log.LastIndex(), lastBefore)
	}
	sc.limitChunks.Store(false)
	if sc.restartAfterCrash(lagging) {
		t.Fatal("restart restored from a snapshot it never finished receiving")
	}
	sc.propose(10, "after")
	sc.waitConverged()
	if n.fsm.restores != 1 {
		t.Fatalf("restores %d, want 1 (the transfer again after the restart)", n.fsm.restores)
	}
}
