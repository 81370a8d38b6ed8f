package broker

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/raftmq/raftmq/protocol"
	"github.com/raftmq/raftmq/raft"
	"github.com/raftmq/raftmq/segmentlog"
)

// controllerReplica is a bootstrap broker's replica of the controller group.
// Its state machine replays the whole controller log on start (the log holds
// only metadata commands, so it stays small).
type controllerReplica struct {
	log   *segmentlog.Log
	group *raft.Group
	state *controllerStateMachine
}

// controllerStateMachine applies controller commands to the cluster
// metadata. Apply runs on the group's apply goroutine; readers take mu.
type controllerStateMachine struct {
	onChange func(*clusterMetadata) // called outside mu, in apply order

	mu       sync.Mutex
	metadata *clusterMetadata
	groups   map[string]*consumerGroup // consumer groups (groups.go)
	// appliedTerm is the term of the last applied entry: a leader that
	// applied an entry of its own term holds every committed entry's effect.
	appliedTerm uint64

	// results holds the rejections of the commands applied, for their
	// proposers (propose). It has a mutex of its own.
	results proposerResults[*protocol.Error]
}

var _ raft.StateMachine = (*controllerStateMachine)(nil)

func newControllerStateMachine(bootstrap []uint64, onChange func(*clusterMetadata)) *controllerStateMachine {
	return &controllerStateMachine{
		onChange: onChange,
		metadata: newClusterMetadata(bootstrap),
		groups:   map[string]*consumerGroup{},
	}
}

func (s *controllerStateMachine) Apply(entries []protocol.Entry) error {
	if len(entries) == 0 {
		return nil
	}
	s.mu.Lock()
	metadata := s.metadata
	changed := false
	for _, e := range entries {
		if e.Type != protocol.EntryControl {
			continue
		}
		cmd, err := decodeControllerCommand(e.Data)
		var rejected *protocol.Error
		if err != nil {
			rejected = protocol.Errorf(protocol.CodeMalformedRequest, "%v", err)
		} else if strings.HasPrefix(cmd.Op, "group_") {
			rejected = applyGroupCommand(s.groups, metadata, e.Index, cmd)
		} else {
			var next *clusterMetadata
			next, rejected = applyCommand(metadata, e.Index, cmd)
			if next != metadata {
				metadata, changed = next, true
			}
		}
		// Kept whatever the outcome (nil: applied), so a proposer can
		// tell an entry applied here from one a snapshot covered.
		s.results.keep(e.Index, rejected)
	}
	// Every applied entry advances the version, so the metadata is known
	// (version > 0) as soon as the first leader's no-op applies.
	if last := entries[len(entries)-1].Index; last > metadata.Version {
		if !changed {
			metadata = metadata.clone()
		}
		metadata.Version, changed = last, true
	}
	s.metadata = metadata
	s.appliedTerm = entries[len(entries)-1].Term
	s.mu.Unlock()
	if changed && s.onChange != nil {
		s.onChange(metadata)
	}
	return nil
}

func (s *controllerStateMachine) current() *clusterMetadata {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.metadata
}

// appliedInTerm reports whether the last applied entry has term.
func (s *controllerStateMachine) appliedInTerm(term uint64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.appliedTerm == term
}

// group returns a copy of a consumer group's state.
func (s *controllerStateMachine) group(name string) (*consumerGroup, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	g := s.groups[name]
	if g == nil {
		return nil, false
	}
	return g.clone(), true
}

// groupList returns copies of every consumer group, sorted by name.
func (s *controllerStateMachine) groupList() []*consumerGroup {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*consumerGroup, 0, len(s.groups))
	for _, g := range s.groups {
		out = append(out, g.clone())
	}
	slices.SortFunc(out, func(a, b *consumerGroup) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// proposeControl runs cmd through the controller group (propose), giving up
// with not_ready once this replica has known no controller leader for
// noControllerLeaderWait (the controller lost its quorum) instead of
// holding the request until ctx ends.
func (b *Broker) proposeControl(ctx context.Context, cmd controllerCommand) (*clusterMetadata, *protocol.Error) {
	m, _, apiErr := b.controller.propose(ctx, cmd, b.noControllerLeaderWait())
	return m, apiErr
}

// proposeControlAt is proposeControl that also returns the controller log
// index cmd applied at.
func (b *Broker) proposeControlAt(ctx context.Context, cmd controllerCommand) (*clusterMetadata, uint64, *protocol.Error) {
	return b.controller.propose(ctx, cmd, b.noControllerLeaderWait())
}

// propose runs cmd through the controller group and returns the metadata
// after it applied, or the error that rejected it, and the index it
// applied (or was rejected) at; 0 when it did not reach the log. A proposal this replica
// made as leader stays pending after it loses leadership (a new leader may
// still commit it); once no leader has been known for noLeaderWait it gives
// up with not_ready.
func (c *controllerReplica) propose(ctx context.Context, cmd controllerCommand, noLeaderWait time.Duration) (*clusterMetadata, uint64, *protocol.Error) {
	data, err := json.Marshal(cmd)
	if err != nil {
		return nil, 0, protocol.Errorf(protocol.CodeUnknown, "encode controller command: %v", err)
	}
	results := &c.state.results
	defer results.end(results.begin(c.group.Status().AppliedIndex))
	proposal := c.group.Propose(ctx, protocol.EntryControl, data, raft.AckApplied)
	if apiErr := c.awaitLeader(ctx, proposal.Done(), noLeaderWait); apiErr != nil {
		return nil, 0, apiErr
	}
	index, _, err := proposal.Wait(ctx)
	if err != nil {
		return nil, 0, raftError(err, "controller")
	}
	rejected, ok := results.take(index)
	switch {
	case !ok:
		return nil, index, outcomeUnknown("controller", index)
	case rejected != nil:
		return nil, index, rejected
	}
	return c.state.current(), index, nil
}

// outcomeUnknown is the error for a proposal that committed but whose
// outcome this replica cannot tell: it installed a snapshot that covered
// the entry (after losing leadership and falling behind, say) instead of
// applying it, so what Apply made of it was never recorded here. Retriable
// (timeout), like any request whose outcome is unknown: the entry may
// have taken effect.
func outcomeUnknown(what string, index uint64) *protocol.Error {
	return protocol.Errorf(protocol.CodeTimeout,
		"%s: entry %d committed, but this broker restored a snapshot covering it and cannot tell its outcome; it may have taken effect", what, index)
}

// awaitLeader returns nil when done is closed or ctx ends, and not_ready
// once the controller group has had no leader, as this replica sees it,
// for noLeaderWait in a row.
func (c *controllerReplica) awaitLeader(ctx context.Context, done <-chan struct{}, noLeaderWait time.Duration) *protocol.Error {
	tick := time.NewTicker(max(noLeaderWait/20, 10*time.Millisecond))
	defer tick.Stop()
	var leaderlessSince time.Time
	for {
		select {
		case <-done:
			return nil
		case <-ctx.Done():
			return nil
		case now := <-tick.C:
			if c.group.Status().Leader != 0 {
				leaderlessSince = time.Time{}
				continue
			}
			if leaderlessSince.IsZero() {
				leaderlessSince = now
			}
			if now.Sub(leaderlessSince) >= noLeaderWait {
				return protocol.Errorf(protocol.CodeNotReady,
					"controller: no leader for %v; its voters %v may have lost their quorum (are a majority of them running?); the command may still be committed",
					noLeaderWait, c.group.Status().Configuration.Voters)
			}
		}
	}
}

// readError is the client error for a failed read of a replica's log: a
// retriable not_ready when the log was closed under the reader (the
// replica was stopped: it moved, failed or its broker is stopping),
// storage_error otherwise.
func readError(err error, what string) *protocol.Error {
	if errors.Is(err, segmentlog.ErrClosed) {
		return protocol.Errorf(protocol.CodeNotReady, "%s: the replica stopped while reading; retry", what)
	}
	return protocol.Errorf(protocol.CodeStorage, "%s: %v", what, err)
}

// raftError maps a proposal failure to a client error.
func raftError(err error, what string) *protocol.Error {
	var notLeader *raft.NotLeaderError
	switch {
	case errors.As(err, &notLeader):
		return &protocol.Error{Code: protocol.CodeNotLeader, Leader: notLeader.Leader, Message: what}
	case errors.Is(err, context.DeadlineExceeded):
		return protocol.Errorf(protocol.CodeTimeout, "%s: not committed in time; it may still be committed", what)
	case errors.Is(err, context.Canceled):
		return protocol.Errorf(protocol.CodeShuttingDown, "%s: request canceled", what)
	case errors.Is(err, raft.ErrTransferring):
		return protocol.Errorf(protocol.CodeNotReady, "%s: leadership transfer in progress", what)
	case errors.Is(err, raft.ErrProposalDropped):
		return protocol.Errorf(protocol.CodeNotLeader, "%s: proposal dropped (leadership changed)", what)
	case errors.Is(err, raft.ErrClosed):
		return protocol.Errorf(protocol.CodeNotLeader, "%s: replica stopped (leadership moved or the broker is stopping)", what)
	case errors.Is(err, raft.ErrStopped):
		// The replica failed (its storage, usually); another one takes
		// over, and the request may still be committed there.
		// The broker logs the cause (with file names, which stay there).
		return protocol.Errorf(protocol.CodeNotLeader, "%s: the replica stopped after an error (see the broker's log); another replica takes over, and the request may still take effect", what)
	}
	return protocol.Errorf(protocol.CodeStorage, "%s: %v", what, err)
}
