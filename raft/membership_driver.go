package raft

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/raftmq/raftmq/protocol"
	"github.com/raftmq/raftmq/snapshot"
)

// MembershipChange changes a group's voters (Raft §6): every server in Add
// becomes a voter (a learner among them is promoted) and every server in
// Remove leaves, voter or learner. Several servers may change at once; the
// change goes through a joint configuration.
type MembershipChange struct {
	Add    []uint64
	Remove []uint64
}

// membershipRequest is a membership change waiting for its outcome.
type membershipRequest struct {
	change confChange
	done   chan error
	index  uint64 // the first config entry of the change
	term   uint64
}

// ChangeMembership changes the group's voters through the leader on this
// node and waits until the final configuration (C_new) is committed: it
// appends C_old,new, and once that commits the leader appends C_new by
// itself. A leader that is not in C_new steps down once C_new commits.
//
// Errors: *NotLeaderError when this node does not lead (or stops leading
// before the change finished: the change may still complete under the
// next leader; check Status().Configuration), ErrLeaderNotReady (retry),
// ErrConfigChangeInProgress (one change at a time), ErrTransferring,
// ErrInvalidMembership, or the error that stopped the group.
func (g *Group) ChangeMembership(ctx context.Context, change MembershipChange) error {
	return g.changeMembership(ctx, confChange{kind: changeVoters, add: change.Add, remove: change.Remove})
}

// AddLearner adds a learner (non-voter) to the group and waits until the
// configuration naming it is committed. The learner receives the log (and
// snapshots) but never counts toward a quorum; start its replica with an
// empty Voters list so it learns the configuration from the log.
func (g *Group) AddLearner(ctx context.Context, id uint64) error {
	return g.changeMembership(ctx, confChange{kind: addLearners, add: []uint64{id}})
}

// PromoteLearner makes a learner a voter, through a joint configuration,
// and waits until C_new is committed. It fails with ErrLearnerBehind unless
// the learner's log is within GroupConfig.PromoteMaxLag entries of the
// leader's.
func (g *Group) PromoteLearner(ctx context.Context, id uint64) error {
	return g.changeMembership(ctx, confChange{kind: promoteLearner, add: []uint64{id}, maxLag: g.cfg.PromoteMaxLag})
}

// AddVoter adds a server as a voter the safe way, with automatic
// promotion: the server joins as a learner (unless it is one already),
// receives the log and snapshots without counting toward any quorum, and
// is promoted once its log is within GroupConfig.PromoteMaxLag entries of
// the leader's. AddVoter returns once the configuration that makes it a
// voter is committed, or when ctx ends. While the learner is behind, or
// another change or the leader's first commit is pending, it tries again
// every heartbeat interval; other errors (*NotLeaderError,
// ErrInvalidMembership, a closed group) end it. Start the new server's
// replica with an empty Voters list, as for AddLearner.
func (g *Group) AddVoter(ctx context.Context, id uint64) error {
	conf := g.Status().Configuration
	if slices.Contains(conf.Voters, id) && !conf.Joint() {
		return nil
	}
	retry := time.NewTicker(g.cfg.HeartbeatInterval)
	defer retry.Stop()
	for step := 0; ; {
		var err error
		if step == 0 && !slices.Contains(conf.Learners, id) {
			err = g.AddLearner(ctx, id)
		} else {
			step, err = 1, g.PromoteLearner(ctx, id)
			if err == nil {
				return nil
			}
		}
		switch {
		case err == nil:
			step = 1
			continue
		case errors.Is(err, ErrLearnerBehind), errors.Is(err, ErrConfigChangeInProgress), errors.Is(err, ErrLeaderNotReady):
		default:
			return err
		}
		select {
		case <-retry.C:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (g *Group) changeMembership(ctx context.Context, change confChange) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	req := &membershipRequest{change: change, done: make(chan error, 1)}
	return g.request(ctx, req.done, func() { g.newMembership = append(g.newMembership, req) })
}

// startMembershipChanges hands new requests to the core (on the worker).
func (g *Group) startMembershipChanges(reqs []*membershipRequest, now time.Duration) {
	for _, r := range reqs {
		index, term, err := g.core.changeMembership(r.change, now)
		if err != nil {
			r.done <- err
			continue
		}
		r.index, r.term = index, term
		g.membership = append(g.membership, r)
	}
}

// checkMembershipChanges resolves changes whose final configuration is
// committed, and fails those whose leader lost leadership.
func (g *Group) checkMembershipChanges(st Status) {
	kept := g.membership[:0]
	for _, r := range g.membership {
		switch {
		case st.ConfigurationIndex >= r.index && st.CommitIndex >= st.ConfigurationIndex && !st.Configuration.Joint():
			r.done <- nil
		case st.Role != RoleLeader || st.Term != r.term:
			r.done <- &NotLeaderError{Leader: st.Leader}
		default:
			kept = append(kept, r)
		}
	}
	clear(g.membership[len(kept):])
	g.membership = kept
}

// snapshotConfiguration converts a snapshot's configuration; an invalid or
// empty one converts to the zero configuration (keep what the log says).
func snapshotConfiguration(c snapshot.Configuration) protocol.RaftConfiguration {
	conf := protocol.RaftConfiguration{Voters: sortedIDs(c.Voters), OutgoingVoters: sortedIDs(c.OutgoingVoters), Learners: sortedIDs(c.Learners)}
	for _, l := range []*[]uint64{&conf.Voters, &conf.OutgoingVoters, &conf.Learners} {
		if len(*l) == 0 {
			*l = nil
		}
	}
	if len(conf.Voters) == 0 || conf.Validate() != nil || slices.Contains(conf.Voters, 0) {
		return protocol.RaftConfiguration{}
	}
	return conf
}
