package broker

import (
	"flag"
	"strings"
	"testing"
	"time"

	"github.com/raftmq/raftmq/protocol"
	"github.com/raftmq/raftmq/raft"
)

var startupLogMiB = flag.Int("broker.startup-log-mib", 0, "TestPartitionStartUpTimeOnALargeLog: MiB of retained log (0 skips the test)")

// TestPartitionStartUpTimeOnALargeLog measures a partition replica's raft
// start-up (Host.AddGroup) on a large retained log without a config entry,
// as startReplica prepares it, with and without the configuration the
// consumer state saved (GroupConfig.AppliedConfiguration). Run with
// -broker.startup-log-mib=1024.
func TestPartitionStartUpTimeOnALargeLog(t *testing.T) {
	if *startupLogMiB <= 0 {
		t.Skip("set -broker.startup-log-mib")
	}
	dir := t.TempDir()
	store, err := openStateStore(dir + "/state")
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	log, err := openLog(nil, dir+"/log", DefaultConfig().Log)
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	const groupID = 1000
	consumers, err := loadConsumerState(store, groupID)
	if err != nil {
		t.Fatal(err)
	}
	batch := buildBatch(t, strings.Repeat("v", 64<<10))
	entries := make([]protocol.Entry, 0, 64)
	total := uint64(*startupLogMiB) << 20
	for written := uint64(0); written < total; {
		entries = entries[:0]
		for range cap(entries) {
			entries = append(entries, protocol.Entry{Index: log.LastIndex() + 1 + uint64(len(entries)), Term: 1, Type: protocol.EntryRecordBatch, Data: batch})
			written += uint64(len(batch))
		}
		if err := log.Append(entries); err != nil {
			t.Fatal(err)
		}
		applied, err := log.Entries(entries[0].Index, log.LastIndex()+1, 1<<30)
		if err != nil {
			t.Fatal(err)
		}
		if err := consumers.apply(applied); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := log.Sync(); err != nil {
		t.Fatal(err)
	}
	last := log.LastIndex()
	stable := &hardStateStorage{store: store, groupID: groupID}
	if err := stable.Save(raft.HardState{Term: 1, Commit: last}); err != nil {
		t.Fatal(err)
	}
	// Start-up as startReplica does it (after a restart: reloaded state).
	if consumers, err = loadConsumerState(store, groupID); err != nil {
		t.Fatal(err)
	}
	state, applied, err := recoverPartitionState(log, max(last, consumers.appliedIndex()))
	if err != nil {
		t.Fatal(err)
	}
	state.consumers = consumers
	replayStart := time.Now()
	if err := consumers.replay(log, applied); err != nil {
		t.Fatal(err)
	}
	replay := time.Since(replayStart)
	voters := []uint64{1}
	conf := consumers.startConfiguration(applied, voters, nil, log.FirstIndex())
	if len(conf.Voters) == 0 {
		t.Fatal("no start configuration")
	}
	host, err := raft.NewHost(raft.HostConfig{NodeID: 1, Send: func([]protocol.RaftMessage) {}})
	if err != nil {
		t.Fatal(err)
	}
	defer host.Close()
	addGroup := func(withConf bool) time.Duration {
		cfg := raft.DefaultGroupConfig()
		cfg.GroupID, cfg.Voters, cfg.Log, cfg.Stable, cfg.StateMachine, cfg.Applied = groupID, voters, log, stable, state, applied
		if withConf {
			cfg.AppliedConfiguration = conf
		}
		start := time.Now()
		if _, err := host.AddGroup(cfg); err != nil {
			t.Fatal(err)
		}
		took := time.Since(start)
		if err := host.RemoveGroup(groupID); err != nil {
			t.Fatal(err)
		}
		return took
	}
	without := addGroup(false)
	with := addGroup(true)
	t.Logf("log of %d MiB (%d entries, applied %d): AddGroup without AppliedConfiguration %v, with it %v (consumer-state replay %v)",
		*startupLogMiB, last, applied, without.Round(time.Millisecond), with.Round(time.Millisecond), replay.Round(time.Millisecond))
}
