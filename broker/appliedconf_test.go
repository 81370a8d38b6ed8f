package broker

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/raftmq/raftmq/protocol"
	"github.com/raftmq/raftmq/segmentlog"
	"github.com/raftmq/raftmq/snapshot"
)

// logConfigurationAt scans log back from index for the newest EntryConfig
// entry, the configuration raft finds there; ok is false when there is none.
func logConfigurationAt(t *testing.T, log *segmentlog.Log, index uint64) (protocol.RaftConfiguration, bool) {
	t.Helper()
	for i := index; i >= log.FirstIndex() && i > 0; i-- {
		entries, err := log.Entries(i, i+1, 0)
		if err != nil {
			t.Fatal(err)
		}
		if entries[0].Type == protocol.EntryConfig {
			conf, err := protocol.DecodeRaftConfiguration(entries[0].Data)
			if err != nil {
				t.Fatal(err)
			}
			return conf, true
		}
	}
	return protocol.RaftConfiguration{}, false
}

func confString(c protocol.RaftConfiguration) string {
	return fmt.Sprintf("voters %v outgoing %v learners %v", c.Voters, c.OutgoingVoters, c.Learners)
}

// TestPersistedConfigurationMatchesTheLog applies a log with config entries
// (a learner added, a joint change, its end) in batches, "crashes" after
// each (reloading the state from the database, which holds only what the
// last write saved), replays the log up to the applied index as start-up
// does, and checks the configuration given to raft is the one the log says
// is in effect at that index.
func TestPersistedConfigurationMatchesTheLog(t *testing.T) {
	store, err := openStateStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	log, err := segmentlog.Open(vfs.NewMem(), "log", segmentlog.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	bootstrap := []uint64{3, 1, 2}
	confs := map[uint64]protocol.RaftConfiguration{
		40:  {Voters: []uint64{1, 2, 3}, Learners: []uint64{4}},
		90:  {Voters: []uint64{1, 2, 4}, OutgoingVoters: []uint64{1, 2, 3}},
		91:  {Voters: []uint64{1, 2, 4}},
		300: {Voters: []uint64{1, 2, 4}, Learners: []uint64{5}},
	}
	var entries []protocol.Entry
	for i := uint64(1); i <= 400; i++ {
		e := protocol.Entry{Index: i, Term: 1, Type: protocol.EntryNoop}
		if c, ok := confs[i]; ok {
			e.Type, e.Data = protocol.EntryConfig, protocol.AppendRaftConfiguration(nil, &c)
		}
		entries = append(entries, e)
	}
	if err := log.Append(entries); err != nil {
		t.Fatal(err)
	}
	state, err := loadConsumerState(store, 7)
	if err != nil {
		t.Fatal(err)
	}
	if got := state.startConfiguration(0, bootstrap, nil, 1); !slices.Equal(got.Voters, []uint64{1, 2, 3}) {
		t.Fatalf("a new replica starts with %s, want the bootstrap voters", confString(got))
	}
	for lo := 1; lo <= len(entries); {
		hi := min(len(entries), lo+17+lo%23)
		if err := state.apply(entries[lo-1 : hi]); err != nil {
			t.Fatal(err)
		}
		applied := uint64(hi)
		// A crash: the database keeps what the last write saved.
		state, err = loadConsumerState(store, 7)
		if err != nil {
			t.Fatal(err)
		}
		if stored := state.appliedIndex(); stored > applied {
			t.Fatalf("stored applied index %d past %d", stored, applied)
		}
		if got := state.startConfiguration(applied, bootstrap, nil, 1); len(got.Voters) != 0 && state.appliedIndex() != applied {
			t.Fatalf("configuration %s given for index %d while the state is at %d", confString(got), applied, state.appliedIndex())
		}
		if err := state.replay(log, applied); err != nil {
			t.Fatal(err)
		}
		want, ok := logConfigurationAt(t, log, applied)
		if !ok {
			want = protocol.RaftConfiguration{Voters: []uint64{1, 2, 3}}
		}
		got := state.startConfiguration(applied, bootstrap, nil, 1)
		if confString(got) != confString(want) {
			t.Fatalf("at applied index %d: start configuration %s, the log says %s", applied, confString(got), confString(want))
		}
		if got := state.startConfiguration(applied-1, bootstrap, nil, 1); len(got.Voters) != 0 {
			t.Fatalf("configuration %s given for index %d, the state is at %d", confString(got), applied-1, applied)
		}
		lo = hi + 1
	}
}

// TestConfigurationOfOlderStateIsUnknown: a database written before the
// configuration record (an applied index without it) gives no
// configuration (raft searches its log) until a config entry is applied.
func TestConfigurationOfOlderStateIsUnknown(t *testing.T) {
	store, err := openStateStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	if err := store.db.Set(groupKey(keyConsumerApplied, 7), appendUint64(nil, 10), nil); err != nil {
		t.Fatal(err)
	}
	state, err := loadConsumerState(store, 7)
	if err != nil {
		t.Fatal(err)
	}
	if got := state.startConfiguration(10, []uint64{1, 2, 3}, nil, 1); len(got.Voters) != 0 {
		t.Fatalf("older state gives %s", confString(got))
	}
	if err := state.apply([]protocol.Entry{{Index: 11, Term: 1, Type: protocol.EntryNoop}}); err != nil {
		t.Fatal(err)
	}
	if got := state.startConfiguration(11, []uint64{1, 2, 3}, nil, 1); len(got.Voters) != 0 {
		t.Fatalf("older state gives %s after a no-op", confString(got))
	}
	conf := protocol.RaftConfiguration{Voters: []uint64{2, 3, 4}}
	if err := state.apply([]protocol.Entry{{Index: 12, Term: 1, Type: protocol.EntryConfig, Data: protocol.AppendRaftConfiguration(nil, &conf)}}); err != nil {
		t.Fatal(err)
	}
	if state, err = loadConsumerState(store, 7); err != nil {
		t.Fatal(err)
	}
	if got := state.startConfiguration(12, []uint64{1, 2, 3}, nil, 1); confString(got) != confString(conf) {
		t.Fatalf("after a config entry: %s, want %s", confString(got), confString(conf))
	}
}

// TestRestoredConfigurationIsTheSnapshots: a snapshot install stores the
// snapshot's configuration with its index; a snapshot store whose newest
// snapshot covers the log start with another configuration than the
// bootstrap voters makes the "no config entry applied" case unknown.
func TestRestoredConfigurationIsTheSnapshots(t *testing.T) {
	store, err := openStateStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	state, err := loadConsumerState(store, 7)
	if err != nil {
		t.Fatal(err)
	}
	conf := protocol.RaftConfiguration{Voters: []uint64{1, 2, 4}, Learners: []uint64{5}}
	meta := snapshot.Meta{Index: 50, Term: 3, Configuration: snapshot.Configuration{Voters: []uint64{4, 2, 1}, Learners: []uint64{5}}}
	if _, err := state.restore(meta, strings.NewReader(`{"groups":{},"high_watermark":9}`)); err != nil {
		t.Fatal(err)
	}
	if state, err = loadConsumerState(store, 7); err != nil {
		t.Fatal(err)
	}
	if got := state.startConfiguration(50, []uint64{1, 2, 3}, nil, 51); confString(got) != confString(conf) {
		t.Fatalf("after a restore: %s, want %s", confString(got), confString(conf))
	}

	// No config entry applied, and a snapshot with other voters covers the
	// log start: raft's base would be the snapshot's, so none is given.
	fs := vfs.NewMem()
	if err := fs.MkdirAll("snaps", 0o755); err != nil {
		t.Fatal(err)
	}
	snaps, err := snapshot.OpenStore(fs, "snaps")
	if err != nil {
		t.Fatal(err)
	}
	w, err := snaps.Create(snapshot.Meta{Index: 20, Term: 1, Configuration: snapshot.Configuration{Voters: []uint64{1, 2, 4}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte("{}")); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	fresh, err := loadConsumerState(store, 8)
	if err != nil {
		t.Fatal(err)
	}
	if got := fresh.startConfiguration(0, []uint64{1, 2, 3}, snaps, 1); len(got.Voters) != 0 {
		t.Fatalf("bootstrap voters given beside a snapshot of other voters: %s", confString(got))
	}
	if got := fresh.startConfiguration(0, []uint64{4, 2, 1}, snaps, 1); !slices.Equal(got.Voters, []uint64{1, 2, 4}) {
		t.Fatalf("bootstrap voters equal to the snapshot's: %s", confString(got))
	}
}

// TestRestartAfterReassignmentUsesAppliedConfiguration moves a partition
// from three brokers to a set with broker 4, restarts a replica of the new
// set, and checks that the configuration its state database gives raft at
// start-up is the log's (and the new set), that the restarted replica runs
// with it, and that the group still commits.
func TestRestartAfterReassignmentUsesAppliedConfiguration(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cluster, client := startManualRetentionCluster(t, ctx, 1)
	info := client.createTopic("restarted", 1, 3)
	c := &leaderClient{testClient: client, leader: 1, nodes: 4, acks: protocol.AcksQuorum}
	for i := range 5 {
		if _, err := c.produce(ctx, "restarted", 0, buildBatch(t, fmt.Sprint("before-", i))); err != nil {
			t.Fatal(err)
		}
	}
	target := append(slices.Clone(info.Partitions[0].Replicas[1:]), 4)
	var reply protocol.ReassignReply
	client.admin(protocol.AdminReassignPartition, protocol.ReassignPartitionRequest{Version: 1, Topic: "restarted", Replicas: target}, &reply)
	if reply.Error != nil {
		t.Fatal(reply.Error)
	}
	want := sortedCopy(target)
	waitFor(ctx, t, "the move", func() bool {
		p, ok := partitionMetaOn(cluster.Broker(1), "restarted")
		r := leaderReplica(cluster, "restarted")
		return ok && p.Target == nil && r != nil && slices.Equal(r.group.Status().Configuration.Voters, want)
	})
	for i := range 5 {
		if _, err := c.produce(ctx, "restarted", 0, buildBatch(t, fmt.Sprint("after-", i))); err != nil {
			t.Fatal(err)
		}
	}
	var restarted uint64
	waitFor(ctx, t, "a follower of the new set with everything applied", func() bool {
		leader := leaderReplica(cluster, "restarted")
		if leader == nil {
			return false
		}
		for _, id := range target {
			r := localReplica(cluster.Broker(id), "restarted")
			if id != leader.group.Status().ID && r != nil && r.group.Status().AppliedIndex == leader.group.Status().AppliedIndex {
				restarted = id
				return true
			}
		}
		return false
	})
	r := localReplica(cluster.Broker(restarted), "restarted")
	groupID, dir := r.groupID, r.dir
	cluster.mu.Lock()
	dataDir := cluster.configs[restarted].DataDir
	cluster.mu.Unlock()
	if err := cluster.StopBroker(ctx, restarted); err != nil {
		t.Fatal(err)
	}

	// What start-up will give raft, against what the log says.
	p, _ := partitionMetaOn(cluster.Broker(1), "restarted")
	got, inLog, ok, applied := startConfigurationOnDisk(t, dataDir, dir, groupID, p)
	if !ok || confString(got) != confString(inLog) || !slices.Equal(got.Voters, want) || len(got.Learners) != 0 {
		t.Fatalf("broker %d at applied index %d: start configuration %s, the log says %s (found %v), want voters %v",
			restarted, applied, confString(got), confString(inLog), ok, want)
	}

	if err := cluster.StartBroker(ctx, restarted); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if _, err := c.produce(ctx, "restarted", 0, buildBatch(t, fmt.Sprint("restarted-", i))); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(ctx, t, "the restarted replica to apply as far as the leader with the new set's configuration", func() bool {
		leader := leaderReplica(cluster, "restarted")
		back := localReplica(cluster.Broker(restarted), "restarted")
		if leader == nil || back == nil {
			return false
		}
		st := back.group.Status()
		return st.AppliedIndex == leader.group.Status().AppliedIndex &&
			slices.Equal(st.Configuration.Voters, want) && len(st.Configuration.Learners) == 0 && !st.Configuration.Joint()
	})
}

// startConfigurationOnDisk prepares a stopped broker's replica the way
// startReplica does and returns the configuration it would give raft, the
// newest config entry of the log at the applied index (ok false when the
// log holds none), and the applied index.
func startConfigurationOnDisk(t *testing.T, dataDir, dir string, groupID uint64, p partitionMeta) (got, inLog protocol.RaftConfiguration, ok bool, applied uint64) {
	t.Helper()
	store, err := openStateStore(filepath.Join(dataDir, "state"))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	log, err := openLog(nil, dir, DefaultConfig().Log)
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	snapshots, err := openSnapshotStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	hs, err := (&hardStateStorage{store: store, groupID: groupID}).Load()
	if err != nil {
		t.Fatal(err)
	}
	state, err := loadConsumerState(store, groupID)
	if err != nil {
		t.Fatal(err)
	}
	if err := state.restoreFromSnapshot(snapshots, log); err != nil {
		t.Fatal(err)
	}
	if _, applied, err = recoverPartitionState(log, max(hs.Commit, state.appliedIndex())); err != nil {
		t.Fatal(err)
	}
	if err := state.replay(log, applied); err != nil {
		t.Fatal(err)
	}
	got = state.startConfiguration(applied, startVoters(p, hs, log), snapshots, log.FirstIndex())
	inLog, ok = logConfigurationAt(t, log, applied)
	return got, inLog, ok, applied
}

// TestRestartAfterSnapshotRestoreUsesAppliedConfiguration: a follower
// caught up by a snapshot install (its log starts after the snapshot and
// holds no config entry) restarts with the snapshot's configuration as
// its applied configuration and keeps replicating.
func TestRestartAfterSnapshotRestoreUsesAppliedConfiguration(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cluster, client := startManualRetentionCluster(t, ctx, 0)
	var created protocol.TopicReply
	client.admin(protocol.AdminCreateTopic, protocol.CreateTopicRequest{Version: 1, Name: "restored", Partitions: 1, Replicas: 3, RetentionBytes: 24 << 10}, &created)
	if created.Error != nil {
		t.Fatalf("create topic: %v", created.Error)
	}
	c := &leaderClient{testClient: client, leader: 1, nodes: 3, acks: protocol.AcksApplied}
	value := strings.Repeat("s", 500)
	if _, err := c.produce(ctx, "restored", 0, buildBatch(t, value)); err != nil {
		t.Fatal(err)
	}
	follower := currentLeader(t, client, "restored")%3 + 1
	followerLastIndex := replicaOf(t, cluster, follower, "restored").log.LastIndex()
	groupID, dir := replicaOf(t, cluster, follower, "restored").groupID, replicaOf(t, cluster, follower, "restored").dir
	cluster.mu.Lock()
	dataDir := cluster.configs[follower].DataDir
	cluster.mu.Unlock()
	if err := cluster.StopBroker(ctx, follower); err != nil {
		t.Fatal(err)
	}
	var others []*partitionReplica
	for id := uint64(1); id <= 3; id++ {
		if id != follower {
			others = append(others, replicaOf(t, cluster, id, "restored"))
		}
	}
	for attempt := 0; min(others[0].log.FirstIndex(), others[1].log.FirstIndex()) <= followerLastIndex+1; attempt++ {
		for range 10 {
			if _, err := c.produce(ctx, "restored", 0, buildBatch(t, value, value)); err != nil {
				t.Fatal(err)
			}
		}
		for id := uint64(1); id <= 3; id++ {
			if id != follower {
				cluster.Broker(id).runRetention(time.Now())
			}
		}
		if ctx.Err() != nil {
			t.Fatal("retention never passed the follower's last index")
		}
	}
	if err := cluster.StartBroker(ctx, follower); err != nil {
		t.Fatal(err)
	}
	waitFor(ctx, t, "the follower to catch up by a snapshot", func() bool {
		r := localReplica(cluster.Broker(follower), "restored")
		l := leaderReplica(cluster, "restored")
		return r != nil && l != nil && r.state.restores.Load() > 0 && r.group.Status().AppliedIndex == l.group.Status().AppliedIndex
	})
	if err := cluster.StopBroker(ctx, follower); err != nil {
		t.Fatal(err)
	}
	p, _ := partitionMetaOn(cluster.Broker(others[0].group.Status().ID), "restored")
	got, inLog, ok, applied := startConfigurationOnDisk(t, dataDir, dir, groupID, p)
	if ok || !slices.Equal(got.Voters, []uint64{1, 2, 3}) || got.Joint() || len(got.Learners) != 0 {
		t.Fatalf("restored follower at applied index %d: start configuration %s (log holds a config entry: %v, %s), want voters [1 2 3]",
			applied, confString(got), ok, confString(inLog))
	}
	if err := cluster.StartBroker(ctx, follower); err != nil {
		t.Fatal(err)
	}
	if _, err := c.produce(ctx, "restored", 0, buildBatch(t, "after")); err != nil {
		t.Fatal(err)
	}
	waitFor(ctx, t, "the restarted follower to apply as far as the leader", func() bool {
		r := localReplica(cluster.Broker(follower), "restored")
		l := leaderReplica(cluster, "restored")
		if r == nil || l == nil {
			return false
		}
		st := r.group.Status()
		return st.AppliedIndex == l.group.Status().AppliedIndex && slices.Equal(st.Configuration.Voters, []uint64{1, 2, 3})
	})
}
