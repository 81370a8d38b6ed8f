package raft

import (
	"errors"
	"slices"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/raftmq/raftmq/protocol"
	"github.com/raftmq/raftmq/snapshot"
)

func TestBootstrapRefusesStorageThatHoldsState(t *testing.T) {
	conf := protocol.RaftConfiguration{Voters: []uint64{1, 2, 3}}
	log, stable := newMemLog(), &memStable{}
	if err := Bootstrap(log, stable, conf); err != nil {
		t.Fatal(err)
	}
	if err := Bootstrap(log, stable, conf); !errors.Is(err, ErrAlreadyBootstrapped) {
		t.Fatalf("second bootstrap: %v, want ErrAlreadyBootstrapped", err)
	}
	if err := Bootstrap(newMemLog(), &memStable{hs: HardState{Term: 3}}, conf); !errors.Is(err, ErrAlreadyBootstrapped) {
		t.Fatalf("bootstrap over a hard state: %v, want ErrAlreadyBootstrapped", err)
	}
	if err := Bootstrap(newMemLog(), &memStable{}, protocol.RaftConfiguration{}); !errors.Is(err, ErrInvalidMembership) {
		t.Fatalf("bootstrap without voters: %v, want ErrInvalidMembership", err)
	}
	if log.LastIndex() != 1 {
		t.Fatalf("log last index %d after a refused bootstrap, want 1", log.LastIndex())
	}
}

func TestBootstrapOnOneServerFormsTheCluster(t *testing.T) {
	net := &testNet{t: t, nodes: map[uint64]*testNode{}, ids: []uint64{1, 2, 3}, cut: map[[2]uint64]bool{}}
	for _, id := range net.ids {
		log, stable := newMemLog(), &memStable{}
		if id == 1 {
			if err := Bootstrap(log, stable, protocol.RaftConfiguration{Voters: []uint64{1, 2, 3}}); err != nil {
				t.Fatal(err)
			}
		}
		net.addNode(id, log, stable, func(cfg *coreConfig) { cfg.Voters = nil })
	}
	net.advance(10 * testElection)
	if leader := net.leaderID(); leader != 1 {
		t.Fatalf("leader %d, want the bootstrapped node 1 (the others know no configuration)", leader)
	}
	index := net.propose(1, "x")
	for _, id := range net.ids {
		c := net.nodes[id].core
		if !slices.Equal(c.conf.Voters, []uint64{1, 2, 3}) || c.commit < index {
			t.Fatalf("node %d: conf %+v commit %d", id, c.conf, c.commit)
		}
	}
}

func TestRestartRecoversConfigurationFromSnapshotPlusLog(t *testing.T) {
	store, err := snapshot.OpenStore(vfs.NewMem(), "snapshots")
	if err != nil {
		t.Fatal(err)
	}
	meta := snapshot.Meta{Index: 10, Term: 1, Configuration: snapshot.Configuration{Voters: []uint64{3, 1, 2}, Learners: []uint64{4}}}
	w, err := store.Create(meta)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte("state")); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	log := newMemLog()
	if err := log.ResetOffsets(11, 1, 0); err != nil {
		t.Fatal(err)
	}
	cfg := DefaultGroupConfig()
	cfg.GroupID, cfg.Voters, cfg.Log, cfg.Snapshots = 1, []uint64{9}, log, store
	c := newCore(cfg.coreConfig(1, HardState{Term: 1}, 1), 0)
	if !slices.Equal(c.conf.Voters, []uint64{1, 2, 3}) || !slices.Equal(c.conf.Learners, []uint64{4}) {
		t.Fatalf("configuration from the snapshot: %+v", c.conf)
	}
	promoted := protocol.RaftConfiguration{Voters: []uint64{1, 2, 3, 4}}
	if err := log.Append([]protocol.Entry{configEntry(11, 2, promoted), {Index: 12, Term: 2, Type: protocol.EntryNoop}}); err != nil {
		t.Fatal(err)
	}
	c = newCore(cfg.coreConfig(1, HardState{Term: 2, Commit: 12}, 1), 0)
	if !slices.Equal(c.conf.Voters, promoted.Voters) || c.confIndex() != 11 {
		t.Fatalf("configuration from snapshot plus log: %+v at %d", c.conf, c.confIndex())
	}
	// The scan stops at the snapshot's index: a log that still holds the
	// entries the snapshot covers is not read below it (an undecodable
	// config entry there is never seen).
	full := newMemLog()
	for i := uint64(1); i <= 10; i++ {
		e := protocol.Entry{Index: i, Term: 1, Type: protocol.EntryNoop}
		if i == 5 {
			e.Type, e.Data = protocol.EntryConfig, []byte("not a configuration")
		}
		if err := full.Append([]protocol.Entry{e}); err != nil {
			t.Fatal(err)
		}
	}
	cfg.Log = full
	c = newCore(cfg.coreConfig(1, HardState{Term: 1, Commit: 10}, 1), 0)
	if c.log.err != nil || !slices.Equal(c.conf.Voters, []uint64{1, 2, 3}) || c.confIndex() != 10 {
		t.Fatalf("scan went below the snapshot: err %v conf %+v at %d", c.log.err, c.conf, c.confIndex())
	}
}
