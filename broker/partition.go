package broker

import (
	"fmt"
	"io"
	"sync"
	"sync/atomic"

	"github.com/raftmq/raftmq/protocol"
	"github.com/raftmq/raftmq/raft"
	"github.com/raftmq/raftmq/segmentlog"
	"github.com/raftmq/raftmq/snapshot"
)

// partitionReplica is this broker's replica of one partition: a Raft group
// on a segment log, and the state machine that tracks the high watermark.
type partitionReplica struct {
	topic     string
	partition uint32
	groupID   uint64
	replicas  []uint64
	dir       string
	log       *segmentlog.Log
	group     *raft.Group
	state     *partitionStateMachine
	ops       *consumerOpBatcher // consumer ops waiting to be proposed (leader)
	snapshots *snapshot.Store    // consumer-state snapshots (retention.go)

	// stopped is set by stopReplica, which then takes retention: a topic
	// deleted and created again gets the same directories, and the old
	// replica's retention must neither write a snapshot nor delete a
	// segment there once the new replica may own them. Retention writes
	// and deletes only under retention, with stopped unset.
	stopped   atomic.Bool
	retention sync.Mutex
}

// partitionStateMachine is the partition's Raft state machine. Applying an
// entry makes it visible to fetches: the high watermark is the offset after
// the last applied record batch, and fetches never read past the applied
// index (applied <= committed, so nothing uncommitted is ever served).
type partitionStateMachine struct {
	log       *segmentlog.Log
	consumers *consumerState // offsets of consumer groups (consumer-op control entries)

	// restores counts snapshots installed by Restore (InstallSnapshot).
	restores atomic.Uint64

	mu            sync.Mutex
	appliedIndex  uint64
	highWatermark uint64
	advanced      chan struct{} // closed and replaced whenever appliedIndex moves
}

var (
	_ raft.StateMachine = (*partitionStateMachine)(nil)
	_ raft.Restorer     = (*partitionStateMachine)(nil)
	_ raft.LogResetter  = partitionLog{}
)

func newPartitionStateMachine(log *segmentlog.Log) *partitionStateMachine {
	return &partitionStateMachine{
		log:           log,
		highWatermark: log.FirstOffset(),
		appliedIndex:  log.FirstIndex() - 1,
		advanced:      make(chan struct{}),
	}
}

// Apply advances the high watermark past the last record batch in entries
// and wakes waiting fetches.
func (s *partitionStateMachine) Apply(entries []protocol.Entry) error {
	if len(entries) == 0 {
		return nil
	}
	if s.consumers != nil {
		if err := s.consumers.apply(entries); err != nil {
			return err
		}
	}
	var lastBatch *protocol.Entry
	for i := range entries {
		if entries[i].Type == protocol.EntryRecordBatch {
			lastBatch = &entries[i]
		}
	}
	highWatermark := uint64(0)
	if lastBatch != nil {
		h, err := protocol.ReadBatchHeader(lastBatch.Data)
		if err != nil {
			return fmt.Errorf("broker: applied entry %d: %w", lastBatch.Index, err)
		}
		base, err := s.log.OffsetOfIndex(lastBatch.Index)
		if err != nil {
			return fmt.Errorf("broker: offset of applied entry %d: %w", lastBatch.Index, err)
		}
		highWatermark = base + uint64(h.RecordCount)
	}
	s.mu.Lock()
	s.appliedIndex = entries[len(entries)-1].Index
	if highWatermark > s.highWatermark {
		s.highWatermark = highWatermark
	}
	close(s.advanced)
	s.advanced = make(chan struct{})
	s.mu.Unlock()
	return nil
}

// Restore replaces the state with a consumer-state snapshot's (raft's
// InstallSnapshot, §7): the group offsets and producer state, durably in
// the state database. The raft driver calls it with no Apply running and
// then resets the log to continue at meta.Index+1 with offsets from
// meta.NextOffset (the high watermark at the snapshot). The applied index
// and high watermark as of meta.Index are published to fetches only by
// that reset (partitionLog.ResetOffsets, logReset): until then the log
// still holds the old entries, perhaps a suffix that never committed, and
// a fetch reading up to meta.Index there would serve them.
func (s *partitionStateMachine) Restore(meta snapshot.Meta, body io.Reader) error {
	if s.consumers == nil {
		return fmt.Errorf("broker: restore snapshot %v: partition has no consumer state", meta.ID())
	}
	if _, err := s.consumers.restore(meta, body); err != nil {
		return err
	}
	s.restores.Add(1)
	return nil
}

// logReset publishes the state after the log was reset to continue at
// applied+1 with offsets from highWatermark (a snapshot install), and
// wakes waiting fetches.
func (s *partitionStateMachine) logReset(applied, highWatermark uint64) {
	s.mu.Lock()
	s.appliedIndex, s.highWatermark = applied, highWatermark
	s.mu.Unlock()
	s.wake()
}

// wake wakes the fetches waiting for an advance, so they look again at
// whether they may still answer (the replica stopped, the broker is
// closing, leadership moved).
func (s *partitionStateMachine) wake() {
	s.mu.Lock()
	close(s.advanced)
	s.advanced = make(chan struct{})
	s.mu.Unlock()
}

// partitionLog is a partition's log as Raft sees it (timedLog). Its reset
// after a snapshot install publishes the restored state to fetches once
// the log holds it (Restore does not).
type partitionLog struct {
	timedLog
	state *partitionStateMachine
}

func (l partitionLog) ResetOffsets(nextIndex, prevTerm, nextOffset uint64) error {
	if err := l.Log.ResetOffsets(nextIndex, prevTerm, nextOffset); err != nil {
		return err
	}
	l.state.logReset(nextIndex-1, nextOffset)
	return nil
}

// visible returns the applied index, the high watermark and a channel closed
// at the next advance.
func (s *partitionStateMachine) visible() (appliedIndex, highWatermark uint64, advanced <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.appliedIndex, s.highWatermark, s.advanced
}

// recoverPartitionState builds a replica's state machine at restart without
// replaying the log: everything up to the saved commit index (a lower bound
// of the true one) that this log still holds is committed, so it counts as
// applied, and the high watermark is the offset after the last record batch
// at or below it. It returns the applied index for raft.GroupConfig.Applied.
func recoverPartitionState(log *segmentlog.Log, commitHint uint64) (*partitionStateMachine, uint64, error) {
	s := newPartitionStateMachine(log)
	applied := min(commitHint, log.LastIndex())
	if applied < log.FirstIndex() {
		return s, s.appliedIndex, nil
	}
	s.appliedIndex = applied
	for index := applied; index >= log.FirstIndex(); index-- {
		entries, err := log.Entries(index, index+1, 0)
		if err != nil {
			return nil, 0, fmt.Errorf("broker: recover partition state: %w", err)
		}
		if entries[0].Type != protocol.EntryRecordBatch {
			continue
		}
		h, err := protocol.ReadBatchHeader(entries[0].Data)
		if err != nil {
			return nil, 0, fmt.Errorf("broker: recover partition state at index %d: %w", index, err)
		}
		s.highWatermark = h.BaseOffset + uint64(h.RecordCount)
		break
	}
	return s, applied, nil
}
