package broker

import (
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/raftmq/raftmq/protocol"
)

// controllerGroupID is the Raft group id of the controller (the raft
// package reserves 0). Partition groups get ids from firstPartitionGroupID
// up, never reused, so a topic deleted and created again never meets the
// old replicas' Raft state.
const (
	controllerGroupID     = 1
	firstPartitionGroupID = 2
)

// clusterMetadata is the controller's state: brokers, topics and replica
// assignment. Values are immutable once published; apply builds a new one.
type clusterMetadata struct {
	// Version is the controller log index of the last change; 0 means "no
	// metadata known yet".
	Version     uint64                `json:"version"`
	Brokers     []uint64              `json:"brokers"`
	NextGroupID uint64                `json:"next_group_id"`
	Topics      map[string]*topicMeta `json:"topics"`
}

type topicMeta struct {
	Name       string          `json:"name"`
	Replicas   int             `json:"replicas"`
	CreatedAt  time.Time       `json:"created_at"`
	Partitions []partitionMeta `json:"partitions"`
	// RetentionMs and RetentionBytes override the brokers' retention
	// defaults when non-zero; -1 means no limit.
	RetentionMs    int64 `json:"retention_ms,omitempty"`
	RetentionBytes int64 `json:"retention_bytes,omitempty"`
}

type partitionMeta struct {
	GroupID uint64 `json:"group_id"`
	// Replicas lists the brokers holding the partition; the first is the
	// preferred leader.
	Replicas []uint64 `json:"replicas"`
	// Target is the replica set a reassignment in progress moves the
	// partition to (membership.go); nil when none is. Brokers in Target
	// run a replica (as learners until promoted) while it is set.
	Target []uint64 `json:"target,omitempty"`
	// TargetIndex is the controller log index of the command that set
	// Target (a reassignment, a replace-broker or a cancel): the move's
	// identity, which the leader's done report carries, so that a late
	// report of an earlier move is not taken for this one. 0 with no
	// Target, or in metadata from a controller that predates it.
	TargetIndex uint64 `json:"target_index,omitempty"`
	// Leaving lists the brokers of a cancelled reassignment's target that
	// are not in Replicas: they keep their replica (they may be Raft
	// members) until the move back is done, then delete it.
	Leaving []uint64 `json:"leaving,omitempty"`
	// Bootstrap is the Raft configuration the group was created with, kept
	// once a reassignment changes Replicas (nil: Replicas still is it).
	// Every replica of the group starts with it as raft.GroupConfig.Voters,
	// the configuration as of index 0, whatever the log says later.
	Bootstrap []uint64 `json:"bootstrap,omitempty"`
}

// hasReplica reports whether broker id runs a replica of the partition: it
// is in Replicas or in a reassignment's Target.
func (p partitionMeta) hasReplica(id uint64) bool {
	return slices.Contains(p.Replicas, id) || slices.Contains(p.Target, id) || slices.Contains(p.Leaving, id)
}

// runningOn lists the brokers that run a replica of the partition
// (hasReplica): Replicas, then the others of Target and Leaving. A
// reassignment waits for its target's replicas, so a failed one there
// is what the cluster status must show.
func (p partitionMeta) runningOn() []uint64 {
	out := slices.Clone(p.Replicas)
	for _, id := range slices.Concat(p.Target, p.Leaving) {
		if !slices.Contains(out, id) {
			out = append(out, id)
		}
	}
	return out
}

// bootstrapVoters is the group's configuration as of index 0.
func (p partitionMeta) bootstrapVoters() []uint64 {
	if p.Bootstrap != nil {
		return p.Bootstrap
	}
	return p.Replicas
}

func newClusterMetadata(bootstrap []uint64) *clusterMetadata {
	brokers := slices.Clone(bootstrap)
	slices.Sort(brokers)
	return &clusterMetadata{Brokers: brokers, NextGroupID: firstPartitionGroupID, Topics: map[string]*topicMeta{}}
}

// clone copies the maps and slices that apply changes; topicMeta values
// are shared (a change replaces the pointer).
func (m *clusterMetadata) clone() *clusterMetadata {
	c := *m
	c.Brokers = slices.Clone(m.Brokers)
	c.Topics = make(map[string]*topicMeta, len(m.Topics))
	for name, t := range m.Topics {
		c.Topics[name] = t
	}
	return &c
}

// partitionByGroup finds a partition by group id.
func (m *clusterMetadata) partitionByGroup(groupID uint64) (topic string, partition uint32, p partitionMeta, ok bool) {
	for name, t := range m.Topics {
		for i, pm := range t.Partitions {
			if pm.GroupID == groupID {
				return name, uint32(i), pm, true
			}
		}
	}
	return "", 0, partitionMeta{}, false
}

func (m *clusterMetadata) sortedTopicNames() []string {
	names := make([]string, 0, len(m.Topics))
	for name := range m.Topics {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}

// Controller commands travel as EntryControl entries, JSON encoded.
const (
	opRegisterBroker = "register_broker"
	opCreateTopic    = "create_topic"
	opDeleteTopic    = "delete_topic"
	// Membership (membership.go).
	opReassignPartition = "reassign_partition"
	opReplaceBroker     = "replace_broker"
	opReassignDone      = "reassign_done"
)

type controllerCommand struct {
	Op             string    `json:"op"`
	Broker         uint64    `json:"broker,omitempty"`
	Topic          string    `json:"topic,omitempty"`
	Partitions     int       `json:"partitions,omitempty"`
	Replicas       int       `json:"replicas,omitempty"`
	Time           time.Time `json:"time"`
	RetentionMs    int64     `json:"retention_ms,omitempty"`
	RetentionBytes int64     `json:"retention_bytes,omitempty"`
	// CaseUnique makes a create refuse a name that differs from an
	// existing topic's only in case: the two would share a data directory
	// on a case-insensitive file system (macOS's and Windows' defaults).
	// Creates logged before the rule lack it and apply as they did.
	CaseUnique bool `json:"case_unique,omitempty"`
	// Group carries the consumer group commands (groups.go).
	Group *groupCommand `json:"group,omitempty"`
	// Partition, ReplicaSet, GroupID and NewBroker carry the membership
	// commands (membership.go).
	Partition  uint32   `json:"partition,omitempty"`
	ReplicaSet []uint64 `json:"replica_set,omitempty"`
	GroupID    uint64   `json:"group_id,omitempty"`
	NewBroker  uint64   `json:"new_broker,omitempty"`
	Cancel     bool     `json:"cancel,omitempty"`
	// TargetIndex, in a reassign_done, is the reported move's
	// partitionMeta.TargetIndex; 0 (a leader that predates it) matches
	// whatever move has the reported voters as its target.
	TargetIndex uint64 `json:"target_index,omitempty"`
}

func decodeControllerCommand(data []byte) (controllerCommand, error) {
	var cmd controllerCommand
	if err := json.Unmarshal(data, &cmd); err != nil {
		return cmd, fmt.Errorf("broker: decode controller command: %w", err)
	}
	return cmd, nil
}

// applyCommand returns the metadata after cmd at log index, or the
// client-visible error that rejects it (the metadata is then unchanged).
// It is deterministic: every controller replica computes the same result.
func applyCommand(m *clusterMetadata, index uint64, cmd controllerCommand) (*clusterMetadata, *protocol.Error) {
	switch cmd.Op {
	case opRegisterBroker:
		if cmd.Broker == 0 {
			return m, protocol.Errorf(protocol.CodeInvalidArgument, "broker id 0")
		}
		if slices.Contains(m.Brokers, cmd.Broker) {
			return m, nil
		}
		next := m.clone()
		next.Brokers = append(next.Brokers, cmd.Broker)
		slices.Sort(next.Brokers)
		next.Version = index
		return next, nil
	case opCreateTopic:
		if err := protocol.ValidateTopicName(cmd.Topic); err != nil {
			return m, protocol.Errorf(protocol.CodeInvalidArgument, "%v", err)
		}
		if _, exists := m.Topics[cmd.Topic]; exists {
			return m, protocol.Errorf(protocol.CodeTopicExists, "topic %q already exists", cmd.Topic)
		}
		if cmd.CaseUnique {
			for name := range m.Topics {
				if strings.EqualFold(name, cmd.Topic) {
					return m, protocol.Errorf(protocol.CodeTopicExists,
						"topic %q differs from the existing topic %q only in case; such topics would share a data directory on a case-insensitive file system", cmd.Topic, name)
				}
			}
		}
		if cmd.Partitions <= 0 {
			return m, protocol.Errorf(protocol.CodeInvalidArgument, "partition count %d must be positive", cmd.Partitions)
		}
		if cmd.Replicas <= 0 || cmd.Replicas > len(m.Brokers) {
			return m, protocol.Errorf(protocol.CodeInvalidArgument, "replication factor %d: the cluster has %d brokers", cmd.Replicas, len(m.Brokers))
		}
		next := m.clone()
		next.Topics[cmd.Topic] = assignTopic(next, cmd)
		next.Version = index
		return next, nil
	case opDeleteTopic:
		if _, exists := m.Topics[cmd.Topic]; !exists {
			return m, protocol.Errorf(protocol.CodeUnknownTopic, "topic %q does not exist", cmd.Topic)
		}
		next := m.clone()
		delete(next.Topics, cmd.Topic)
		next.Version = index
		return next, nil
	case opReassignPartition, opReplaceBroker, opReassignDone:
		return applyMembershipCommand(m, index, cmd)
	}
	return m, protocol.Errorf(protocol.CodeInvalidArgument, "unknown controller operation %q", cmd.Op)
}

// assignTopic places a new topic's replicas, advancing m.NextGroupID. Each
// partition's preferred leader is the broker leading the fewest partitions so
// far, and its followers the brokers holding the fewest replicas, so leaders
// and replicas spread evenly across brokers and across topics. Ties go to the
// lower broker id.
func assignTopic(m *clusterMetadata, cmd controllerCommand) *topicMeta {
	leaders := map[uint64]int{}
	replicas := map[uint64]int{}
	for _, t := range m.Topics {
		for _, p := range t.Partitions {
			if len(p.Replicas) > 0 {
				leaders[p.Replicas[0]]++
			}
			for _, id := range p.Replicas {
				replicas[id]++
			}
		}
	}
	least := func(count map[uint64]int, exclude []uint64) uint64 {
		best, bestCount := uint64(0), 0
		for _, id := range m.Brokers {
			if slices.Contains(exclude, id) {
				continue
			}
			if best == 0 || count[id] < bestCount || count[id] == bestCount && replicas[id] < replicas[best] {
				best, bestCount = id, count[id]
			}
		}
		return best
	}
	topic := &topicMeta{Name: cmd.Topic, Replicas: cmd.Replicas, CreatedAt: cmd.Time.UTC(), RetentionMs: cmd.RetentionMs, RetentionBytes: cmd.RetentionBytes}
	for range cmd.Partitions {
		leader := least(leaders, nil)
		set := []uint64{leader}
		leaders[leader]++
		replicas[leader]++
		for len(set) < cmd.Replicas {
			follower := least(replicas, set)
			set = append(set, follower)
			replicas[follower]++
		}
		topic.Partitions = append(topic.Partitions, partitionMeta{GroupID: m.NextGroupID, Replicas: set})
		m.NextGroupID++
	}
	return topic
}
