package broker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/raftmq/raftmq/protocol"
	"github.com/raftmq/raftmq/raft"
)

// Membership: partition reassignment and controller membership.
//
// A reassignment moves a partition's replicas from Replicas to a target set
// (AdminReassignPartition, or AdminReplaceBroker for every partition of one
// broker). The controller only records the target (partitionMeta.Target);
// the partition's Raft leader carries the move out, one step per status
// tick (driveReassignments):
//
//  1. every target broker outside the configuration is added as a learner
//     (it starts its replica as soon as it sees the target in the metadata,
//     and catches up by InstallSnapshot and AppendEntries);
//  2. every learner in the target is promoted once it is within
//     raft.GroupConfig.PromoteMaxLag entries of the leader and answers
//     (PromoteLearner refuses it before; the next tick tries again);
//  3. once every target replica has acknowledged the configuration in
//     effect and answers (raft.Status.Unconfirmed; a target broker that
//     died holds the move until it is back or --cancel drops it; a cancel
//     is refused while a broker it would move the replica back to is
//     down, since nothing could drop the move back), a leader
//     outside the target first hands leadership to a target voter
//     (the next leader goes on); then the members outside the target are
//     removed with one joint-consensus change (were the transfer to fail,
//     the leader removes itself too and steps down once C_new commits);
//  4. once the voters are exactly the target, the leader reports it to the
//     controller (AdminReassignDone), which makes the target the replica
//     set. The report names the move by the controller index that set the
//     target (partitionMeta.TargetIndex): a late report of a move cancelled
//     since is refused, even when the next move has the same target.
//     Brokers no longer named then stop their replica and delete its data
//     (reconcileReplicas).
//
// Every step is idempotent and starts from the group's configuration in
// effect, so a leader change or a restart in the middle resumes where the
// configuration stands. Producers keep publishing throughout: the group
// keeps a quorum of its old voters and, once joint, of both halves.

// reassignStepTimeout bounds one membership step of a partition leader.
const reassignStepTimeout = 10 * time.Second

// membershipDriver remembers which groups have a step running on this
// broker, so one tick never starts a second one.
type membershipDriver struct {
	mu      sync.Mutex
	running map[uint64]bool
}

func (d *membershipDriver) start(groupID uint64) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.running[groupID] {
		return false
	}
	if d.running == nil {
		d.running = map[uint64]bool{}
	}
	d.running[groupID] = true
	return true
}

func (d *membershipDriver) done(groupID uint64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.running, groupID)
}

// reassignDoneRequest is the body of AdminReassignDone.
type reassignDoneRequest struct {
	Version int      `json:"v"`
	GroupID uint64   `json:"group_id"`
	Voters  []uint64 `json:"voters"`
	// TargetIndex identifies the move whose end this reports
	// (partitionMeta.TargetIndex); 0 from a leader that predates it.
	TargetIndex uint64 `json:"target_index,omitempty"`
}

// applyMembershipCommand applies the membership commands to the metadata;
// deterministic, like applyCommand.
func applyMembershipCommand(m *clusterMetadata, index uint64, cmd controllerCommand) (*clusterMetadata, *protocol.Error) {
	switch cmd.Op {
	case opReassignPartition:
		t := m.Topics[cmd.Topic]
		if t == nil {
			return m, protocol.Errorf(protocol.CodeUnknownTopic, "topic %q does not exist", cmd.Topic)
		}
		if int(cmd.Partition) >= len(t.Partitions) {
			return m, protocol.Errorf(protocol.CodeBadPartition, "topic %q has partitions 0..%d, not %d", cmd.Topic, len(t.Partitions)-1, cmd.Partition)
		}
		p := t.Partitions[cmd.Partition]
		if cmd.Cancel {
			return cancelReassignment(m, index, cmd.Topic, cmd.Partition)
		}
		if err := validateReplicaSet(m, cmd.ReplicaSet); err != nil {
			return m, err
		}
		if p.Target != nil {
			return m, protocol.Errorf(protocol.CodeInvalidArgument, "a reassignment of %s/%d from %v to %v is in progress", cmd.Topic, cmd.Partition, p.Replicas, p.Target)
		}
		if slices.Equal(p.Replicas, cmd.ReplicaSet) {
			return m, nil
		}
		next := m.clone()
		next.Topics[cmd.Topic] = withPartition(t, cmd.Partition, reassigned(p, cmd.ReplicaSet, index))
		next.Version = index
		return next, nil
	case opReplaceBroker:
		return applyReplaceBroker(m, index, cmd.Broker, cmd.NewBroker)
	case opReassignDone:
		name, partition, p, ok := m.partitionByGroup(cmd.GroupID)
		if !ok || p.Target == nil {
			return m, nil // the topic went, or another leader reported it first
		}
		if cmd.TargetIndex != 0 && cmd.TargetIndex != p.TargetIndex {
			// A late report of a move cancelled since: its voters may
			// happen to be the target of the move now in progress.
			return m, protocol.Errorf(protocol.CodeInvalidArgument, "group %d: the move reported done (set at controller index %d) is no longer in progress (the one in progress was set at %d)", cmd.GroupID, cmd.TargetIndex, p.TargetIndex)
		}
		if !slices.Equal(sortedCopy(p.Target), sortedCopy(cmd.ReplicaSet)) {
			return m, protocol.Errorf(protocol.CodeInvalidArgument, "group %d voters %v are not the target %v", cmd.GroupID, cmd.ReplicaSet, p.Target)
		}
		p.Replicas, p.Target, p.TargetIndex, p.Leaving = p.Target, nil, 0, nil
		next := m.clone()
		t := withPartition(m.Topics[name], partition, p)
		// The topic's replication factor follows when every partition agrees.
		if !slices.ContainsFunc(t.Partitions, func(q partitionMeta) bool { return len(q.Replicas) != len(p.Replicas) }) {
			t.Replicas = len(p.Replicas)
		}
		next.Topics[name] = t
		next.Version = index
		return next, nil
	}
	return m, protocol.Errorf(protocol.CodeInvalidArgument, "unknown controller operation %q", cmd.Op)
}

// cancelReassignment turns a reassignment in progress back toward the
// partition's replicas: the target becomes Replicas again, and the brokers
// only the old target named keep their replica (Leaving) until the leader
// removed them from the group and reported the move back done.
func cancelReassignment(m *clusterMetadata, index uint64, topic string, partition uint32) (*clusterMetadata, *protocol.Error) {
	p := m.Topics[topic].Partitions[partition]
	if p.Target == nil {
		return m, protocol.Errorf(protocol.CodeInvalidArgument, "no reassignment of %s/%d is in progress", topic, partition)
	}
	for _, id := range p.Target {
		if !slices.Contains(p.Replicas, id) && !slices.Contains(p.Leaving, id) {
			p.Leaving = append(slices.Clone(p.Leaving), id)
		}
	}
	p.Target, p.TargetIndex = slices.Clone(p.Replicas), index
	next := m.clone()
	next.Topics[topic] = withPartition(m.Topics[topic], partition, p)
	next.Version = index
	return next, nil
}

// reassigned is p with a reassignment to target, set at controller index,
// in progress. Same brokers in another order only changes the preferred
// leader, with no Raft change.
func reassigned(p partitionMeta, target []uint64, index uint64) partitionMeta {
	if slices.Equal(sortedCopy(p.Replicas), sortedCopy(target)) {
		p.Replicas = slices.Clone(target)
		return p
	}
	if p.Bootstrap == nil {
		p.Bootstrap = slices.Clone(p.Replicas)
	}
	p.Target, p.TargetIndex = slices.Clone(target), index
	return p
}

func applyReplaceBroker(m *clusterMetadata, index uint64, old, replacement uint64) (*clusterMetadata, *protocol.Error) {
	switch {
	case old == 0 || replacement == 0:
		return m, protocol.Errorf(protocol.CodeInvalidArgument, "broker id 0")
	case old == replacement:
		return m, protocol.Errorf(protocol.CodeInvalidArgument, "broker %d cannot replace itself", old)
	case !slices.Contains(m.Brokers, replacement):
		return m, protocol.Errorf(protocol.CodeInvalidArgument, "unknown broker %d (registered brokers: %v)", replacement, m.Brokers)
	}
	next := m.clone()
	moved := 0
	for _, name := range m.sortedTopicNames() {
		t := next.Topics[name]
		for i, p := range t.Partitions {
			if !slices.Contains(p.Replicas, old) && !slices.Contains(p.Target, old) {
				continue
			}
			if p.Target != nil {
				return m, protocol.Errorf(protocol.CodeInvalidArgument, "a reassignment of %s/%d from %v to %v is in progress", name, i, p.Replicas, p.Target)
			}
			if slices.Contains(p.Replicas, replacement) {
				return m, protocol.Errorf(protocol.CodeInvalidArgument, "broker %d already holds a replica of %s/%d (replicas %v)", replacement, name, i, p.Replicas)
			}
			target := slices.Clone(p.Replicas)
			target[slices.Index(target, old)] = replacement
			t = withPartition(t, uint32(i), reassigned(p, target, index))
			moved++
		}
		next.Topics[name] = t
	}
	if moved == 0 && !slices.Contains(m.Brokers, old) {
		return m, protocol.Errorf(protocol.CodeInvalidArgument, "unknown broker %d (registered brokers: %v)", old, m.Brokers)
	}
	if moved == 0 {
		return m, protocol.Errorf(protocol.CodeInvalidArgument, "broker %d holds no replica", old)
	}
	next.Version = index
	return next, nil
}

// validateReplicaSet checks a requested replica set against the metadata.
func validateReplicaSet(m *clusterMetadata, set []uint64) *protocol.Error {
	if len(set) == 0 {
		return protocol.Errorf(protocol.CodeInvalidArgument, "empty replica set")
	}
	for i, id := range set {
		if id == 0 || slices.Contains(set[:i], id) {
			return protocol.Errorf(protocol.CodeInvalidArgument, "replica set %v has a zero or repeated broker id", set)
		}
		if !slices.Contains(m.Brokers, id) {
			return protocol.Errorf(protocol.CodeInvalidArgument, "unknown broker %d (registered brokers: %v)", id, m.Brokers)
		}
	}
	return nil
}

// withPartition returns a copy of t with partition i replaced.
func withPartition(t *topicMeta, i uint32, p partitionMeta) *topicMeta {
	c := *t
	c.Partitions = slices.Clone(t.Partitions)
	c.Partitions[i] = p
	return &c
}

func sortedCopy(ids []uint64) []uint64 {
	out := slices.Clone(ids)
	slices.Sort(out)
	return out
}

// ---- admin requests (on the controller leader) ----

// membershipAdmin serves the membership admin operations.
func (b *Broker) membershipAdmin(ctx context.Context, op string, data []byte) any {
	switch op {
	case protocol.AdminReassignPartition:
		var req protocol.ReassignPartitionRequest
		if err := json.Unmarshal(data, &req); err != nil {
			return protocol.ReassignReply{Version: protocol.APIVersion, Error: protocol.Errorf(protocol.CodeMalformedRequest, "%v", err)}
		}
		var receivers []uint64
		if t := b.controller.state.current().Topics[req.Topic]; t != nil && int(req.Partition) < len(t.Partitions) {
			p := t.Partitions[req.Partition]
			gaining, holding := req.Replicas, p.Replicas
			if req.Cancel {
				// The move back returns the replica to the brokers the
				// cancelled move takes it from (it may have removed them
				// from the group already). One that is down would hold the
				// move back until it returns, with no way out meanwhile: a
				// cancel of it changes nothing, and no other move is
				// accepted while it is in progress.
				gaining, holding = p.Replicas, p.Target
				if p.Target == nil {
					gaining = nil
				}
				if p.Target != nil && slices.Equal(p.Target, p.Replicas) {
					// Only a cancel sets the target to the replicas: the
					// move in progress is a move back, with nothing to
					// turn back. (Accepted, it changed nothing and was
					// answered with no move, which reads as done.)
					return protocol.ReassignReply{Version: protocol.APIVersion, Error: protocol.Errorf(protocol.CodeInvalidArgument,
						"the reassignment of %s/%d in progress is already a cancelled move going back to its replicas %v; follow it with the cluster status",
						req.Topic, req.Partition, p.Replicas)}
				}
			}
			for _, id := range gaining {
				if !slices.Contains(holding, id) {
					receivers = append(receivers, id)
				}
			}
		}
		return b.reassign(ctx, controllerCommand{Op: opReassignPartition, Topic: req.Topic, Partition: req.Partition, ReplicaSet: req.Replicas, Cancel: req.Cancel}, receivers)
	case protocol.AdminReplaceBroker:
		var req protocol.ReplaceBrokerRequest
		if err := json.Unmarshal(data, &req); err != nil {
			return protocol.ReassignReply{Version: protocol.APIVersion, Error: protocol.Errorf(protocol.CodeMalformedRequest, "%v", err)}
		}
		return b.reassign(ctx, controllerCommand{Op: opReplaceBroker, Broker: req.Old, NewBroker: req.New}, []uint64{req.New})
	case protocol.AdminReassignDone:
		var req reassignDoneRequest
		if err := json.Unmarshal(data, &req); err != nil {
			return adminError{protocol.APIVersion, protocol.Errorf(protocol.CodeMalformedRequest, "%v", err)}
		}
		m, apiErr := b.proposeControl(ctx, controllerCommand{Op: opReassignDone, GroupID: req.GroupID, ReplicaSet: req.Voters, TargetIndex: req.TargetIndex, Time: time.Now()})
		if apiErr == nil {
			b.adoptMetadata(m)
			b.publishMetadata(m)
		}
		return adminError{protocol.APIVersion, apiErr}
	case protocol.AdminAddController:
		return b.changeController(ctx, data, true)
	case protocol.AdminRemoveController:
		return b.changeController(ctx, data, false)
	}
	return adminError{protocol.APIVersion, protocol.Errorf(protocol.CodeMalformedRequest, "unknown admin operation %q", op)}
}

// reassign records a reassignment (or a broker replacement) after checking
// that the brokers that must receive replicas are alive.
func (b *Broker) reassign(ctx context.Context, cmd controllerCommand, receivers []uint64) protocol.ReassignReply {
	fail := func(e *protocol.Error) protocol.ReassignReply {
		return protocol.ReassignReply{Version: protocol.APIVersion, Error: e}
	}
	before := b.controller.state.current()
	alive := b.aliveBrokers()
	for _, id := range receivers {
		if id != 0 && slices.Contains(before.Brokers, id) && !alive[id] {
			if cmd.Cancel {
				return fail(protocol.Errorf(protocol.CodeInvalidArgument, "broker %d is down: cancelling would move its replica back to it; start it first, or let the move finish", id))
			}
			return fail(protocol.Errorf(protocol.CodeInvalidArgument, "broker %d is down: start it before moving replicas to it", id))
		}
	}
	cmd.Time = time.Now()
	after, apiErr := b.proposeControl(ctx, cmd)
	if apiErr != nil {
		return fail(apiErr)
	}
	b.adoptMetadata(after)
	b.publishMetadata(after)
	reply := protocol.ReassignReply{Version: protocol.APIVersion, Reassignments: []protocol.Reassignment{}}
	for _, name := range after.sortedTopicNames() {
		old := before.Topics[name]
		for i, p := range after.Topics[name].Partitions {
			if old == nil || i >= len(old.Partitions) || p.GroupID != old.Partitions[i].GroupID {
				continue
			}
			was := old.Partitions[i]
			switch {
			case was.Target != nil && !slices.Equal(p.Target, was.Target): // cancelled
				reply.Reassignments = append(reply.Reassignments, protocol.Reassignment{Topic: name, Partition: uint32(i), From: was.Target, To: p.Target})
			case p.Target != nil && was.Target == nil:
				reply.Reassignments = append(reply.Reassignments, protocol.Reassignment{Topic: name, Partition: uint32(i), From: was.Replicas, To: p.Target})
			case !slices.Equal(p.Replicas, was.Replicas): // another order of the same brokers
				reply.Reassignments = append(reply.Reassignments, protocol.Reassignment{Topic: name, Partition: uint32(i), From: was.Replicas, To: p.Replicas})
			}
		}
	}
	return reply
}

// ---- the partition leader's side ----

// driveReassignments starts a membership step for every partition this
// broker leads that has a reassignment in progress; called every status
// tick from the broker loop.
func (b *Broker) driveReassignments() {
	m := b.currentMetadata()
	b.mu.RLock()
	var work []*partitionReplica
	for _, r := range b.groups {
		t := m.Topics[r.topic]
		if t == nil || int(r.partition) >= len(t.Partitions) {
			continue
		}
		if p := t.Partitions[r.partition]; p.GroupID == r.groupID && p.Target != nil {
			work = append(work, r)
		}
	}
	closing := b.closing
	b.mu.RUnlock()
	if closing {
		return
	}
	for _, r := range work {
		if r.group.Status().Role != raft.RoleLeader || !b.membership.start(r.groupID) {
			continue
		}
		if !b.track() {
			b.membership.done(r.groupID)
			return
		}
		go func() {
			defer b.requests.Done()
			defer b.membership.done(r.groupID)
			ctx, cancel := context.WithTimeout(context.Background(), reassignStepTimeout)
			defer cancel()
			target, targetIndex := b.reassignTarget(r)
			if target == nil {
				return
			}
			if err := b.reassignStep(ctx, r, target, targetIndex); err != nil {
				b.logger.Debug("reassignment step", "topic", r.topic, "partition", r.partition, "target", target, "err", err)
			}
		}()
	}
}

// reassignTarget is the target of r's reassignment in the current metadata
// and the controller index that set it (partitionMeta.TargetIndex).
func (b *Broker) reassignTarget(r *partitionReplica) ([]uint64, uint64) {
	t := b.currentMetadata().Topics[r.topic]
	if t == nil || int(r.partition) >= len(t.Partitions) || t.Partitions[r.partition].GroupID != r.groupID {
		return nil, 0
	}
	return t.Partitions[r.partition].Target, t.Partitions[r.partition].TargetIndex
}

// reassignStep takes the next step of moving r's group to target, set at
// controller index targetIndex (see the comment at the top of this file).
func (b *Broker) reassignStep(ctx context.Context, r *partitionReplica, target []uint64, targetIndex uint64) error {
	st := r.group.Status()
	if st.Role != raft.RoleLeader {
		return nil
	}
	conf := st.Configuration
	if conf.Joint() || st.ConfigurationIndex > st.CommitIndex {
		return nil // raft finishes the change in progress
	}
	members := append(slices.Clone(conf.Voters), conf.Learners...)
	for _, id := range target {
		if !slices.Contains(members, id) {
			b.logger.Info("reassignment: adding learner", "topic", r.topic, "partition", r.partition, "target", id)
			return r.group.AddLearner(ctx, id)
		}
	}
	for _, id := range target {
		if slices.Contains(conf.Learners, id) {
			err := r.group.PromoteLearner(ctx, id)
			if err == nil {
				b.logger.Info("reassignment: learner promoted", "topic", r.topic, "partition", r.partition, "target", id)
			}
			return err
		}
	}
	// Every target replica must have acknowledged the configuration (its
	// promotion, say) and still answer before one outside the target goes:
	// a target broker that died as it was promoted would leave the
	// partition with a dead voter in place of a healthy replica (whose
	// broker deletes its data). The move waits for it instead, or for
	// 'topic reassign --cancel'. (Raft promotes only a learner that
	// answers, but it may die right after.)
	for _, id := range target {
		if slices.Contains(st.Unconfirmed, id) {
			return fmt.Errorf("target broker %d has not confirmed the configuration or stopped answering; the move waits for it", id)
		}
	}
	var remove []uint64
	for _, id := range members {
		if !slices.Contains(target, id) {
			remove = append(remove, id)
		}
	}
	if len(remove) > 0 && slices.Contains(remove, b.cfg.ID) {
		// Hand leadership to the target first (its preferred leader when
		// it is a voter), so producers see a transfer, not an election;
		// the new leader removes this broker. Should the transfer fail,
		// the leader removes itself and steps down once C_new commits.
		if to := firstVoter(target, conf.Voters); to != 0 {
			if err := r.group.TransferLeadership(ctx, to); err == nil {
				b.logger.Info("reassignment: leadership handed over before leaving", "topic", r.topic, "partition", r.partition, "to", to)
				return nil
			}
		}
	}
	if len(remove) > 0 {
		b.logger.Info("reassignment: removing replicas", "topic", r.topic, "partition", r.partition, "brokers", remove)
		return r.group.ChangeMembership(ctx, raft.MembershipChange{Remove: remove})
	}
	// The voters are the target: the controller makes it the replica set.
	data, _ := json.Marshal(reassignDoneRequest{Version: protocol.APIVersion, GroupID: r.groupID, Voters: conf.Voters, TargetIndex: targetIndex})
	response, err := b.nc.RequestWithContext(ctx, protocol.SubjectAdmin(b.prefix, protocol.AdminReassignDone), data)
	if err != nil {
		return err
	}
	var reply adminError
	if err := json.Unmarshal(response.Data, &reply); err != nil {
		return err
	}
	if reply.Error != nil {
		return reply.Error
	}
	b.logger.Info("reassignment done", "topic", r.topic, "partition", r.partition, "replicas", target)
	return nil
}

// ---- controller membership ----

// changeController adds a broker to the controller group's voters (as a
// learner first, promoted once caught up) or removes it.
func (b *Broker) changeController(ctx context.Context, data []byte, add bool) protocol.ControllerMemberReply {
	fail := func(e *protocol.Error) protocol.ControllerMemberReply {
		return protocol.ControllerMemberReply{Version: protocol.APIVersion, Error: e}
	}
	var req protocol.ControllerMemberRequest
	if err := json.Unmarshal(data, &req); err != nil {
		return fail(protocol.Errorf(protocol.CodeMalformedRequest, "%v", err))
	}
	m := b.controller.state.current()
	conf := b.controller.group.Status().Configuration
	id := req.Broker
	switch {
	case id == 0:
		return fail(protocol.Errorf(protocol.CodeInvalidArgument, "broker id 0"))
	case !slices.Contains(m.Brokers, id) && !slices.Contains(conf.Voters, id) && !slices.Contains(conf.Learners, id):
		return fail(protocol.Errorf(protocol.CodeInvalidArgument, "unknown broker %d (registered brokers: %v)", id, m.Brokers))
	case conf.Joint():
		return fail(protocol.Errorf(protocol.CodeInvalidArgument, "a controller membership change is in progress (voters %v, outgoing %v)", conf.Voters, conf.OutgoingVoters))
	}
	var err error
	if add {
		switch {
		case slices.Contains(conf.Voters, id):
			return fail(protocol.Errorf(protocol.CodeInvalidArgument, "broker %d is already a controller voter (voters %v)", id, conf.Voters))
		case !b.aliveBrokers()[id]:
			return fail(protocol.Errorf(protocol.CodeInvalidArgument, "broker %d is down: start it before adding it to the controller", id))
		}
		err = b.addControllerVoter(ctx, id, slices.Contains(conf.Learners, id))
	} else {
		switch {
		case !slices.Contains(conf.Voters, id) && !slices.Contains(conf.Learners, id):
			return fail(protocol.Errorf(protocol.CodeInvalidArgument, "broker %d is not a controller member (voters %v)", id, conf.Voters))
		case slices.Equal(conf.Voters, []uint64{id}):
			return fail(protocol.Errorf(protocol.CodeInvalidArgument, "broker %d is the last controller voter; add another first", id))
		}
		if remaining, silent := b.controllerVotersLeftSilent(ctx, id); silent != nil {
			return fail(protocol.Errorf(protocol.CodeInvalidArgument,
				"removing broker %d would leave controller voters %v, of which %v are down or not answering: they would hold no quorum, "+
					"and the controller would stop until they are back; start them first, or remove a broker that is down", id, remaining, silent))
		}
		err = b.controller.group.ChangeMembership(ctx, raft.MembershipChange{Remove: []uint64{id}})
	}
	if err != nil {
		return fail(membershipError(err, "controller membership"))
	}
	after := b.controller.group.Status().Configuration
	return protocol.ControllerMemberReply{Version: protocol.APIVersion, Controller: groupMembership(after)}
}

// controllerVotersLeftSilent returns the controller voters that would
// remain without id and, when the leader has not heard a majority of them
// confirm its configuration (raft.Status.Unconfirmed; itself counts), the
// ones it has not: nil when they would hold a quorum. Removing a voter
// goes through a joint configuration that needs a majority of the
// remaining voters; without one it never commits, no leader can be
// elected, and there is no way back until the silent voters return. A
// voter that is merely slow to confirm gets up to two election timeouts
// (within ctx). On a broker that is not the controller leader it returns
// nil (the change then fails as not_leader).
func (b *Broker) controllerVotersLeftSilent(ctx context.Context, id uint64) (remaining, silent []uint64) {
	deadline := time.Now().Add(2 * b.cfg.ElectionTimeout)
	for attempt := 0; ; attempt++ {
		st := b.controller.group.Status()
		if st.Role != raft.RoleLeader {
			return nil, nil
		}
		remaining = slices.DeleteFunc(slices.Clone(st.Configuration.Voters), func(v uint64) bool { return v == id })
		silent = nil
		for _, v := range remaining {
			if slices.Contains(st.Unconfirmed, v) {
				silent = append(silent, v)
			}
		}
		if len(remaining)-len(silent) > len(remaining)/2 {
			return remaining, nil
		}
		if ctx.Err() != nil || time.Now().After(deadline) {
			return remaining, silent
		}
		waitBackoff(ctx, attempt)
	}
}

// addControllerVoter adds id as a learner (unless it is one) and promotes
// it as soon as it caught up, retrying while it is behind.
func (b *Broker) addControllerVoter(ctx context.Context, id uint64, isLearner bool) error {
	if !isLearner {
		if err := b.controller.group.AddLearner(ctx, id); err != nil {
			return err
		}
		b.logger.Info("controller: learner added", "target", id)
	}
	for attempt := 0; ; attempt++ {
		err := b.controller.group.PromoteLearner(ctx, id)
		if !errors.Is(err, raft.ErrLearnerBehind) && !errors.Is(err, raft.ErrConfigChangeInProgress) {
			if err == nil {
				b.logger.Info("controller: learner promoted", "target", id)
			}
			return err
		}
		waitBackoff(ctx, attempt)
		if ctx.Err() != nil {
			return fmt.Errorf("broker %d did not catch up with the controller log in time: %w", id, err)
		}
	}
}

// waitBackoff pauses between retries while an election or a change runs:
// 20 ms more per attempt, at most 200 ms, and no longer than ctx.
func waitBackoff(ctx context.Context, attempt int) {
	timer := time.NewTimer(time.Duration(min(attempt+1, 10)) * 20 * time.Millisecond)
	defer timer.Stop()
	select {
	case <-ctx.Done():
	case <-timer.C:
	}
}

// membershipError maps a membership change failure to a client error.
func membershipError(err error, what string) *protocol.Error {
	var apiErr *protocol.Error
	switch {
	case errors.As(err, &apiErr):
		return apiErr
	case errors.Is(err, raft.ErrConfigChangeInProgress):
		return protocol.Errorf(protocol.CodeInvalidArgument, "%s: a membership change is in progress; retry when it finished", what)
	case errors.Is(err, raft.ErrInvalidMembership):
		return protocol.Errorf(protocol.CodeInvalidArgument, "%s: %v", what, err)
	case errors.Is(err, raft.ErrLeaderNotReady):
		return protocol.Errorf(protocol.CodeNotReady, "%s: the leader is new; retry shortly", what)
	case errors.Is(err, raft.ErrLearnerBehind):
		return protocol.Errorf(protocol.CodeTimeout, "%s: %v", what, err)
	}
	return raftError(err, what)
}

func groupMembership(conf protocol.RaftConfiguration) *protocol.GroupMembership {
	return &protocol.GroupMembership{Voters: slices.Clone(conf.Voters), OutgoingVoters: slices.Clone(conf.OutgoingVoters), Learners: slices.Clone(conf.Learners)}
}

// isMember reports whether id is a voter, outgoing voter or learner.
func isMember(conf protocol.RaftConfiguration, id uint64) bool {
	return slices.Contains(conf.Voters, id) || slices.Contains(conf.OutgoingVoters, id) || slices.Contains(conf.Learners, id)
}

// controllerGroupLeader is the controller leader this broker's own replica
// knows, 0 when it knows none or is not a member of the controller group
// (a broker outside it, or removed from it, hears no heartbeats and would
// name a stale leader).
func (b *Broker) controllerGroupLeader() uint64 {
	if b.controller == nil {
		return 0
	}
	st := b.controller.group.Status()
	if !isMember(st.Configuration, b.cfg.ID) {
		return 0
	}
	return st.Leader
}

// controllerVoters is the controller group's voters as this broker's
// replica sees them.
func (b *Broker) controllerVoters() []uint64 {
	if b.controller == nil {
		return nil
	}
	return b.controller.group.Status().Configuration.Voters
}

// addMembership fills in a partition's configuration (from its leader's
// report) and its reassignment target.
func (b *Broker) addMembership(info *protocol.PartitionInfo, p partitionMeta, leaderStatus protocol.PartitionStatus, known bool) {
	info.Target = slices.Clone(p.Target)
	if known {
		info.Voters, info.OutgoingVoters, info.Learners = leaderStatus.Voters, leaderStatus.OutgoingVoters, leaderStatus.Learners
	}
}

// replicasLocked is r's replica list in the metadata this broker holds (it
// changes when a reassignment finishes; r.replicas is the list r started
// with). The caller holds b.mu.
func (b *Broker) replicasLocked(r *partitionReplica) []uint64 {
	if t := b.metadata.Topics[r.topic]; t != nil && int(r.partition) < len(t.Partitions) {
		if p := t.Partitions[r.partition]; p.GroupID == r.groupID && len(p.Replicas) > 0 {
			return p.Replicas
		}
	}
	return r.replicas
}

// controllerMembership is the controller group's configuration: this
// broker's own view when it is a member, else the controller leader's
// latest status report; nil when neither is known.
func (b *Broker) controllerMembership() *protocol.GroupMembership {
	if b.controllerGroupLeader() != 0 {
		return groupMembership(b.controller.group.Status().Configuration)
	}
	leader := b.controllerLeader()
	b.mu.RLock()
	defer b.mu.RUnlock()
	if report, ok := b.reports[leader]; ok && report.status.Controller != nil {
		return report.status.Controller
	}
	return nil
}

// startVoters is the raft.GroupConfig.Voters a replica of p starts with:
// the group's configuration as of index 0 while the group was never
// reassigned (every replica is one of its first ones) or when this replica
// already holds Raft state (its log and snapshots say the rest), and none
// for a new, empty replica of a reassigned group: it learns the
// configuration from the leader. Giving such a replica the bootstrap
// voters would be unsafe: if those brokers all joined again with empty
// logs, they could elect a leader of their own.
func startVoters(p partitionMeta, hs raft.HardState, log interface{ LastIndex() uint64 }) []uint64 {
	if p.Bootstrap != nil && hs.IsZero() && log.LastIndex() == 0 {
		return nil
	}
	return p.bootstrapVoters()
}

// firstVoter is the first of ids that is in voters, 0 when none is.
func firstVoter(ids, voters []uint64) uint64 {
	for _, id := range ids {
		if slices.Contains(voters, id) {
			return id
		}
	}
	return 0
}

// controllerStartVoters is the bootstrap configuration this broker's
// controller replica starts with (raft uses it only while the replica's
// storage is empty): none for a broker outside Bootstrap; Bootstrap for a
// bootstrap broker, unless its controller storage is empty and a running
// cluster's controller no longer counts it among its members. Such a
// broker was removed from the controller and came back with an empty disk:
// bootstrapping again would make it a voter of a configuration the cluster
// left, and with other such brokers it could elect a controller of its
// own. It starts outside the configuration instead, like any other broker
// (AdminAddController adds it back). The running cluster is asked through
// the other bootstrap brokers (AdminMetadata, answered from each one's own
// view); when none answers with cluster metadata and a controller
// membership, the cluster is taken to be new and Bootstrap is used.
func (b *Broker) controllerStartVoters(log interface{ LastIndex() uint64 }) ([]uint64, error) {
	if !b.cfg.isBootstrap() {
		return nil, nil
	}
	hs, err := (&hardStateStorage{store: b.store, groupID: controllerGroupID}).Load()
	if err != nil {
		return nil, err
	}
	if !hs.IsZero() || log.LastIndex() > 0 {
		return b.cfg.Bootstrap, nil
	}
	var membership *protocol.GroupMembership
	var asked []uint64
	for attempt := 0; membership == nil; attempt++ {
		var clusterExists bool
		membership, clusterExists, asked = b.askControllerMembership()
		if membership != nil {
			break
		}
		if !clusterExists {
			return b.cfg.Bootstrap, nil // a new cluster
		}
		// A running cluster whose controller membership nobody knows
		// right now (an election): ask again, a few election timeouts.
		if attempt == 5 {
			return nil, fmt.Errorf("broker: broker %d has an empty controller log and brokers %v run a cluster whose controller membership none of them knows: "+
				"not bootstrapping a controller next to it; start again once the controller has a leader", b.cfg.ID, asked)
		}
		time.Sleep(b.cfg.ElectionTimeout)
	}
	if slices.Contains(membership.Voters, b.cfg.ID) || slices.Contains(membership.OutgoingVoters, b.cfg.ID) ||
		slices.Contains(membership.Learners, b.cfg.ID) {
		return b.cfg.Bootstrap, nil
	}
	b.logger.Warn("this bootstrap broker was removed from the controller and its controller storage is empty: "+
		"it starts outside the controller group instead of bootstrapping one (add it back with AdminAddController)",
		"controller_voters", membership.Voters, "learners", membership.Learners, "asked", asked)
	return nil, nil
}

// askControllerMembership asks the other bootstrap brokers, in parallel,
// for the controller membership of the cluster they belong to. It returns
// the first one a broker with cluster metadata knows (nil when none),
// whether any broker has cluster metadata (false: a new cluster), and the
// brokers that answered.
func (b *Broker) askControllerMembership() (*protocol.GroupMembership, bool, []uint64) {
	ctx, cancel := context.WithTimeout(context.Background(), max(2*b.cfg.ElectionTimeout, time.Second))
	defer cancel()
	request, _ := json.Marshal(protocol.MetadataRequest{Version: protocol.APIVersion})
	type answer struct {
		id    uint64
		reply protocol.MetadataReply
		err   error
	}
	answers := make(chan answer, len(b.cfg.Bootstrap))
	asking := 0
	for _, id := range b.cfg.Bootstrap {
		if id == b.cfg.ID {
			continue
		}
		asking++
		go func() {
			a := answer{id: id}
			msg, err := b.nc.RequestMsgWithContext(ctx, &nats.Msg{
				Subject: protocol.SubjectBrokerAdmin(b.prefix, id, protocol.AdminMetadata), Data: request,
				Header: nats.Header{protocol.HeaderAcceptEncoding: []string{protocol.EncodingZstd}},
			})
			var data []byte
			if a.err = err; err == nil {
				data, a.err = messagePayload(msg)
			}
			if a.err == nil {
				a.err = json.Unmarshal(data, &a.reply)
			}
			answers <- a
		}()
	}
	var answered []uint64
	var found *protocol.GroupMembership
	clusterExists := false
	for range asking {
		a := <-answers
		if a.err != nil {
			continue // not running (no responders) or not answering
		}
		answered = append(answered, a.id)
		if a.reply.Error != nil {
			continue // no cluster metadata yet
		}
		clusterExists = true
		if found == nil && a.reply.Controller != nil && len(a.reply.Controller.Voters) > 0 {
			found = a.reply.Controller
		}
	}
	return found, clusterExists, answered
}
