package broker

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/raftmq/raftmq/protocol"
	"github.com/raftmq/raftmq/raft"
)

// The group coordinator is the controller group's leader: group state is
// part of the controller's replicated state (groups.go), so when the
// controller leader fails, the next one holds every member and assignment.
// Heartbeats are not replicated: the coordinator keeps each member's last
// heartbeat in memory, and a new coordinator starts every member's session
// afresh when it takes over (a member is never expired for the time no
// coordinator was there to hear it).
//
// Stale heartbeats: a heartbeat the member gave up on (it timed out) can
// still arrive after a newer one, e.g. held by a forwarding broker. Its
// Owned list may omit a partition the member claimed since, and acting on
// it would release a partition the member still consumes. A member numbers
// its heartbeats (HeartbeatRequest.Seq, increasing); the coordinator keeps
// the highest Seq it served per member (groupSessions.seq) and answers a
// heartbeat with a Seq not above it with the current assignment only: it
// neither acts on its Owned list nor renews the session (a late copy of an
// old heartbeat proves nothing about the member now, and renewing on it
// would keep a dead member alive longer). A sync command carries the Seq
// too, and the replicated group state keeps the highest Seq a sync applied
// per member (groupMember.SyncSeq); a sync whose Seq is not above it
// releases nothing. So two syncs proposed concurrently cannot apply out of
// order, and a new coordinator rejects a heartbeat older than the last
// sync. What remains after a failover: the new coordinator's in-memory Seq
// starts empty, so it accepts a stale heartbeat newer than the last
// replicated sync of that member (a heartbeat served by the old coordinator
// without a sync is not remembered). Seq 0 (a client from before Seq)
// keeps the old behaviour: always acted on.

const (
	defaultSessionTimeout = 10 * time.Second
	minSessionTimeout     = 100 * time.Millisecond
	maxSessionTimeout     = 10 * time.Minute
)

// groupSessions is the coordinator's in-memory liveness of members.
type groupSessions struct {
	mu       sync.Mutex
	term     uint64                          // controller term the sessions belong to
	lastSeen map[string]map[string]time.Time // group -> member -> last heartbeat
	expiring map[string]bool                 // group+"\x00"+member: a leave is being proposed
	seq      map[string]uint64               // group+"\x00"+member: highest heartbeat Seq served
	pruned   time.Time                       // the last prune
}

func newGroupSessions() *groupSessions {
	return &groupSessions{lastSeen: map[string]map[string]time.Time{}, expiring: map[string]bool{}, seq: map[string]uint64{}}
}

// heartbeatSeen records a heartbeat with sequence number seq served as
// coordinator in term, as touch does, unless it is stale: seq is not above
// the highest seq served for the member in this term, nor above
// replicatedSeq (the highest seq a committed sync of the member carried).
// A stale heartbeat changes nothing and heartbeatSeen returns false. Seq 0
// (an old client) is never stale.
func (s *groupSessions) heartbeatSeen(term uint64, group, member string, seq, replicatedSeq uint64, now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.resetIfNewTermLocked(term)
	if seq != 0 {
		key := sessionKey(group, member)
		if seq <= s.seq[key] || seq <= replicatedSeq {
			return false
		}
		s.seq[key] = seq
	}
	if s.lastSeen[group] == nil {
		s.lastSeen[group] = map[string]time.Time{}
	}
	s.lastSeen[group][member] = now
	return true
}

// touch records a heartbeat served as coordinator in term. A newer
// controller term starts all sessions over; a heartbeat served in an older
// term (this broker lost and regained leadership while serving it) still
// proves the member alive, and must not wind the sessions back to that term.
func (s *groupSessions) touch(term uint64, group, member string, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.resetIfNewTermLocked(term)
	if s.lastSeen[group] == nil {
		s.lastSeen[group] = map[string]time.Time{}
	}
	s.lastSeen[group][member] = now
}

func (s *groupSessions) forget(group, member string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.lastSeen[group], member)
	delete(s.expiring, sessionKey(group, member))
	delete(s.seq, sessionKey(group, member))
}

// markFailed clears the expiring mark of a member whose leave could not be
// committed, keeping its last heartbeat, so the next check proposes the
// leave again (rather than starting a whole new session for it).
func (s *groupSessions) markFailed(group, member string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.expiring, sessionKey(group, member))
}

func (s *groupSessions) resetIfNewTermLocked(term uint64) {
	if term > s.term {
		s.term = term
		s.lastSeen = map[string]map[string]time.Time{}
		s.expiring = map[string]bool{}
		s.seq = map[string]uint64{}
	}
}

// expired returns the members of groups whose session ran out, marking
// them as being expired; members never heard of in this term start now.
func (s *groupSessions) expired(term uint64, groups []*consumerGroup, now time.Time) [][2]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.resetIfNewTermLocked(term)
	var out [][2]string
	for _, g := range groups {
		if s.lastSeen[g.Name] == nil {
			s.lastSeen[g.Name] = map[string]time.Time{}
		}
		for id, m := range g.Members {
			seen, ok := s.lastSeen[g.Name][id]
			if !ok {
				s.lastSeen[g.Name][id] = now
				continue
			}
			key := sessionKey(g.Name, id)
			if now.Sub(seen) > time.Duration(m.SessionTimeoutMs)*time.Millisecond && !s.expiring[key] {
				s.expiring[key] = true
				out = append(out, [2]string{g.Name, id})
			}
		}
	}
	return out
}

// sessionPruneInterval is how often the coordinator forgets the sessions
// of deleted groups and departed members (prune): a scan of every session,
// under the lock heartbeats take, so not at every check.
const sessionPruneInterval = 30 * time.Second

// prune forgets, at most once per sessionPruneInterval, the sessions of
// groups and members not in groups() (deleted, or gone by a leave the
// coordinator did not serve), so a long term does not keep every group it
// ever saw. groups is read under the sessions' lock: a heartbeat served
// after a member's join applied finds the member in it, and its sequence
// number is kept (a snapshot taken before could drop it, and let a late,
// older copy of that heartbeat through).
func (s *groupSessions) prune(groups func() []*consumerGroup, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if now.Sub(s.pruned) < sessionPruneInterval {
		return
	}
	s.pruned = now
	list := groups()
	current := make(map[string]*consumerGroup, len(list))
	for _, g := range list {
		current[g.Name] = g
	}
	for name, members := range s.lastSeen {
		g := current[name]
		if g == nil {
			delete(s.lastSeen, name)
			continue
		}
		for id := range members {
			if g.Members[id] == nil {
				delete(members, id)
			}
		}
	}
	for key := range s.expiring {
		if !sessionMember(current, key) {
			delete(s.expiring, key)
		}
	}
	for key := range s.seq {
		if !sessionMember(current, key) {
			delete(s.seq, key)
		}
	}
}

// sessionKey is the key of a member's expiring mark and heartbeat
// sequence; sessionMember splits it.
func sessionKey(group, member string) string { return group + "\x00" + member }

// sessionMember reports whether key (sessionKey) names a member of one of
// groups.
func sessionMember(groups map[string]*consumerGroup, key string) bool {
	name, id, _ := strings.Cut(key, "\x00")
	g := groups[name]
	return g != nil && g.Members[id] != nil
}

// coordinatorCheck returns nil when this broker may coordinate groups: it
// leads the controller and applied an entry of its own term, so its group
// state includes every committed command (§5.4.2). Proposals in flight do
// not make it wait (a busy group would otherwise never be served).
func (b *Broker) coordinatorCheck() (uint64, *protocol.Error) {
	if b.controller == nil {
		return 0, &protocol.Error{Code: protocol.CodeNotLeader, Leader: b.controllerLeader(),
			Message: fmt.Sprintf("broker %d does not coordinate groups (the controller leader does)", b.cfg.ID)}
	}
	st := b.controller.group.Status()
	if st.Role != raft.RoleLeader {
		return 0, &protocol.Error{Code: protocol.CodeNotLeader, Leader: b.controllerLeader(),
			Message: fmt.Sprintf("broker %d does not coordinate groups (the controller leader does)", b.cfg.ID)}
	}
	if !b.controller.state.appliedInTerm(st.Term) {
		return 0, protocol.Errorf(protocol.CodeNotReady, "the group coordinator is catching up")
	}
	return st.Term, nil
}

// heartbeatInterval tells members how often to heartbeat: a third of the
// session timeout, at most 3 s.
func heartbeatInterval(sessionTimeoutMs int64) int64 {
	return max(min(sessionTimeoutMs/3, 3000), 10)
}

// groupAdmin serves the group admin operations on the coordinator.
func (b *Broker) groupAdmin(ctx context.Context, op string, data []byte) any {
	fail := func(e *protocol.Error) any { return adminError{protocol.APIVersion, e} }
	term, apiErr := b.coordinatorCheck()
	if apiErr != nil {
		return fail(apiErr)
	}
	switch op {
	case protocol.AdminGroupJoin:
		var req protocol.JoinGroupRequest
		if err := json.Unmarshal(data, &req); err != nil {
			return fail(protocol.Errorf(protocol.CodeMalformedRequest, "%v", err))
		}
		return b.joinGroup(ctx, term, &req)
	case protocol.AdminGroupHeartbeat:
		var req protocol.HeartbeatRequest
		if err := json.Unmarshal(data, &req); err != nil {
			return fail(protocol.Errorf(protocol.CodeMalformedRequest, "%v", err))
		}
		return b.heartbeat(ctx, term, &req)
	case protocol.AdminGroupLeave:
		var req protocol.LeaveGroupRequest
		if err := json.Unmarshal(data, &req); err != nil {
			return fail(protocol.Errorf(protocol.CodeMalformedRequest, "%v", err))
		}
		_, apiErr := b.proposeControl(ctx, controllerCommand{Op: opGroupLeave, Group: &groupCommand{Name: req.Group, Member: req.Member}, Time: time.Now()})
		b.sessions.forget(req.Group, req.Member)
		b.groupChanged(req.Group)
		return adminError{protocol.APIVersion, apiErr}
	case protocol.AdminGroupList:
		reply := protocol.ListGroupsReply{Version: protocol.APIVersion, Groups: []protocol.GroupSummary{}}
		for _, g := range b.controller.state.groupList() {
			reply.Groups = append(reply.Groups, protocol.GroupSummary{Group: g.Name, Members: len(g.Members), Topics: nonNil(g.topics())})
		}
		return reply
	case protocol.AdminGroupDescribe:
		var req protocol.GroupRequest
		if err := json.Unmarshal(data, &req); err != nil {
			return fail(protocol.Errorf(protocol.CodeMalformedRequest, "%v", err))
		}
		return b.describeGroup(req.Group)
	case protocol.AdminGroupDelete:
		var req protocol.GroupRequest
		if err := json.Unmarshal(data, &req); err != nil {
			return fail(protocol.Errorf(protocol.CodeMalformedRequest, "%v", err))
		}
		return b.deleteGroup(ctx, req.Group)
	case protocol.AdminGroupReset:
		var req protocol.ResetOffsetsRequest
		if err := json.Unmarshal(data, &req); err != nil {
			return fail(protocol.Errorf(protocol.CodeMalformedRequest, "%v", err))
		}
		return b.resetOffsets(ctx, &req)
	}
	return fail(protocol.Errorf(protocol.CodeMalformedRequest, "unknown group operation %q", op))
}

// groupChanged tells a group's members to heartbeat now.
func (b *Broker) groupChanged(group string) {
	_ = b.nc.Publish(protocol.SubjectGroupChanged(b.prefix, group), nil)
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

func (b *Broker) assignmentReply(group, member string, sessionTimeoutMs int64) protocol.HeartbeatReply {
	reply := protocol.HeartbeatReply{Version: protocol.APIVersion, HeartbeatIntervalMs: heartbeatInterval(sessionTimeoutMs)}
	g, ok := b.controller.state.group(group)
	if !ok || g.Members[member] == nil {
		reply.Error = protocol.Errorf(protocol.CodeUnknownMember, "group %q has no member %q (session expired?); join again", group, member)
		return reply
	}
	reply.Assigned, reply.Revoke = g.assignment(member)
	return reply
}

func (b *Broker) joinGroup(ctx context.Context, term uint64, req *protocol.JoinGroupRequest) protocol.HeartbeatReply {
	fail := func(e *protocol.Error) protocol.HeartbeatReply {
		return protocol.HeartbeatReply{Version: protocol.APIVersion, Error: e}
	}
	if err := protocol.ValidateGroupName(req.Group); err != nil {
		return fail(protocol.Errorf(protocol.CodeInvalidArgument, "%v", err))
	}
	if err := protocol.ValidateMemberID(req.Member); err != nil {
		return fail(protocol.Errorf(protocol.CodeInvalidArgument, "%v", err))
	}
	if len(req.Topics) == 0 {
		return fail(protocol.Errorf(protocol.CodeInvalidArgument, "join without topics"))
	}
	m := b.currentMetadata()
	for _, topic := range req.Topics {
		if m.Topics[topic] == nil {
			return fail(protocol.Errorf(protocol.CodeUnknownTopic, "topic %q does not exist", topic))
		}
	}
	timeout := time.Duration(req.SessionTimeoutMs) * time.Millisecond
	if timeout == 0 {
		timeout = defaultSessionTimeout
	}
	if timeout < minSessionTimeout || timeout > maxSessionTimeout {
		return fail(protocol.Errorf(protocol.CodeInvalidArgument, "session timeout %v: want %v to %v", timeout, minSessionTimeout, maxSessionTimeout))
	}
	b.sessions.touch(term, req.Group, req.Member, time.Now())
	_, apiErr := b.proposeControl(ctx, controllerCommand{Op: opGroupJoin, Time: time.Now(), Group: &groupCommand{
		Name: req.Group, Member: req.Member, Topics: req.Topics, SessionTimeoutMs: timeout.Milliseconds()}})
	if apiErr != nil {
		return fail(apiErr)
	}
	b.groupChanged(req.Group)
	return b.assignmentReply(req.Group, req.Member, timeout.Milliseconds())
}

// heartbeat renews a member's session; when the member released partitions
// it was asked to revoke, or the group's partitions changed (a topic grew
// or went away), it proposes a sync so the assignment moves on. A stale
// heartbeat (see heartbeatSeen) only gets the current assignment.
func (b *Broker) heartbeat(ctx context.Context, term uint64, req *protocol.HeartbeatRequest) protocol.HeartbeatReply {
	g, ok := b.controller.state.group(req.Group)
	if !ok || g.Members[req.Member] == nil {
		return protocol.HeartbeatReply{Version: protocol.APIVersion, Error: protocol.Errorf(protocol.CodeUnknownMember,
			"group %q has no member %q (session expired?); join again", req.Group, req.Member)}
	}
	member := g.Members[req.Member]
	sessionMs := member.SessionTimeoutMs
	if !b.sessions.heartbeatSeen(term, req.Group, req.Member, req.Seq, member.SyncSeq, time.Now()) {
		return b.assignmentReply(req.Group, req.Member, sessionMs)
	}
	if needsSync(g, req, b.currentMetadata()) {
		_, apiErr := b.proposeControl(ctx, controllerCommand{Op: opGroupSync, Time: time.Now(),
			Group: &groupCommand{Name: req.Group, Member: req.Member, Owned: req.Owned, Seq: req.Seq}})
		if apiErr != nil {
			return protocol.HeartbeatReply{Version: protocol.APIVersion, Error: apiErr}
		}
		b.groupChanged(req.Group)
	}
	return b.assignmentReply(req.Group, req.Member, sessionMs)
}

func needsSync(g *consumerGroup, req *protocol.HeartbeatRequest, m *clusterMetadata) bool {
	owned := map[partitionKey]bool{}
	for _, gp := range req.Owned {
		owned[partitionKey{gp.Topic, gp.Partition}] = true
	}
	for k, o := range g.Owners {
		if o.Member == req.Member && g.Targets[k] != req.Member && !owned[k] {
			return true
		}
	}
	targets := computeTargets(g, m)
	if len(targets) != len(g.Targets) {
		return true
	}
	for k, v := range targets {
		if g.Targets[k] != v {
			return true
		}
	}
	return false
}

// expireMembers proposes a leave for every member whose session ran out.
// Called from the broker loop on the caught-up controller leader, at every
// tick; a leave that fails is proposed again at a later tick.
func (b *Broker) expireMembers(now time.Time) {
	term := b.controller.group.Status().Term
	b.sessions.prune(b.controller.state.groupList, now)
	for _, gm := range b.sessions.expired(term, b.controller.state.groupList(), now) {
		if !b.track() {
			return
		}
		go func() {
			defer b.requests.Done()
			ctx, cancel := context.WithTimeout(context.Background(), adminTimeout)
			defer cancel()
			_, apiErr := b.proposeControl(ctx, controllerCommand{Op: opGroupLeave, Time: now,
				Group: &groupCommand{Name: gm[0], Member: gm[1], Expired: true}})
			if apiErr != nil && apiErr.Code != protocol.CodeUnknownMember {
				// Retried at the next check (a timed-out leave that did
				// commit then reads as unknown member).
				b.sessions.markFailed(gm[0], gm[1])
				b.logger.Warn("expire group member", "group", gm[0], "member", gm[1], "err", apiErr)
				return
			}
			b.sessions.forget(gm[0], gm[1])
			b.groupChanged(gm[0])
			b.logger.Info("group member session expired", "group", gm[0], "member", gm[1])
		}()
	}
}

func (b *Broker) describeGroup(name string) protocol.DescribeGroupReply {
	reply := protocol.DescribeGroupReply{Version: protocol.APIVersion, Group: name, Topics: []string{},
		Members: []protocol.GroupMember{}, Partitions: []protocol.PartitionOwner{}}
	g, ok := b.controller.state.group(name)
	if !ok {
		reply.Error = protocol.Errorf(protocol.CodeUnknownGroup, "group %q does not exist", name)
		return reply
	}
	reply.Topics = nonNil(g.topics())
	for _, id := range g.sortedMembers() {
		m := g.Members[id]
		owned := []protocol.GroupPartition{}
		for k, o := range g.Owners {
			if o.Member == id {
				owned = append(owned, protocol.GroupPartition{Topic: k.Topic, Partition: k.Partition, Epoch: o.Epoch})
			}
		}
		sortGroupPartitions(owned)
		reply.Members = append(reply.Members, protocol.GroupMember{Member: id, Topics: m.Topics, SessionTimeoutMs: m.SessionTimeoutMs, Owned: owned})
	}
	metadata := b.currentMetadata()
	for _, topic := range reply.Topics {
		t := metadata.Topics[topic]
		if t == nil {
			continue
		}
		for p := range t.Partitions {
			k := partitionKey{topic, uint32(p)}
			po := protocol.PartitionOwner{Topic: topic, Partition: uint32(p), Owner: g.Owners[k].Member, Epoch: g.Owners[k].Epoch}
			if target := g.Targets[k]; target != po.Owner {
				po.Target = target
			}
			reply.Partitions = append(reply.Partitions, po)
		}
	}
	return reply
}

// deleteGroup removes a group without members from the coordinator and its
// offsets from every partition.
func (b *Broker) deleteGroup(ctx context.Context, name string) protocol.DeleteGroupReply {
	reply := protocol.DeleteGroupReply{Version: protocol.APIVersion}
	if err := protocol.ValidateExistingGroupName(name); err != nil {
		reply.Error = protocol.Errorf(protocol.CodeInvalidArgument, "%v", err)
		return reply
	}
	// The group's topics, where its members may have been granted
	// partitions they have not claimed yet (read before the delete: the
	// group has no members then, and a member that joined since would
	// make the delete fail).
	var groupTopics []string
	if g, ok := b.controller.state.group(name); ok {
		groupTopics = g.topics()
	}
	_, index, apiErr := b.proposeControlAt(ctx, controllerCommand{Op: opGroupDelete, Group: &groupCommand{Name: name}, Time: time.Now()})
	if apiErr != nil && apiErr.Code != protocol.CodeUnknownGroup {
		reply.Error = apiErr
		return reply
	}
	// The delete's index is above every assignment epoch granted to the
	// group's members so far: the partitions keep it as the fence of the
	// group's tombstone (consumerRecord.Fence), which fences a member
	// that has not noticed the delete, even one whose claim is still on
	// its way. The partitions of the group's topics get the tombstone
	// whether or not they hold the group's state (a member granted one
	// may claim it after the delete); the others, where offsets come
	// only from commits outside the group's membership, only where they
	// do (a tombstone of every group on every partition would never be
	// forgotten).
	fenced := protocol.OffsetCommitRequest{Version: protocol.APIVersion, Group: name, Op: protocol.CommitOpDeleteAndFence}
	req := protocol.OffsetCommitRequest{Version: protocol.APIVersion, Group: name, Op: protocol.CommitOpDelete}
	m := b.currentMetadata()
	for _, topic := range m.sortedTopicNames() {
		to := &req
		if slices.Contains(groupTopics, topic) {
			to = &fenced
		}
		for p := range m.Topics[topic].Partitions {
			to.Offsets = append(to.Offsets, protocol.PartitionOffset{Topic: topic, Partition: uint32(p), Epoch: index})
		}
	}
	// The group existed if the coordinator knew it or a partition held
	// its offsets (a group whose members all left keeps only those).
	found := apiErr == nil
	for _, res := range append(b.commitAtLeaders(ctx, &fenced), b.commitAtLeaders(ctx, &req)...) {
		switch {
		case res.Error == nil:
			found = true
		case res.Error.Code == protocol.CodeUnknownGroup:
			// Nothing of the group's on that partition.
		default:
			reply.Error = protocol.Errorf(res.Error.Code, "delete offsets of %s/%d: %s", res.Topic, res.Partition, res.Error.Message)
			return reply
		}
	}
	if !found {
		reply.Error = protocol.Errorf(protocol.CodeUnknownGroup, "group %q does not exist", name)
	}
	return reply
}

// resetOffsets sets a group's offsets of a topic, refused while the group
// has members.
//
// The check that the group has no members is a controller command
// (group_reset), so it holds at a point of the controller log, index I,
// and not only in this coordinator's view: a member that joins after it
// is granted epochs above I. Each partition's reset op carries I as its
// epoch: a partition a member claimed after I (epoch above I) refuses the
// reset with group_not_empty, as the member may have read the offset
// before it; otherwise the reset applies and fences epochs below I
// (consumerRecord.Fence), so a member whose session expired before the
// reset cannot commit over it.
func (b *Broker) resetOffsets(ctx context.Context, req *protocol.ResetOffsetsRequest) protocol.ResetOffsetsReply {
	reply := protocol.ResetOffsetsReply{Version: protocol.APIVersion}
	if err := protocol.ValidateExistingGroupName(req.Group); err != nil {
		reply.Error = protocol.Errorf(protocol.CodeInvalidArgument, "%v", err)
		return reply
	}
	t := b.currentMetadata().Topics[req.Topic]
	if t == nil {
		reply.Error = protocol.Errorf(protocol.CodeUnknownTopic, "topic %q does not exist", req.Topic)
		return reply
	}
	// The command also declares the group and the topic, so a group that
	// has only offsets so far is listed and described like one whose
	// members left. (A name refused since it was committed is not
	// declared.)
	_, index, apiErr := b.proposeControlAt(ctx, controllerCommand{Op: opGroupReset, Time: time.Now(),
		Group: &groupCommand{Name: req.Group, Topics: []string{req.Topic}, Declare: protocol.ValidateGroupName(req.Group) == nil}})
	if apiErr != nil {
		reply.Error = apiErr
		return reply
	}
	commit := protocol.OffsetCommitRequest{Version: protocol.APIVersion, Group: req.Group, Op: protocol.CommitOpReset, ResetTo: req.To, ResetValue: req.Value}
	for p := range t.Partitions {
		commit.Offsets = append(commit.Offsets, protocol.PartitionOffset{Topic: req.Topic, Partition: uint32(p), Offset: uint64(max(req.Value, 0)), Epoch: index})
	}
	reply.Results = b.commitAtLeaders(ctx, &commit)
	return reply
}

// commitAtLeaders sends req's offsets to their partitions' leaders, one
// request per leader, retrying retriable failures until ctx ends. Results
// are in req.Offsets order.
func (b *Broker) commitAtLeaders(ctx context.Context, req *protocol.OffsetCommitRequest) []protocol.PartitionResult {
	results := make([]protocol.PartitionResult, len(req.Offsets))
	pending := make([]int, len(req.Offsets))
	for i := range pending {
		pending[i] = i
	}
	for attempt := 0; len(pending) > 0; attempt++ {
		byLeader := map[uint64][]int{}
		for _, i := range pending {
			po := req.Offsets[i]
			// Looked up once: a leader change between two lookups would
			// file the offset under one leader and append it to another's
			// list, losing it (a zero result: success).
			leader := b.leaderOf(po.Topic, po.Partition)
			byLeader[leader] = append(byLeader[leader], i)
		}
		var retry []int
		for leader, indexes := range byLeader {
			sub := *req
			sub.Offsets = nil
			for _, i := range indexes {
				sub.Offsets = append(sub.Offsets, req.Offsets[i])
			}
			var reply protocol.OffsetCommitReply
			if leader == 0 {
				reply.Error = protocol.Errorf(protocol.CodeNotReady, "no leader known")
			} else if data, err := json.Marshal(&sub); err == nil {
				msg, err := b.nc.RequestWithContext(ctx, protocol.SubjectBrokerCommit(b.prefix, leader), data)
				if err != nil {
					reply.Error = protocol.Errorf(protocol.CodeTimeout, "broker %d: %v", leader, err)
				} else if err := json.Unmarshal(msg.Data, &reply); err != nil {
					reply.Error = protocol.Errorf(protocol.CodeMalformedRequest, "%v", err)
				}
			}
			for j, i := range indexes {
				res := protocol.PartitionResult{Topic: req.Offsets[i].Topic, Partition: req.Offsets[i].Partition, Error: reply.Error}
				if reply.Error == nil && j < len(reply.Results) {
					res = reply.Results[j]
				}
				results[i] = res
				if res.Error != nil && res.Error.Retriable() {
					retry = append(retry, i)
				}
			}
		}
		pending = retry
		if len(pending) == 0 || ctx.Err() != nil {
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(min(time.Duration(attempt+1)*50*time.Millisecond, 500*time.Millisecond)):
		}
	}
	return results
}
