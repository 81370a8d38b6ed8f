package raft

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/raftmq/raftmq/protocol"
	"github.com/raftmq/raftmq/segmentlog"
	"github.com/raftmq/raftmq/snapshot"
)

// BenchmarkLearnerCatchUp measures how fast a new learner with an empty
// disk catches up with a leader whose log was compacted behind a snapshot:
// the leader streams the snapshot (InstallSnapshot in chunks of
// MaxAppendBytes), the learner restores it and resets its log, then
// receives the retained log by AppendEntries, all on real files (segmentlog
// and snapshot.Store on the OS file system, fsync included) with an
// in-process transport. The clock runs from AddLearner until the learner
// applied the leader's last index. Beside it, in the same run, the same
// bytes (the leader's snapshot file and segment files) are copied with a
// plain read/write/fsync file copy: copy-MB/s is the baseline, ratio is
// catch-up speed over copy speed.
//
// The size is RAFTMQ_CATCHUP_BYTES (default 64 MiB), one eighth of it in the
// snapshot and the rest in the log. The 1 GiB run of issue 4:
//
//	RAFTMQ_CATCHUP_BYTES=1073741824 go test ./raft -run '^$' -bench BenchmarkLearnerCatchUp -benchtime=1x
func BenchmarkLearnerCatchUp(b *testing.B) {
	total := uint64(64 << 20)
	if v := os.Getenv("RAFTMQ_CATCHUP_BYTES"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			b.Fatalf("RAFTMQ_CATCHUP_BYTES: %v", err)
		}
		total = n
	}
	const entryBytes = 64 << 10
	snapshotBytes := total / 8
	logEntries := (total - snapshotBytes) / entryBytes
	dir := b.TempDir()
	cl := &catchUpCluster{b: b, hosts: map[uint64]*Host{}}
	leader := cl.startLeader(filepath.Join(dir, "leader"), snapshotBytes, logEntries, entryBytes)
	leaderLast := leader.Status().LastIndex
	copyBytes := dirBytes(b, filepath.Join(dir, "leader"))
	b.SetBytes(int64(copyBytes))
	b.ReportAllocs()
	var catchUp, plainCopy, snapshotPhase time.Duration
	b.ResetTimer()
	for i := range b.N {
		id := uint64(2 + i)
		learnerDir := filepath.Join(dir, fmt.Sprintf("learner-%d", id))
		start := time.Now()
		learner := cl.startLearner(id, learnerDir)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
		if err := leader.AddLearner(ctx, id); err != nil {
			b.Fatal(err)
		}
		var restored time.Duration
		for learner.Status().AppliedIndex < leaderLast {
			if restored == 0 && learner.fsm.restores.Load() > 0 {
				restored = time.Since(start)
			}
			time.Sleep(time.Millisecond)
		}
		catchUp += time.Since(start)
		snapshotPhase += restored
		b.StopTimer()
		if learner.fsm.restores.Load() != 1 {
			b.Fatalf("learner restored %d snapshots, want 1", learner.fsm.restores.Load())
		}
		if err := leader.ChangeMembership(ctx, MembershipChange{Remove: []uint64{id}}); err != nil {
			b.Fatal(err)
		}
		cancel()
		cl.stop(id)
		_ = os.RemoveAll(learnerDir)
		copyDir := filepath.Join(dir, "copy")
		start = time.Now()
		copyTree(b, filepath.Join(dir, "leader"), copyDir)
		plainCopy += time.Since(start)
		_ = os.RemoveAll(copyDir)
		b.StartTimer()
	}
	b.StopTimer()
	mb := float64(copyBytes) * float64(b.N) / 1e6
	catchUpRate, copyRate := mb/catchUp.Seconds(), mb/plainCopy.Seconds()
	b.ReportMetric(catchUpRate, "catchup-MB/s")
	b.ReportMetric(copyRate, "copy-MB/s")
	b.ReportMetric(catchUpRate/copyRate, "ratio")
	b.Logf("learner catch-up of %d bytes (snapshot %d, %d log entries of %d): %.1f MB/s (%v, snapshot restored after %v); plain file copy of the same files: %.1f MB/s (ratio %.2f)",
		copyBytes, snapshotBytes, logEntries, entryBytes, catchUpRate, catchUp/time.Duration(b.N), snapshotPhase/time.Duration(b.N), copyRate, catchUpRate/copyRate)
}

// catchUpCluster is a leader and learners on real files, joined by an
// in-process transport.
type catchUpCluster struct {
	b     *testing.B
	mu    sync.RWMutex
	hosts map[uint64]*Host
}

type catchUpGroup struct {
	*Group
	fsm *countingRestorer
}

// countingRestorer is a state machine that keeps nothing: it reads a
// snapshot body to the end and counts.
type countingRestorer struct {
	restores atomic.Int64
	applied  atomic.Uint64
}

func (f *countingRestorer) Apply(ents []protocol.Entry) error {
	f.applied.Store(ents[len(ents)-1].Index)
	return nil
}

func (f *countingRestorer) Restore(meta snapshot.Meta, body io.Reader) error {
	if _, err := io.Copy(io.Discard, body); err != nil {
		return err
	}
	f.restores.Add(1)
	return nil
}

func (cl *catchUpCluster) send(msgs []protocol.RaftMessage) {
	cl.mu.RLock()
	defer cl.mu.RUnlock()
	for _, m := range msgs {
		if h := cl.hosts[m.To]; h != nil {
			h.Step(m)
		}
	}
}

func (cl *catchUpCluster) newHost(id uint64) *Host {
	h, err := NewHost(HostConfig{NodeID: id, Send: cl.send, Seed: id})
	if err != nil {
		cl.b.Fatal(err)
	}
	cl.mu.Lock()
	cl.hosts[id] = h
	cl.mu.Unlock()
	cl.b.Cleanup(func() { _ = h.Close() })
	return h
}

func (cl *catchUpCluster) open(dir string) (*segmentlog.Log, *snapshot.Store) {
	log, err := segmentlog.Open(vfs.Default, filepath.Join(dir, "log"), segmentlog.DefaultOptions())
	if err != nil {
		cl.b.Fatal(err)
	}
	cl.b.Cleanup(func() { _ = log.Close() })
	store, err := snapshot.OpenStore(vfs.Default, filepath.Join(dir, "snapshots"))
	if err != nil {
		cl.b.Fatal(err)
	}
	return log, store
}

// startLeader writes a snapshot at index 16 with snapshotBytes of random
// state, a log of logEntries entries after it, and starts node 1 as the
// single voter; it returns once node 1 leads.
func (cl *catchUpCluster) startLeader(dir string, snapshotBytes, logEntries uint64, entryBytes int) *Group {
	b := cl.b
	log, store := cl.open(dir)
	const snapIndex = 16
	meta := snapshot.Meta{Index: snapIndex, Term: 1, Configuration: snapshot.Configuration{Voters: []uint64{1}}}
	w, err := store.Create(meta)
	if err != nil {
		b.Fatal(err)
	}
	rng := rand.NewChaCha8([32]byte{1})
	buf := make([]byte, 1<<20)
	for left := snapshotBytes; left > 0; left -= min(left, uint64(len(buf))) {
		_, _ = rng.Read(buf) // incompressible: the stream carries every byte
		if _, err := w.Write(buf[:min(left, uint64(len(buf)))]); err != nil {
			b.Fatal(err)
		}
	}
	if _, err := w.Commit(); err != nil {
		b.Fatal(err)
	}
	if err := log.ResetOffsets(snapIndex+1, 1, 0); err != nil {
		b.Fatal(err)
	}
	data := make([]byte, entryBytes)
	_, _ = rng.Read(data)
	batch := make([]protocol.Entry, 0, 64)
	for i := range logEntries {
		e := protocol.Entry{Index: snapIndex + 1 + i, Term: 1, Type: protocol.EntryControl, Data: slicesCloneWithIndex(data, i)}
		batch = append(batch, e)
		if len(batch) == cap(batch) || i == logEntries-1 {
			if err := log.Append(batch); err != nil {
				b.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	if _, err := log.Sync(); err != nil {
		b.Fatal(err)
	}
	last := log.LastIndex()
	h := cl.newHost(1)
	cfg := DefaultGroupConfig()
	cfg.GroupID, cfg.Voters = 1, []uint64{1}
	fsm := &countingRestorer{}
	cfg.Log, cfg.Stable, cfg.StateMachine, cfg.Snapshots = log, &memStable{hs: HardState{Term: 1, Commit: last}}, fsm, store
	cfg.Applied = last
	// Start-up: without AppliedConfiguration AddGroup scans the log back
	// for its newest config entry; this one has none, so it reads the
	// whole log down to the snapshot. With it, only the log after Applied.
	start := time.Now()
	g, err := h.AddGroup(cfg)
	if err != nil {
		b.Fatal(err)
	}
	scan := time.Since(start)
	if err := h.RemoveGroup(cfg.GroupID); err != nil {
		b.Fatal(err)
	}
	cfg.AppliedConfiguration = protocol.RaftConfiguration{Voters: []uint64{1}}
	start = time.Now()
	g, err = h.AddGroup(cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("leader AddGroup on a log of %d entries: %v; with AppliedConfiguration: %v", logEntries, scan.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
	deadline := time.Now().Add(time.Minute)
	for g.Status().Role != RoleLeader || g.Status().CommitIndex <= last {
		if time.Now().After(deadline) {
			b.Fatalf("no leader: %+v", g.Status())
		}
		time.Sleep(time.Millisecond)
	}
	return g
}

// slicesCloneWithIndex returns a copy of data whose first bytes hold i.
func slicesCloneWithIndex(data []byte, i uint64) []byte {
	out := append([]byte(nil), data...)
	binary.LittleEndian.PutUint64(out, i)
	return out
}

func (cl *catchUpCluster) startLearner(id uint64, dir string) *catchUpGroup {
	log, store := cl.open(dir)
	h := cl.newHost(id)
	cfg := DefaultGroupConfig()
	cfg.GroupID = 1 // no Voters: it learns the configuration from the leader
	fsm := &countingRestorer{}
	cfg.Log, cfg.Stable, cfg.StateMachine, cfg.Snapshots = log, &memStable{}, fsm, store
	g, err := h.AddGroup(cfg)
	if err != nil {
		cl.b.Fatal(err)
	}
	return &catchUpGroup{Group: g, fsm: fsm}
}

func (cl *catchUpCluster) stop(id uint64) {
	cl.mu.Lock()
	h := cl.hosts[id]
	delete(cl.hosts, id)
	cl.mu.Unlock()
	_ = h.Close()
}

// dirBytes is the total size of the regular files under dir.
func dirBytes(b *testing.B, dir string) uint64 {
	var total uint64
	err := filepath.Walk(dir, func(_ string, info os.FileInfo, err error) error {
		if err == nil && info.Mode().IsRegular() {
			total += uint64(info.Size())
		}
		return err
	})
	if err != nil {
		b.Fatal(err)
	}
	return total
}

// copyTree copies every regular file under src to dst, fsyncing each file
// and directory: the plain-copy baseline.
func copyTree(b *testing.B, src, dst string) {
	err := filepath.Walk(src, func(path string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		target := filepath.Join(dst, rel)
		if info.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		if !info.Mode().IsRegular() {
			return nil
		}
		in, err := os.Open(path)
		if err != nil {
			return err
		}
		defer in.Close()
		out, err := os.Create(target)
		if err != nil {
			return err
		}
		if _, err := io.Copy(out, in); err != nil {
			out.Close()
			return err
		}
		if err := out.Sync(); err != nil {
			out.Close()
			return err
		}
		return out.Close()
	})
	if err != nil {
		b.Fatal(err)
	}
	if d, err := os.Open(dst); err == nil {
		_ = d.Sync()
		d.Close()
	}
}
