package broker

import (
	"slices"
	"sort"

	"github.com/raftmq/raftmq/protocol"
)

// Consumer group membership and assignment: part of the controller's
// replicated state. Join, leave, sync and delete are controller commands
// (EntryControl, JSON, like topic commands); applying one recomputes the
// group's assignment deterministically from the members and the cluster
// metadata at that log index, so every controller replica, and whichever
// becomes the next coordinator, holds the same assignment.
//
// Assignment is cooperative and sticky. Each topic's partitions are spread
// over the members subscribed to it, as evenly as possible (counts differ
// by at most one), keeping every partition with its current owner whenever
// that owner still has room. A partition whose target differs from its
// owner stays with the owner (pending revocation) until the owner reports
// it no longer consumes it (a sync command from its heartbeat), or leaves,
// or its session expires; only then is it granted to the target, with the
// grant's log index as its assignment epoch. So members keep consuming the
// partitions they keep, and a partition never has two owners.

// Group commands (controllerCommand.Op).
const (
	opGroupJoin   = "group_join"
	opGroupLeave  = "group_leave"
	opGroupSync   = "group_sync"
	opGroupDelete = "group_delete"
	// opGroupDeclare records a group and its topics without a member, if
	// it does not exist yet: a reset of offsets declares the group, so
	// list and describe show a group that so far has only offsets.
	opGroupDeclare = "group_declare"
	// opGroupReset is a reset of offsets' check: refused with
	// group_not_empty while the group has members, else it declares the
	// reset topic as opGroupDeclare does (a group it does not know only
	// with groupCommand.Declare). Its index fences the reset's partition
	// ops: a partition refuses the reset when a member claimed it with a
	// later epoch, and refuses commits and claims with an earlier one
	// after it (consumerstate.go).
	opGroupReset = "group_reset"
)

// groupCommand is the group part of a controller command.
type groupCommand struct {
	Name             string                    `json:"name"`
	Member           string                    `json:"member,omitempty"`
	Topics           []string                  `json:"topics,omitempty"`
	SessionTimeoutMs int64                     `json:"session_timeout_ms,omitempty"`
	Owned            []protocol.GroupPartition `json:"owned,omitempty"`
	Expired          bool                      `json:"expired,omitempty"`
	// Seq is the heartbeat sequence number a sync comes from (0: an old
	// client, always applied); see groupMember.SyncSeq.
	Seq uint64 `json:"seq,omitempty"`
	// Declare, in a group_reset, creates the group when it does not
	// exist (the coordinator leaves it out for a name refused since it
	// was committed, which is not declared).
	Declare bool `json:"declare,omitempty"`
}

type partitionKey struct {
	Topic     string
	Partition uint32
}

type partitionOwner struct {
	Member string
	Epoch  uint64
}

type groupMember struct {
	ID               string
	Topics           []string
	SessionTimeoutMs int64
	// SyncSeq is the highest heartbeat Seq a sync of this member applied.
	// A sync with a Seq not above it comes from a stale heartbeat and
	// releases nothing. Kept when the member joins again.
	SyncSeq uint64 `json:",omitempty"`
}

// consumerGroup is one group's replicated state.
type consumerGroup struct {
	Name    string
	Members map[string]*groupMember
	Owners  map[partitionKey]partitionOwner
	Targets map[partitionKey]string
	// KnownTopics are the topics any member ever subscribed to (or a
	// reset of offsets named), kept after the members leave so describe
	// and list still show the group's committed offsets.
	KnownTopics []string
}

// know adds topics to the group's known topics.
func (g *consumerGroup) know(topics []string) {
	for _, t := range topics {
		if !slices.Contains(g.KnownTopics, t) {
			g.KnownTopics = append(g.KnownTopics, t)
		}
	}
	sort.Strings(g.KnownTopics)
}

func newConsumerGroup(name string) *consumerGroup {
	return &consumerGroup{Name: name, Members: map[string]*groupMember{}, Owners: map[partitionKey]partitionOwner{}, Targets: map[partitionKey]string{}}
}

// clone deep-copies g for readers outside the state machine's lock.
func (g *consumerGroup) clone() *consumerGroup {
	c := newConsumerGroup(g.Name)
	for id, m := range g.Members {
		copied := *m
		copied.Topics = slices.Clone(m.Topics)
		c.Members[id] = &copied
	}
	for k, v := range g.Owners {
		c.Owners[k] = v
	}
	for k, v := range g.Targets {
		c.Targets[k] = v
	}
	c.KnownTopics = slices.Clone(g.KnownTopics)
	return c
}

// topics lists the topics any member subscribes or ever subscribed to,
// sorted.
func (g *consumerGroup) topics() []string {
	out := slices.Clone(g.KnownTopics)
	for _, m := range g.Members {
		for _, t := range m.Topics {
			if !slices.Contains(out, t) {
				out = append(out, t)
			}
		}
	}
	sort.Strings(out)
	return out
}

func (g *consumerGroup) sortedMembers() []string {
	ids := make([]string, 0, len(g.Members))
	for id := range g.Members {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// assignment is a member's view: what it owns and keeps, what it must revoke.
func (g *consumerGroup) assignment(member string) (assigned, revoke []protocol.GroupPartition) {
	assigned, revoke = []protocol.GroupPartition{}, []protocol.GroupPartition{}
	for k, o := range g.Owners {
		if o.Member != member {
			continue
		}
		gp := protocol.GroupPartition{Topic: k.Topic, Partition: k.Partition, Epoch: o.Epoch}
		if g.Targets[k] == member {
			assigned = append(assigned, gp)
		} else {
			revoke = append(revoke, gp)
		}
	}
	sortGroupPartitions(assigned)
	sortGroupPartitions(revoke)
	return assigned, revoke
}

func sortGroupPartitions(s []protocol.GroupPartition) {
	slices.SortFunc(s, func(a, b protocol.GroupPartition) int {
		if a.Topic != b.Topic {
			if a.Topic < b.Topic {
				return -1
			}
			return 1
		}
		return int(a.Partition) - int(b.Partition)
	})
}

// computeTargets is the sticky balanced assignment of g's partitions over
// its members given the metadata; it does not modify g.
func computeTargets(g *consumerGroup, m *clusterMetadata) map[partitionKey]string {
	targets := map[partitionKey]string{}
	for _, topic := range g.topics() {
		meta := m.Topics[topic]
		if meta == nil || len(meta.Partitions) == 0 {
			continue
		}
		var eligible []string
		for _, id := range g.sortedMembers() {
			if slices.Contains(g.Members[id].Topics, topic) {
				eligible = append(eligible, id)
			}
		}
		if len(eligible) == 0 { // a topic the group only remembers
			continue
		}
		n := len(meta.Partitions)
		base, extra := n/len(eligible), n%len(eligible)
		count := map[string]int{}
		assign := func(p int, id string) {
			targets[partitionKey{topic, uint32(p)}] = id
			count[id]++
		}
		owner := func(p int) (string, bool) {
			o, ok := g.Owners[partitionKey{topic, uint32(p)}]
			if !ok || !slices.Contains(eligible, o.Member) {
				return "", false
			}
			return o.Member, true
		}
		// Keep current owners up to the base share, then up to one more
		// while extra shares remain.
		for p := range n {
			if id, ok := owner(p); ok && count[id] < base {
				assign(p, id)
			}
		}
		for p := range n {
			if _, done := targets[partitionKey{topic, uint32(p)}]; done {
				continue
			}
			if id, ok := owner(p); ok && count[id] == base && extra > 0 {
				assign(p, id)
				extra--
			}
		}
		// Place the rest on the least loaded members with room.
		for p := range n {
			if _, done := targets[partitionKey{topic, uint32(p)}]; done {
				continue
			}
			best := ""
			for _, id := range eligible {
				room := count[id] < base || count[id] == base && extra > 0
				if room && (best == "" || count[id] < count[best]) {
					best = id
				}
			}
			if count[best] == base {
				extra--
			}
			assign(p, best)
		}
	}
	return targets
}

// recompute updates targets and grants free partitions to their targets
// with epoch index.
func (g *consumerGroup) recompute(index uint64, m *clusterMetadata) {
	for k, o := range g.Owners {
		t := m.Topics[k.Topic]
		if g.Members[o.Member] == nil || t == nil || int(k.Partition) >= len(t.Partitions) {
			delete(g.Owners, k)
		}
	}
	g.Targets = computeTargets(g, m)
	for k, target := range g.Targets {
		if _, owned := g.Owners[k]; !owned {
			g.Owners[k] = partitionOwner{Member: target, Epoch: index}
		}
	}
}

// applyGroupCommand applies a group command at index; groups is modified in
// place. It is deterministic.
func applyGroupCommand(groups map[string]*consumerGroup, m *clusterMetadata, index uint64, cmd controllerCommand) *protocol.Error {
	gc := cmd.Group
	if gc == nil {
		return protocol.Errorf(protocol.CodeMalformedRequest, "group command without group")
	}
	g := groups[gc.Name]
	if g == nil && (cmd.Op == opGroupJoin || cmd.Op == opGroupDeclare || cmd.Op == opGroupReset && gc.Declare) {
		g = newConsumerGroup(gc.Name)
		groups[gc.Name] = g
	}
	if g == nil {
		switch cmd.Op {
		case opGroupReset:
			return nil // no members: the offsets may be reset
		case opGroupDelete:
			return protocol.Errorf(protocol.CodeUnknownGroup, "group %q does not exist", gc.Name)
		}
		return protocol.Errorf(protocol.CodeUnknownMember, "group %q has no member %q", gc.Name, gc.Member)
	}
	switch cmd.Op {
	case opGroupJoin:
		topics := slices.Clone(gc.Topics)
		sort.Strings(topics)
		var syncSeq uint64
		if old := g.Members[gc.Member]; old != nil {
			syncSeq = old.SyncSeq
		}
		g.Members[gc.Member] = &groupMember{ID: gc.Member, Topics: slices.Compact(topics), SessionTimeoutMs: gc.SessionTimeoutMs, SyncSeq: syncSeq}
		g.know(topics)
	case opGroupDeclare:
		g.know(gc.Topics)
	case opGroupReset:
		if len(g.Members) > 0 {
			return protocol.Errorf(protocol.CodeGroupNotEmpty, "group %q has %d active members; stop them first", gc.Name, len(g.Members))
		}
		g.know(gc.Topics)
	case opGroupLeave:
		if g.Members[gc.Member] == nil {
			return protocol.Errorf(protocol.CodeUnknownMember, "group %q has no member %q", gc.Name, gc.Member)
		}
		delete(g.Members, gc.Member)
	case opGroupSync:
		member := g.Members[gc.Member]
		if member == nil {
			return protocol.Errorf(protocol.CodeUnknownMember, "group %q has no member %q", gc.Name, gc.Member)
		}
		if gc.Seq != 0 {
			if gc.Seq <= member.SyncSeq {
				break // a stale heartbeat's Owned list: release nothing
			}
			member.SyncSeq = gc.Seq
		}
		owned := map[partitionKey]bool{}
		for _, gp := range gc.Owned {
			owned[partitionKey{gp.Topic, gp.Partition}] = true
		}
		for k, o := range g.Owners {
			if o.Member == gc.Member && g.Targets[k] != gc.Member && !owned[k] {
				delete(g.Owners, k) // released
			}
		}
	case opGroupDelete:
		if len(g.Members) > 0 {
			return protocol.Errorf(protocol.CodeGroupNotEmpty, "group %q has %d active members", gc.Name, len(g.Members))
		}
		delete(groups, gc.Name)
		return nil
	default:
		return protocol.Errorf(protocol.CodeInvalidArgument, "unknown group operation %q", cmd.Op)
	}
	g.recompute(index, m)
	return nil
}
