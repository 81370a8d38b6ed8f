package broker

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/raftmq/raftmq/protocol"
	"github.com/raftmq/raftmq/raft"
	"github.com/raftmq/raftmq/segmentlog"
	"github.com/raftmq/raftmq/snapshot"
)

// Retention deletes whole sealed segments of partition logs by age and
// size (RetentionConfig, per-topic overrides). Before segments go, the
// partition's consumer state is snapshotted (snapshot.Store, one per
// replica, in <replica dir>.snapshots) as of exactly the last index of the
// newest segment deleted, so the group offsets those entries built survive
// and the newest snapshot ends where the log starts: a restart whose state
// database lags the log start restores the snapshot, then replays the log
// after it, and a replica catching up gets the snapshot plus every
// retained segment.
//
// Each replica applies retention to its own log, never waiting for the
// other replicas: a follower that is down or lagging and needs entries the
// leader deleted catches up by Raft's InstallSnapshot (raft/doc.go). The
// leader streams its newest snapshot, which always covers its log start
// (Prune keeps it; snapshots are taken at applied, hence committed,
// indexes); the follower restores the consumer state from it
// (partitionStateMachine.Restore), its log is reset to continue after the
// snapshot's index and record offset, and ordinary replication follows.
// A replica whose start-up finds a received snapshot past its log's end (a
// crash between the install and the log reset) resets the log itself
// (resumeInterruptedRestore) and restores the consumer state from it.

// RetentionConfig is the broker's default retention of partition logs; a
// topic's own settings (protocol.CreateTopicRequest) override it.
type RetentionConfig struct {
	// MaxAge deletes sealed segments sealed longer ago than this. 0 keeps
	// segments whatever their age. Default 7 days.
	MaxAge time.Duration
	// MaxBytes deletes the oldest sealed segments while a partition's log
	// is larger. 0 = no size limit. Default 0.
	MaxBytes int64
	// CheckInterval is how often each replica applies retention. Default 1m.
	CheckInterval time.Duration
	// SnapshotsKept is how many consumer-state snapshots a replica keeps
	// (the newest, and always the one covering the log start). Default 2.
	SnapshotsKept int
}

// DefaultRetentionConfig returns the documented defaults.
func DefaultRetentionConfig() RetentionConfig {
	return RetentionConfig{MaxAge: 7 * 24 * time.Hour, CheckInterval: time.Minute, SnapshotsKept: 2}
}

// Validate reports the first invalid field.
func (c RetentionConfig) Validate() error {
	switch {
	case c.MaxAge < 0:
		return fmt.Errorf("broker: retention MaxAge %v is negative", c.MaxAge)
	case c.MaxBytes < 0:
		return fmt.Errorf("broker: retention MaxBytes %d is negative", c.MaxBytes)
	case c.CheckInterval <= 0:
		return fmt.Errorf("broker: retention CheckInterval %v must be positive", c.CheckInterval)
	case c.SnapshotsKept < 1:
		return fmt.Errorf("broker: retention SnapshotsKept %d must be at least 1", c.SnapshotsKept)
	}
	return nil
}

// consumerSnapshotExtra marks the body format of consumer-state snapshots.
var consumerSnapshotExtra = []byte("raftmq-consumer-state-json-v1")

// consumerSnapshotBody is the body of a consumer-state snapshot.
type consumerSnapshotBody struct {
	Groups        map[string]consumerRecord `json:"groups"`
	HighWatermark uint64                    `json:"high_watermark"`
	// Producers is the idempotent-producer state (dedup.go), by producer id.
	Producers map[int64]*producerRecord `json:"producers,omitempty"`
}

func snapshotDir(replicaDir string) string { return replicaDir + ".snapshots" }

func openSnapshotStore(replicaDir string) (*snapshot.Store, error) {
	store, err := snapshot.OpenStore(vfs.Default, snapshotDir(replicaDir))
	if err != nil {
		return nil, fmt.Errorf("broker: open snapshot store: %w", err)
	}
	return store, nil
}

// restoreFromSnapshot loads the consumer state from the newest snapshot
// when the database's state is older than the log start (segments were
// deleted after a snapshot, the database lost unsynced writes, or a crash
// came between a snapshot install and the state's write).
func (c *consumerState) restoreFromSnapshot(store *snapshot.Store, log *segmentlog.Log) error {
	c.mu.Lock()
	applied := c.applied
	c.mu.Unlock()
	if applied+1 >= log.FirstIndex() {
		return nil
	}
	latest, ok := store.Latest()
	if !ok || latest.Meta.Index+1 < log.FirstIndex() {
		return fmt.Errorf("broker: consumer state of group %d is at index %d, the log starts at %d, and no snapshot covers the gap",
			c.raftGroup, applied, log.FirstIndex())
	}
	reader, err := store.Open(latest.Meta.Index)
	if err != nil {
		return fmt.Errorf("broker: open consumer-state snapshot: %w", err)
	}
	defer reader.Close()
	if _, err := c.restore(latest.Meta, reader); err != nil {
		return fmt.Errorf("broker: consumer-state snapshot %s: %w", latest.Path, err)
	}
	return nil
}

// restore replaces the consumer state (group offsets and producer state)
// with a snapshot's body, as of meta.Index, durably, and returns the
// body's high watermark. It reads body to io.EOF, where the snapshot's
// CRC is checked, before it changes anything.
func (c *consumerState) restore(meta snapshot.Meta, body io.Reader) (uint64, error) {
	data, err := io.ReadAll(body)
	if err != nil {
		return 0, fmt.Errorf("broker: read consumer-state snapshot: %w", err)
	}
	var decoded consumerSnapshotBody
	if err := json.Unmarshal(data, &decoded); err != nil {
		return 0, fmt.Errorf("broker: decode consumer-state snapshot %v: %w", meta.ID(), err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	batch := c.store.db.NewBatch()
	defer batch.Close()
	c.store.forgetConsumerState(batch, c.raftGroup)
	for name, rec := range decoded.Groups {
		_ = batch.Set(consumerKey(c.raftGroup, name), rec.encode(), nil)
	}
	if c.producers != nil {
		c.producers.restore(batch, decoded.Producers, meta.Term)
	}
	_ = batch.Set(groupKey(keyConsumerApplied, c.raftGroup), appendUint64(nil, meta.Index), nil)
	// The snapshot's configuration is the one as of meta.Index; a snapshot
	// without one leaves it unknown (raft then searches its log).
	conf := raftConfigurationOf(meta.Configuration)
	confKnown := len(conf.Voters) > 0
	if confKnown {
		_ = batch.Set(groupKey(keyConsumerConf, c.raftGroup), encodeAppliedConf(true, &conf), nil)
	}
	if err := batch.Commit(pebble.Sync); err != nil {
		return 0, fmt.Errorf("broker: write restored consumer state: %w", err)
	}
	c.conf, c.confSet, c.confKnown, c.confDirty = conf, confKnown, confKnown, false
	c.groups = decoded.Groups
	if c.groups == nil {
		c.groups = map[string]consumerRecord{}
	}
	c.results.forget()
	c.applied, c.writtenIndex, c.unwritten = meta.Index, meta.Index, 0
	return decoded.HighWatermark, nil
}

// resumeInterruptedRestore finishes a snapshot install that a crash
// interrupted after the snapshot was received (and perhaps restored) but
// before the log was reset (raft.ResumeSnapshotInstall): when the store's
// newest snapshot is past the log's last index, or the log holds its index
// with another term (the install replaced a conflicting suffix), the log
// is reset to continue after it, and the consumer state, now behind the
// log start, is restored from it afterwards (restoreFromSnapshot). Only an
// install does that: this replica's own snapshots are taken at applied
// indexes.
func resumeInterruptedRestore(store *snapshot.Store, log *segmentlog.Log) error {
	if _, _, err := raft.ResumeSnapshotInstall(store, log); err != nil {
		return fmt.Errorf("broker: resume an interrupted snapshot install: %w", err)
	}
	return nil
}

func appendUint64(dst []byte, v uint64) []byte {
	return append(dst, byte(v), byte(v>>8), byte(v>>16), byte(v>>24), byte(v>>32), byte(v>>40), byte(v>>48), byte(v>>56))
}

// maxRetentionMs is the longest retention.ms a time.Duration holds.
const maxRetentionMs = int64(math.MaxInt64 / time.Millisecond)

// retentionPolicy is the policy of a topic: its own settings, else the
// broker's defaults; -1 means "no limit" in a topic's settings.
func (b *Broker) retentionPolicy(topic string) segmentlog.RetentionPolicy {
	policy := segmentlog.RetentionPolicy{MaxAge: b.cfg.Retention.MaxAge, MaxBytes: b.cfg.Retention.MaxBytes}
	if t := b.currentMetadata().Topics[topic]; t != nil {
		switch {
		case t.RetentionMs > maxRetentionMs, t.RetentionMs < 0:
			// Beyond what a Duration holds (292 years; Kafka users
			// write Long.MAX_VALUE for "forever") is no limit too.
			policy.MaxAge = 0
		case t.RetentionMs > 0:
			policy.MaxAge = time.Duration(t.RetentionMs) * time.Millisecond
		}
		switch {
		case t.RetentionBytes > 0:
			policy.MaxBytes = t.RetentionBytes
		case t.RetentionBytes < 0:
			policy.MaxBytes = 0
		}
	}
	return policy
}

// runRetention applies retention to every local replica; called from the
// broker loop every CheckInterval, on its own goroutine.
func (b *Broker) runRetention(now time.Time) {
	b.mu.RLock()
	replicas := make([]*partitionReplica, 0, len(b.groups))
	for _, r := range b.groups {
		replicas = append(replicas, r)
	}
	b.mu.RUnlock()
	for _, r := range replicas {
		deleted, err := b.applyRetention(r, now)
		switch {
		case errors.Is(err, segmentlog.ErrClosed):
		case err != nil:
			b.logger.Warn("retention", "topic", r.topic, "partition", r.partition, "err", err)
		case deleted > 0:
			b.logger.Info("retention deleted segments", "topic", r.topic, "partition", r.partition, "segments", deleted,
				"log_start_index", r.log.FirstIndex(), "log_start_offset", r.log.FirstOffset())
		}
	}
}

// applyRetention deletes the sealed segments r's policy allows, once this
// replica applied them and a consumer-state snapshot covers them. The
// snapshot is taken as of exactly the last index of the newest segment to
// delete (snapshotAtIndex), so after the deletion the newest snapshot ends
// where the log starts: a replica that catches up by InstallSnapshot gets
// that snapshot and then every retained segment, the same records at the
// same offsets as the leader. When the policy's boundary lies past what
// this replica applied (it restarted, or its apply lags), nothing is
// deleted until it applied that far. Other replicas are not waited for:
// one that needs deleted entries gets the snapshot (see the comment at the
// top of this file).
func (b *Broker) applyRetention(r *partitionReplica, now time.Time) (int, error) {
	if r.stopped.Load() {
		return 0, nil
	}
	if err := b.pruneSnapshots(r); err != nil {
		return 0, err
	}
	policy := b.retentionPolicy(r.topic)
	if policy.MaxAge == 0 && policy.MaxBytes == 0 {
		return 0, nil
	}
	limit := r.log.RetentionIndex(policy, now) // the first index of a segment
	if limit <= r.log.FirstIndex() || limit > r.group.Status().AppliedIndex+1 {
		return 0, nil
	}
	covered := uint64(0)
	if latest, ok := r.snapshots.Latest(); ok {
		covered = latest.Meta.Index
	}
	if covered+1 < limit {
		info, err := b.snapshotAtIndex(r, limit-1)
		if err != nil {
			return 0, err
		}
		covered = info.Meta.Index
	}
	r.retention.Lock()
	defer r.retention.Unlock()
	if r.stopped.Load() {
		return 0, nil
	}
	deleted, err := r.log.DeleteBefore(min(limit, covered+1))
	if err != nil {
		return deleted, err
	}
	return deleted, b.pruneSnapshotsLocked(r)
}

// pruneSnapshots removes r's snapshots beyond the kept count, keeping the
// one its log start needs, on every retention pass: also when the pass
// deletes nothing, as on a follower that installed snapshots from its
// leader (its log is then one segment) or a topic that retains all.
func (b *Broker) pruneSnapshots(r *partitionReplica) error {
	if len(r.snapshots.List()) <= b.cfg.Retention.SnapshotsKept {
		return nil
	}
	r.retention.Lock()
	defer r.retention.Unlock()
	if r.stopped.Load() {
		return nil
	}
	return b.pruneSnapshotsLocked(r)
}

// pruneSnapshotsLocked keeps r's kept count of snapshots and the one its
// log start needs (r.retention held, r not stopped).
func (b *Broker) pruneSnapshotsLocked(r *partitionReplica) error {
	if _, err := r.snapshots.Prune(b.cfg.Retention.SnapshotsKept, r.log.FirstIndex()-1); err != nil {
		return fmt.Errorf("prune snapshots: %w", err)
	}
	return nil
}

// snapshotBase is the consumer state a boundary snapshot starts from.
type snapshotBase struct {
	index         uint64
	body          consumerSnapshotBody
	configuration snapshot.Configuration
}

// snapshotAtIndex writes r's consumer state as of index (applied, and held
// by the log), without stopping the partition: it starts from the newest
// snapshot at or below index (or from the empty state of a log that still
// starts at index 1), replays the log's entries up to index into a scratch
// in-memory state (the same deterministic apply as the replica's, so the
// result is what every replica holds at index), and records the Raft
// configuration as of index (the newest EntryConfig entry at or below it).
func (b *Broker) snapshotAtIndex(r *partitionReplica, index uint64) (snapshot.Info, error) {
	base, err := b.snapshotBaseFor(r, index)
	if err != nil {
		return snapshot.Info{}, err
	}
	db, err := pebble.Open("", &pebble.Options{FS: vfs.NewMem(), Logger: quietPebbleLogger{}})
	if err != nil {
		return snapshot.Info{}, fmt.Errorf("scratch state: %w", err)
	}
	defer db.Close()
	scratch := &stateStore{db: db}
	state := &consumerState{store: scratch, raftGroup: r.groupID, groups: base.body.Groups,
		applied: base.index, writtenIndex: base.index}
	if state.groups == nil {
		state.groups = map[string]consumerRecord{}
	}
	state.producers = newProducerState(scratch, r.groupID, r.log)
	b.configureProducerState(state.producers)
	for id, rec := range base.body.Producers {
		if rec != nil {
			state.producers.applied[id] = rec
		}
	}
	configuration, nextOffset := base.configuration, base.body.HighWatermark
	for from := base.index + 1; from <= index; {
		entries, err := r.log.Entries(from, index+1, 4<<20)
		if err != nil {
			return snapshot.Info{}, fmt.Errorf("replay to index %d: %w", index, err)
		}
		if err := state.apply(entries); err != nil {
			return snapshot.Info{}, err
		}
		for i := range entries {
			e := &entries[i]
			switch e.Type {
			case protocol.EntryConfig:
				conf, err := protocol.DecodeRaftConfiguration(e.Data)
				if err != nil {
					return snapshot.Info{}, fmt.Errorf("configuration entry %d: %w", e.Index, err)
				}
				configuration = snapshot.Configuration{Voters: conf.Voters, OutgoingVoters: conf.OutgoingVoters, Learners: conf.Learners}
			case protocol.EntryRecordBatch:
				h, err := protocol.ReadBatchHeader(e.Data)
				if err != nil {
					return snapshot.Info{}, fmt.Errorf("record batch entry %d: %w", e.Index, err)
				}
				nextOffset = h.BaseOffset + uint64(h.RecordCount)
			}
		}
		from = entries[len(entries)-1].Index + 1
	}
	term, err := r.log.Term(index)
	if err != nil {
		return snapshot.Info{}, err
	}
	groups, _ := state.all()
	body, err := json.Marshal(consumerSnapshotBody{Groups: groups, HighWatermark: nextOffset, Producers: state.producers.records()})
	if err != nil {
		return snapshot.Info{}, err
	}
	if hook := b.beforeSnapshotCreate.Load(); hook != nil {
		(*hook)(r)
	}
	r.retention.Lock()
	defer r.retention.Unlock()
	if r.stopped.Load() {
		return snapshot.Info{}, segmentlog.ErrClosed
	}
	w, err := r.snapshots.Create(snapshot.Meta{Index: index, Term: term, NextOffset: nextOffset,
		Configuration: configuration, Extra: consumerSnapshotExtra})
	if err != nil {
		return snapshot.Info{}, err
	}
	if _, err := w.Write(body); err != nil {
		_ = w.Abort()
		return snapshot.Info{}, err
	}
	info, err := w.Commit()
	if err != nil {
		return snapshot.Info{}, err
	}
	// Before any entry it covers is deleted: a leader can now stream it
	// to followers that wait for one.
	r.group.SnapshotTaken(info.Meta)
	return info, nil
}

// snapshotBaseFor finds the state a snapshot as of index starts from.
func (b *Broker) snapshotBaseFor(r *partitionReplica, index uint64) (snapshotBase, error) {
	if latest, ok := r.snapshots.Latest(); ok && latest.Meta.Index <= index && latest.Meta.Index+1 >= r.log.FirstIndex() {
		reader, err := r.snapshots.Open(latest.Meta.Index)
		if err != nil {
			return snapshotBase{}, fmt.Errorf("open consumer-state snapshot: %w", err)
		}
		defer reader.Close()
		data, err := io.ReadAll(reader)
		if err != nil {
			return snapshotBase{}, fmt.Errorf("read consumer-state snapshot %s: %w", latest.Path, err)
		}
		base := snapshotBase{index: latest.Meta.Index, configuration: latest.Meta.Configuration}
		if err := json.Unmarshal(data, &base.body); err != nil {
			return snapshotBase{}, fmt.Errorf("decode consumer-state snapshot %s: %w", latest.Path, err)
		}
		base.body.HighWatermark = latest.Meta.NextOffset
		return base, nil
	}
	if r.log.FirstIndex() != 1 {
		return snapshotBase{}, fmt.Errorf("no snapshot covers the log start %d (snapshot wanted as of %d)", r.log.FirstIndex(), index)
	}
	// The group's configuration as of index 0 is its bootstrap one.
	var voters []uint64
	if t := b.currentMetadata().Topics[r.topic]; t != nil && int(r.partition) < len(t.Partitions) && t.Partitions[r.partition].GroupID == r.groupID {
		voters = t.Partitions[r.partition].bootstrapVoters()
	}
	return snapshotBase{configuration: snapshot.Configuration{Voters: slices.Clone(voters)}, body: consumerSnapshotBody{HighWatermark: r.log.FirstOffset()}}, nil
}
