package broker

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/cockroachdb/pebble/v2"

	"github.com/raftmq/raftmq/protocol"
	"github.com/raftmq/raftmq/segmentlog"
	"github.com/raftmq/raftmq/snapshot"
)

// Keys of a partition's consumer state in the state database.
const (
	// 'o' + raft group id (8 bytes BE) + consumer group name -> consumerRecord
	keyConsumerOffset = 'o'
	// 'a' + raft group id -> the log index the consumer state is current as
	// of (u64 LE): every control entry up to it is in the database.
	keyConsumerApplied = 'a'
	// 'c' + raft group id -> the Raft configuration as of the index under
	// 'a' (encodeAppliedConf), written in the same batch as it.
	keyConsumerConf = 'c'
)

// consumerStateWriteEvery bounds how many applied entries without a
// consumer op may pass before the applied index is written anyway, which
// bounds the log a restart replays.
const consumerStateWriteEvery = 4096

// consumerStateWriteBytes bounds, likewise, the entry bytes applied between
// two writes: a restart reads that much log back (replay) at most.
const consumerStateWriteBytes = 16 << 20

// consumerRecord is one consumer group's state on one partition.
type consumerRecord struct {
	Committed bool   `json:"committed"` // an offset was committed (else only an epoch was claimed)
	Offset    uint64 `json:"offset"`
	Epoch     uint64 `json:"epoch"`
	Time      int64  `json:"time"` // commit time, unix ms (leader clock at proposal)
	Member    string `json:"member"`
	Metadata  string `json:"metadata"`
	// Deleted marks a deleted group's tombstone: the group has no state on
	// the partition.
	Deleted bool `json:"deleted,omitempty"`
	// Fence, set by a delete or a reset of offsets (its controller
	// index), fences the members of the group before it: a commit or
	// claim with an assignment epoch (not 0) below it is stale. A group
	// created again under the name, or a member that joins after the
	// reset, gets higher epochs.
	Fence uint64 `json:"fence,omitempty"`
}

func (r *consumerRecord) encode() []byte {
	out := make([]byte, 0, 1+24+4+len(r.Member)+len(r.Metadata))
	flags := byte(0)
	if r.Committed {
		flags = 1
	}
	if r.Deleted {
		flags |= 2
	}
	if r.Fence != 0 {
		flags |= 4
	}
	out = append(out, flags)
	out = binary.LittleEndian.AppendUint64(out, r.Offset)
	out = binary.LittleEndian.AppendUint64(out, r.Epoch)
	out = binary.LittleEndian.AppendUint64(out, uint64(r.Time))
	out = appendShortString(out, r.Member)
	out = appendShortString(out, r.Metadata)
	if r.Fence != 0 {
		out = binary.LittleEndian.AppendUint64(out, r.Fence)
	}
	return out
}

func decodeConsumerRecord(b []byte) (consumerRecord, error) {
	var r consumerRecord
	if len(b) < 25 {
		return r, fmt.Errorf("broker: consumer record of %d bytes (corrupt state database)", len(b))
	}
	r.Committed = b[0]&1 != 0
	r.Deleted = b[0]&2 != 0
	r.Offset = binary.LittleEndian.Uint64(b[1:])
	r.Epoch = binary.LittleEndian.Uint64(b[9:])
	r.Time = int64(binary.LittleEndian.Uint64(b[17:]))
	rest := b[25:]
	var ok bool
	if r.Member, rest, ok = readShortString(rest); !ok {
		return r, errors.New("broker: truncated consumer record (corrupt state database)")
	}
	if r.Metadata, rest, ok = readShortString(rest); !ok {
		return r, errors.New("broker: truncated consumer record (corrupt state database)")
	}
	if b[0]&4 != 0 {
		if len(rest) < 8 {
			return r, errors.New("broker: truncated consumer record (corrupt state database)")
		}
		r.Fence = binary.LittleEndian.Uint64(rest)
	}
	return r, nil
}

func appendShortString(dst []byte, s string) []byte {
	if len(s) > 0xffff {
		s = s[:0xffff]
	}
	dst = binary.LittleEndian.AppendUint16(dst, uint16(len(s)))
	return append(dst, s...)
}

func readShortString(b []byte) (string, []byte, bool) {
	if len(b) < 2 {
		return "", nil, false
	}
	n := int(binary.LittleEndian.Uint16(b))
	if len(b) < 2+n {
		return "", nil, false
	}
	return string(b[2 : 2+n]), b[2+n:], true
}

func consumerKey(raftGroup uint64, group string) []byte {
	k := groupKey(keyConsumerOffset, raftGroup)
	return append(k, group...)
}

// consumerState is a partition replica's consumer state: each consumer
// group's committed offset and assignment epoch. It is built only by
// applying the partition log's consumer-op control entries, in log order,
// so every replica holds the same state at the same applied index. The
// state is in the broker's Pebble database (written without sync: Raft's
// synced hard state writes, and the log itself, make it recoverable; a
// restart replays the control entries after the stored applied index) and
// mirrored in memory for reads.
type consumerState struct {
	store     *stateStore
	raftGroup uint64

	mu           sync.Mutex
	applied      uint64 // consumer state is current as of this index
	writtenIndex uint64 // the applied index last written to the database
	unwritten    int    // entry bytes applied since writtenIndex
	groups       map[string]consumerRecord
	producers    *producerState // idempotent producers (dedup.go); nil in some tests

	// The Raft configuration as of applied (raft.GroupConfig.
	// AppliedConfiguration): conf is that of the newest config entry
	// applied or snapshot restored when confSet, else no config entry was
	// applied (the group's bootstrap voters are in effect). confKnown is
	// false when the state predates this record (an older database) until
	// a config entry or a snapshot sets it; confDirty when it changed since
	// it was last written.
	conf      protocol.RaftConfiguration
	confSet   bool
	confKnown bool
	confDirty bool

	// results holds the outcome of each op of the consumer-ops entries
	// applied, for their proposers (proposeOps). It has a mutex of its own.
	results proposerResults[[]*protocol.Error]
}

// encodeAppliedConf encodes the configuration record: version 1, then 0
// (no config entry applied: the bootstrap voters) or 1 and the
// configuration (protocol.AppendRaftConfiguration).
func encodeAppliedConf(set bool, conf *protocol.RaftConfiguration) []byte {
	if !set {
		return []byte{1, 0}
	}
	return protocol.AppendRaftConfiguration([]byte{1, 1}, conf)
}

func decodeAppliedConf(b []byte) (set bool, conf protocol.RaftConfiguration, err error) {
	if len(b) < 2 || b[0] != 1 || b[1] > 1 {
		return false, conf, fmt.Errorf("broker: configuration record %x (corrupt state database)", b)
	}
	if b[1] == 0 {
		return false, conf, nil
	}
	conf, err = protocol.DecodeRaftConfiguration(b[2:])
	if err != nil {
		return false, conf, fmt.Errorf("broker: configuration record: %w (corrupt state database)", err)
	}
	return true, conf, nil
}

// loadConsumerState reads a partition's consumer state from the database.
func loadConsumerState(store *stateStore, raftGroup uint64) (*consumerState, error) {
	c := &consumerState{store: store, raftGroup: raftGroup, groups: map[string]consumerRecord{}}
	v, err := store.get(groupKey(keyConsumerApplied, raftGroup))
	if err != nil {
		return nil, fmt.Errorf("broker: load consumer state of group %d: %w", raftGroup, err)
	}
	if len(v) == 8 {
		c.applied = binary.LittleEndian.Uint64(v)
		c.writtenIndex = c.applied
	}
	confRecord, err := store.get(groupKey(keyConsumerConf, raftGroup))
	if err != nil {
		return nil, fmt.Errorf("broker: load consumer state of group %d: %w", raftGroup, err)
	}
	switch {
	case confRecord != nil:
		if c.confSet, c.conf, err = decodeAppliedConf(confRecord); err != nil {
			return nil, fmt.Errorf("broker: load consumer state of group %d: %w", raftGroup, err)
		}
		c.confKnown = true
	case v == nil:
		// A new replica: every config entry will be applied here.
		c.confKnown, c.confDirty = true, true
	}
	prefix := groupKey(keyConsumerOffset, raftGroup)
	iter, err := store.db.NewIter(&pebble.IterOptions{LowerBound: prefix, UpperBound: groupKey(keyConsumerOffset, raftGroup+1)})
	if err != nil {
		return nil, err
	}
	for iter.First(); iter.Valid(); iter.Next() {
		rec, err := decodeConsumerRecord(iter.Value())
		if err != nil {
			iter.Close()
			return nil, err
		}
		c.groups[string(iter.Key()[len(prefix):])] = rec
	}
	if err := iter.Error(); err != nil {
		iter.Close()
		return nil, err
	}
	return c, iter.Close()
}

// replay applies the control entries of log in (applied, upTo], after a
// restart. Entries the log no longer holds (deleted by retention, which
// never deletes past the stored applied index) cannot be replayed.
func (c *consumerState) replay(log *segmentlog.Log, upTo uint64) error {
	c.mu.Lock()
	from := c.applied + 1
	c.mu.Unlock()
	if from > upTo {
		return nil
	}
	if from < log.FirstIndex() {
		return fmt.Errorf("broker: consumer state of group %d is at index %d but the log starts at %d", c.raftGroup, from-1, log.FirstIndex())
	}
	for from <= upTo {
		entries, err := log.Entries(from, upTo+1, 4<<20)
		if err != nil {
			return fmt.Errorf("broker: replay consumer state: %w", err)
		}
		if err := c.apply(entries); err != nil {
			return err
		}
		from = entries[len(entries)-1].Index + 1
	}
	return nil
}

// apply applies the consumer ops in entries (skipping entries at or below
// the state's applied index) and writes the changes in one database batch.
func (c *consumerState) apply(entries []protocol.Entry) error {
	if len(entries) == 0 {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	batch := c.store.db.NewBatch()
	defer batch.Close()
	changed := false
	for i := range entries {
		e := &entries[i]
		if e.Index <= c.applied {
			continue
		}
		if c.producers != nil {
			written, err := c.producers.apply(batch, e)
			if err != nil {
				return err
			}
			changed = changed || written
		}
		if e.Type == protocol.EntryControl && len(e.Data) > 0 && e.Data[0] == protocol.ControlConsumerOps {
			ops, err := protocol.DecodeConsumerOps(e.Data)
			if err != nil {
				// Same bytes on every replica, so the same outcome: skipped.
				c.results.keep(e.Index, nil)
				continue
			}
			c.results.keep(e.Index, c.applyOps(batch, ops))
			changed = true
		}
		if e.Type == protocol.EntryConfig {
			conf, err := protocol.DecodeRaftConfiguration(e.Data)
			if err != nil {
				return fmt.Errorf("broker: applied config entry %d of group %d: %w", e.Index, c.raftGroup, err)
			}
			c.conf, c.confSet, c.confKnown, c.confDirty = conf, true, true, true
			changed = true
		}
		c.applied = e.Index
		c.unwritten += len(e.Data)
	}
	if !changed && c.applied-c.writtenIndex < consumerStateWriteEvery && c.unwritten < consumerStateWriteBytes {
		return nil
	}
	_ = batch.Set(groupKey(keyConsumerApplied, c.raftGroup), binary.LittleEndian.AppendUint64(nil, c.applied), nil)
	if c.confKnown && c.confDirty {
		_ = batch.Set(groupKey(keyConsumerConf, c.raftGroup), encodeAppliedConf(c.confSet, &c.conf), nil)
	}
	if err := batch.Commit(pebble.NoSync); err != nil {
		return fmt.Errorf("broker: write consumer state of group %d: %w", c.raftGroup, err)
	}
	c.writtenIndex = c.applied
	c.unwritten = 0
	c.confDirty = false
	return nil
}

// applyOps applies one entry's ops; it is deterministic.
func (c *consumerState) applyOps(batch *pebble.Batch, ops []protocol.ConsumerOp) []*protocol.Error {
	results := make([]*protocol.Error, len(ops))
	for i, op := range ops {
		rec, exists := c.groups[op.Group]
		switch op.Kind {
		case protocol.ConsumerOpCommit, protocol.ConsumerOpClaim:
			if op.Epoch < rec.Epoch {
				results[i] = protocol.Errorf(protocol.CodeStaleEpoch, "group %q: assignment epoch %d is older than the partition's %d (owned by %q now)",
					op.Group, op.Epoch, rec.Epoch, rec.Member)
				continue
			}
			if op.Epoch != 0 && op.Epoch < rec.Fence {
				results[i] = protocol.Errorf(protocol.CodeStaleEpoch, "group %q: assignment epoch %d was granted before the group was deleted or its offsets reset (%d)",
					op.Group, op.Epoch, rec.Fence)
				continue
			}
			rec.Epoch = op.Epoch
			rec.Member = op.Member
			rec.Deleted = false
			if op.Kind == protocol.ConsumerOpCommit {
				rec.Committed, rec.Offset, rec.Time, rec.Metadata = true, op.Offset, op.Time, op.Metadata
			}
		case protocol.ConsumerOpReset:
			if op.Epoch != 0 {
				if results[i] = checkReset(op, rec); results[i] != nil {
					continue
				}
				rec.Fence = op.Epoch
				// An epoch past the reset's that checkReset let through
				// is a made-up one (grantedAfter): the members the reset
				// admits get epochs above its index.
				rec.Epoch = min(rec.Epoch, op.Epoch)
			}
			rec.Committed, rec.Offset, rec.Time, rec.Metadata, rec.Member = true, op.Offset, op.Time, op.Metadata, ""
			rec.Deleted = false
		case protocol.ConsumerOpDelete, protocol.ConsumerOpDeleteAndFence:
			if exists && !rec.Deleted && op.Epoch != 0 && (grantedAfter(rec.Epoch, op.Epoch) || grantedAfter(rec.Fence, op.Epoch)) {
				// The record's epoch, a grant's controller index, or its
				// fence, a reset's, is above the delete's: the group was
				// created again, or its offsets reset, after the delete,
				// and this record is newer. The delete, applied late
				// here, is older than it and keeps it.
				results[i] = protocol.Errorf(protocol.CodeUnknownGroup, "group %q on this partition is newer than the delete (epoch %d above %d); kept",
					op.Group, max(rec.Epoch, rec.Fence), op.Epoch)
				continue
			}
			if !exists || rec.Deleted {
				results[i] = protocol.Errorf(protocol.CodeUnknownGroup, "group %q has no state on this partition", op.Group)
				if op.Epoch == 0 || !exists && op.Kind == protocol.ConsumerOpDelete {
					continue
				}
				// A tombstone still takes the new delete's fence, and a
				// delete-and-fence leaves one where the group had no
				// record (below): a member granted the partition before
				// the delete may claim it after.
			}
			if op.Epoch == 0 {
				// A delete logged before tombstones: forget the group.
				delete(c.groups, op.Group)
				_ = batch.Delete(consumerKey(c.raftGroup, op.Group), nil)
				continue
			}
			// The coordinator's delete carries its controller index, above
			// every epoch granted to the group's members before, claimed
			// here or not: the fence. A tombstone's fence from a later
			// delete stays (a late delete must not lower it); one no
			// controller index could reach soon (a delete a client sent
			// with a made-up epoch) is replaced. Commits without a group
			// (epoch 0) stay possible.
			fence := op.Epoch
			if rec.Deleted && grantedAfter(rec.Fence, op.Epoch) {
				fence = rec.Fence
			}
			rec = consumerRecord{Deleted: true, Fence: fence}
		}
		c.groups[op.Group] = rec
		_ = batch.Set(consumerKey(c.raftGroup, op.Group), rec.encode(), nil)
	}
	return results
}

// checkReset says whether a reset op with an epoch (the controller index
// of the coordinator's check that the group had no members) may apply to
// the group's record: not when a member claimed the partition after the
// check (its epoch is above it: it may have read the offset before the
// reset), nor when the record is fenced by a later delete or reset.
// Resets logged before they carried the index (epoch 0) are not checked.
func checkReset(op protocol.ConsumerOp, rec consumerRecord) *protocol.Error {
	if !rec.Deleted && grantedAfter(rec.Epoch, op.Epoch) {
		return protocol.Errorf(protocol.CodeGroupNotEmpty, "group %q: member %q claimed the partition (epoch %d) after the reset checked the group had no members (%d); stop the members and reset again",
			op.Group, rec.Member, rec.Epoch, op.Epoch)
	}
	if grantedAfter(rec.Fence, op.Epoch) {
		return protocol.Errorf(protocol.CodeStaleEpoch, "group %q: the reset (%d) is older than the delete or reset (%d) the partition applied",
			op.Group, op.Epoch, rec.Fence)
	}
	return nil
}

// maxEpochLead bounds how far past an admin op's controller index (a
// delete's or a reset's) an epoch or fence may be and still count as
// granted after it (grantedAfter).
const maxEpochLead = 1 << 32

// grantedAfter reports whether epoch (an assignment epoch or a fence: a
// controller index) may come from a grant, delete or reset the controller
// made after index, an admin op's controller index. It must be above
// index, and not by more than maxEpochLead: no controller commits 2^32
// entries while one admin op is under way. An epoch further ahead was made
// up by a client (the commit subject takes any epoch), and an admin delete
// or reset overrides it instead of deferring to it for ever.
func grantedAfter(epoch, index uint64) bool {
	return epoch > index && epoch-index <= maxEpochLead
}

// get returns a group's record.
func (c *consumerState) get(group string) (consumerRecord, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	rec, ok := c.groups[group]
	if rec.Deleted {
		return consumerRecord{}, false
	}
	return rec, ok
}

// all returns every group's record, deleted groups' tombstones included
// (a snapshot keeps them), and the index they are current as of.
func (c *consumerState) all() (map[string]consumerRecord, uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]consumerRecord, len(c.groups))
	for name, rec := range c.groups {
		out[name] = rec
	}
	return out, c.applied
}

// appliedIndex is the index the consumer state is current as of.
func (c *consumerState) appliedIndex() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.applied
}

// forgetConsumerState deletes a partition's consumer state (with its replica).
func (s *stateStore) forgetConsumerState(b *pebble.Batch, raftGroup uint64) {
	_ = b.DeleteRange(groupKey(keyConsumerOffset, raftGroup), groupKey(keyConsumerOffset, raftGroup+1), nil)
	_ = b.Delete(groupKey(keyConsumerApplied, raftGroup), nil)
	_ = b.Delete(groupKey(keyConsumerConf, raftGroup), nil)
	s.forgetProducerState(b, raftGroup)
}

// startConfiguration returns the configuration to start the group with as
// raft.GroupConfig.AppliedConfiguration for GroupConfig.Applied = applied:
// the configuration in effect at applied. It is the zero configuration
// (raft then searches its log) when that is not known exactly: the state
// is not as of applied (it is ahead of the commit index the hard state
// saved), it predates the configuration record, or no config entry was
// applied and raft's own base would not be the bootstrap voters (a stored
// snapshot covering the log start with another configuration).
func (c *consumerState) startConfiguration(applied uint64, bootstrap []uint64, snapshots *snapshot.Store, logFirstIndex uint64) protocol.RaftConfiguration {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.confKnown || c.applied != applied {
		return protocol.RaftConfiguration{}
	}
	if c.confSet {
		return protocol.RaftConfiguration{
			Voters:         slices.Clone(c.conf.Voters),
			OutgoingVoters: slices.Clone(c.conf.OutgoingVoters),
			Learners:       slices.Clone(c.conf.Learners),
		}
	}
	conf := protocol.RaftConfiguration{Voters: slices.Sorted(slices.Values(bootstrap))}
	if len(conf.Voters) == 0 || conf.Validate() != nil {
		return protocol.RaftConfiguration{}
	}
	if snapshots != nil {
		if info, ok := snapshots.Latest(); ok && info.Meta.Index+1 >= logFirstIndex {
			sc := raftConfigurationOf(info.Meta.Configuration)
			if !slices.Equal(sc.Voters, conf.Voters) || sc.Joint() || len(sc.Learners) > 0 {
				return protocol.RaftConfiguration{}
			}
		}
	}
	return conf
}

// raftConfigurationOf converts a snapshot's configuration (sorted, empty
// lists as nil); the zero configuration when it has no voters or breaks
// protocol.RaftConfiguration's rules.
func raftConfigurationOf(c snapshot.Configuration) protocol.RaftConfiguration {
	sorted := func(ids []uint64) []uint64 {
		if len(ids) == 0 {
			return nil
		}
		return slices.Sorted(slices.Values(ids))
	}
	conf := protocol.RaftConfiguration{Voters: sorted(c.Voters), OutgoingVoters: sorted(c.OutgoingVoters), Learners: sorted(c.Learners)}
	if len(conf.Voters) == 0 || conf.Validate() != nil {
		return protocol.RaftConfiguration{}
	}
	return conf
}
