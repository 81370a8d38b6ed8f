package clients

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/raftmq/raftmq/protocol"
)

// TopicInfo describes a topic: its partitions, their leaders and replicas.
type TopicInfo = protocol.TopicInfo

// PartitionInfo describes one partition of a topic.
type PartitionInfo = protocol.PartitionInfo

// BrokerInfo names a broker and whether the controller sees it alive.
type BrokerInfo = protocol.BrokerInfo

// TopicOption configures CreateTopic.
type TopicOption func(*protocol.CreateTopicRequest) error

// WithPartitions sets the number of partitions of a new topic. Default 1
// (the broker's default).
func WithPartitions(n int) TopicOption {
	return func(r *protocol.CreateTopicRequest) error {
		if n <= 0 {
			return fmt.Errorf("clients: %d partitions: need at least 1", n)
		}
		r.Partitions = n
		return nil
	}
}

// WithReplicas sets how many brokers hold a copy of each partition of a new
// topic. Default min(3, number of brokers) (chosen by the broker).
func WithReplicas(n int) TopicOption {
	return func(r *protocol.CreateTopicRequest) error {
		if n <= 0 {
			return fmt.Errorf("clients: %d replicas: need at least 1", n)
		}
		r.Replicas = n
		return nil
	}
}

// CreateTopic creates a topic and returns its description. A topic that
// exists already gives an error matching protocol.CodeTopicExists
// (errors.Is(err, protocol.CodeTopicExists)).
func (c *Client) CreateTopic(ctx context.Context, name string, opts ...TopicOption) (TopicInfo, error) {
	if err := protocol.ValidateTopicName(name); err != nil {
		return TopicInfo{}, err
	}
	request := protocol.CreateTopicRequest{Version: protocol.APIVersion, Name: name}
	for _, opt := range opts {
		if err := opt(&request); err != nil {
			return TopicInfo{}, err
		}
	}
	var reply protocol.TopicReply
	if err := c.adminRequest(ctx, protocol.AdminCreateTopic, request, &reply); err != nil {
		return TopicInfo{}, err
	}
	if reply.Error != nil {
		return TopicInfo{}, reply.Error
	}
	c.metadata.forget(name)
	if reply.Topic == nil {
		return TopicInfo{Name: name}, nil
	}
	return *reply.Topic, nil
}

// ListTopics returns every topic of the cluster.
func (c *Client) ListTopics(ctx context.Context) ([]TopicInfo, error) {
	var reply protocol.ListTopicsReply
	request := protocol.MetadataRequest{Version: protocol.APIVersion}
	if err := c.adminRequest(ctx, protocol.AdminListTopics, request, &reply); err != nil {
		return nil, err
	}
	if reply.Error != nil {
		return nil, reply.Error
	}
	return reply.Topics, nil
}

// DescribeTopic returns one topic's partitions with their leaders, replicas,
// commit indexes and high watermarks. An unknown topic gives an error
// matching protocol.CodeUnknownTopic.
func (c *Client) DescribeTopic(ctx context.Context, name string) (TopicInfo, error) {
	var reply protocol.TopicReply
	request := protocol.TopicRequest{Version: protocol.APIVersion, Name: name}
	if err := c.adminRequest(ctx, protocol.AdminDescribeTopic, request, &reply); err != nil {
		return TopicInfo{}, err
	}
	if reply.Error != nil {
		return TopicInfo{}, reply.Error
	}
	if reply.Topic == nil {
		return TopicInfo{}, &protocol.Error{Code: protocol.CodeUnknownTopic, Message: fmt.Sprintf("topic %q", name)}
	}
	return *reply.Topic, nil
}

// DeleteTopic deletes a topic and all its records.
func (c *Client) DeleteTopic(ctx context.Context, name string) error {
	var reply protocol.DeleteTopicReply
	request := protocol.TopicRequest{Version: protocol.APIVersion, Name: name}
	if err := c.adminRequest(ctx, protocol.AdminDeleteTopic, request, &reply); err != nil {
		return err
	}
	c.metadata.forget(name)
	if reply.Error != nil {
		return reply.Error
	}
	return nil
}

// ClusterStatus is the cluster as the controller sees it. Its JSON form is
// the one `raftmq cluster status --json` prints.
type ClusterStatus struct {
	// ControllerLeader is the broker leading the controller group, 0 when
	// none is known.
	ControllerLeader uint64 `json:"controller_leader"`
	// Brokers lists every broker of the cluster and whether it is alive.
	Brokers []BrokerInfo `json:"brokers"`
	// Partitions lists every partition of every topic.
	Partitions []PartitionStatus `json:"partitions"`
	// Controller is the controller group's membership (voters and
	// learners), nil when the answering broker does not know it.
	Controller *GroupMembership `json:"controller,omitempty"`
}

// PartitionStatus is one partition in a ClusterStatus.
type PartitionStatus struct {
	Topic       string   `json:"topic"`
	Partition   uint32   `json:"partition"`
	Leader      uint64   `json:"leader"` // 0 = no leader known
	Replicas    []uint64 `json:"replicas"`
	CommitIndex uint64   `json:"commit_index"`
	// Voters, OutgoingVoters and Learners are the partition's Raft
	// configuration as its leader reports it (empty when unknown;
	// OutgoingVoters only during a joint-consensus change).
	Voters         []uint64 `json:"voters,omitempty"`
	OutgoingVoters []uint64 `json:"outgoing_voters,omitempty"`
	Learners       []uint64 `json:"learners,omitempty"`
	// Target is the replica set a reassignment in progress moves the
	// partition to; empty when none is.
	Target []uint64 `json:"target,omitempty"`
	// Failed lists the brokers whose replica an error stopped (a failed
	// log write or fsync) and which restart it after a backoff; empty
	// when none is.
	Failed []uint64 `json:"failed,omitempty"`
}

// ClusterStatus reports the brokers, the controller leader and every
// partition's leader, replicas and commit index.
func (c *Client) ClusterStatus(ctx context.Context) (ClusterStatus, error) {
	var reply protocol.MetadataReply
	request := protocol.MetadataRequest{Version: protocol.APIVersion}
	if err := c.adminRequest(ctx, protocol.AdminClusterStatus, request, &reply); err != nil {
		return ClusterStatus{}, err
	}
	if reply.Error != nil {
		return ClusterStatus{}, reply.Error
	}
	status := ClusterStatus{
		ControllerLeader: reply.ControllerLeader,
		Brokers:          reply.Brokers,
		Partitions:       []PartitionStatus{},
		Controller:       reply.Controller,
	}
	if status.Brokers == nil {
		status.Brokers = []BrokerInfo{}
	}
	for _, topic := range reply.Topics {
		for _, p := range topic.Partitions {
			replicas := p.Replicas
			if replicas == nil {
				replicas = []uint64{}
			}
			status.Partitions = append(status.Partitions, PartitionStatus{
				Topic: topic.Name, Partition: p.Partition, Leader: p.Leader,
				Replicas: replicas, CommitIndex: p.CommitIndex,
				Voters: p.Voters, OutgoingVoters: p.OutgoingVoters, Learners: p.Learners, Target: p.Target, Failed: p.Failed,
			})
		}
	}
	return status, nil
}

// Reassignment is one partition move the controller recorded: its replicas
// go From one broker list To another.
type Reassignment = protocol.Reassignment

// GroupMembership is a Raft group's voters and learners.
type GroupMembership = protocol.GroupMembership

// ReassignPartition moves one partition's replicas to replicas (the first
// is the preferred leader), for example from brokers 1,2,3 to 1,2,4. It
// returns once the controller recorded the move; the partition's leader
// then adds the new brokers as learners, promotes them once they caught up,
// and removes the others, while producers keep publishing. Follow it with
// WaitReassignments. It returns no move when the replicas already are the
// requested ones. Errors (protocol.CodeInvalidArgument unless said): an
// unknown or down broker, a repeated id, a reassignment of the partition
// already in progress, protocol.CodeUnknownTopic, protocol.CodeBadPartition.
func (c *Client) ReassignPartition(ctx context.Context, topic string, partition uint32, replicas []uint64) ([]Reassignment, error) {
	if len(replicas) == 0 {
		return nil, errors.New("clients: reassign: no replicas given")
	}
	return c.reassignPartition(ctx, protocol.ReassignPartitionRequest{Version: protocol.APIVersion, Topic: topic, Partition: partition, Replicas: replicas})
}

// CancelReassignment turns a partition's reassignment in progress back
// toward its current replicas, for example when a target broker died during
// the move: brokers only the cancelled target named are removed from the
// partition's group and delete their copy. It returns the move back
// (From the cancelled target, To the replicas); follow it with
// WaitReassignments. A partition with no move in progress, or whose move in
// progress is already such a move back, or a broker the move back would
// return the replica to that is down (start it, or let the move finish),
// gives an error matching protocol.CodeInvalidArgument.
func (c *Client) CancelReassignment(ctx context.Context, topic string, partition uint32) ([]Reassignment, error) {
	return c.reassignPartition(ctx, protocol.ReassignPartitionRequest{Version: protocol.APIVersion, Topic: topic, Partition: partition, Cancel: true})
}

// reassignPartition sends a partition reassignment request (a move or its
// cancellation) and forgets the topic's cached metadata once it is recorded.
func (c *Client) reassignPartition(ctx context.Context, request protocol.ReassignPartitionRequest) ([]Reassignment, error) {
	var reply protocol.ReassignReply
	if err := c.adminRequest(ctx, protocol.AdminReassignPartition, request, &reply); err != nil {
		return nil, err
	}
	if reply.Error != nil {
		return nil, reply.Error
	}
	c.metadata.forget(request.Topic)
	return reply.Reassignments, nil
}

// ReplaceBroker moves every replica that broker old holds to broker
// replacement (which takes old's place in each replica list), for example
// to replace a dead machine; old may be down. It returns the moves once the
// controller recorded them; follow them with WaitReassignments.
func (c *Client) ReplaceBroker(ctx context.Context, old, replacement uint64) ([]Reassignment, error) {
	request := protocol.ReplaceBrokerRequest{Version: protocol.APIVersion, Old: old, New: replacement}
	var reply protocol.ReassignReply
	if err := c.adminRequest(ctx, protocol.AdminReplaceBroker, request, &reply); err != nil {
		return nil, err
	}
	if reply.Error != nil {
		return nil, reply.Error
	}
	for _, move := range reply.Reassignments {
		c.metadata.forget(move.Topic)
	}
	return reply.Reassignments, nil
}

// ErrReassignmentCancelled is returned by WaitReassignments for moves that
// ended without reaching their To list: cancelled (CancelReassignment), or
// followed by another move before the wait saw them done.
var ErrReassignmentCancelled = errors.New("clients: reassignment cancelled")

// WaitReassignments waits until every move is done (the partition's
// replicas are its To list and no reassignment is in progress), polling
// the cluster status. A move that is no longer in progress without being
// done (cancelled, so the partition moves back or is back) stops counting;
// once the others are done, the error matches ErrReassignmentCancelled and
// names those moves. progress, when not nil, is called after each poll
// with the status of the moved partitions still moving to their To list.
func (c *Client) WaitReassignments(ctx context.Context, moves []Reassignment, progress func(pending []PartitionStatus)) error {
	for {
		status, err := c.ClusterStatus(ctx)
		if err != nil && !retriable(err) {
			return err
		}
		var pending []PartitionStatus
		if err == nil {
			var cancelled []string
			for _, move := range moves {
				i := slices.IndexFunc(status.Partitions, func(p PartitionStatus) bool {
					return p.Topic == move.Topic && p.Partition == move.Partition
				})
				if i < 0 {
					continue // the topic was deleted
				}
				switch p := status.Partitions[i]; {
				case len(p.Target) == 0 && slices.Equal(p.Replicas, move.To): // done
				case slices.Equal(p.Target, move.To) || status.ControllerLeader == 0:
					// Without a controller leader the status is one
					// broker's own view, which may not have the move
					// yet: not evidence that it was cancelled.
					pending = append(pending, p)
				default:
					now := fmt.Sprintf("replicas now %v, no move in progress", p.Replicas)
					if len(p.Target) > 0 {
						now = fmt.Sprintf("replicas %v, moving to %v", p.Replicas, p.Target)
					}
					cancelled = append(cancelled, fmt.Sprintf("%s/%d to %v (%s)", p.Topic, p.Partition, move.To, now))
				}
			}
			if progress != nil {
				progress(pending)
			}
			if len(pending) == 0 && len(cancelled) > 0 {
				return fmt.Errorf("%w: %s", ErrReassignmentCancelled, strings.Join(cancelled, "; "))
			}
			if len(pending) == 0 {
				return nil
			}
		}
		timer := time.NewTimer(200 * time.Millisecond)
		select {
		case <-ctx.Done():
			timer.Stop()
			return fmt.Errorf("clients: %d reassignments still in progress: %w", len(pending), ctx.Err())
		case <-timer.C:
		}
	}
}

// AddController makes broker id a voter of the controller group: it joins
// as a learner, catches up with the controller log and is promoted. The
// broker must be running and registered; it need not be in the brokers'
// Bootstrap list. It returns the controller group's membership after the
// change.
func (c *Client) AddController(ctx context.Context, id uint64) (GroupMembership, error) {
	return c.changeController(ctx, protocol.AdminAddController, id)
}

// RemoveController removes broker id from the controller group (a leader
// removing itself steps down). Removing the last voter is refused, as is
// removing one when the voters left would not have a majority running.
func (c *Client) RemoveController(ctx context.Context, id uint64) (GroupMembership, error) {
	return c.changeController(ctx, protocol.AdminRemoveController, id)
}

func (c *Client) changeController(ctx context.Context, op string, id uint64) (GroupMembership, error) {
	if id == 0 {
		return GroupMembership{}, errors.New("clients: broker id 0")
	}
	var reply protocol.ControllerMemberReply
	if err := c.adminRequest(ctx, op, protocol.ControllerMemberRequest{Version: protocol.APIVersion, Broker: id}, &reply); err != nil {
		return GroupMembership{}, err
	}
	if reply.Error != nil {
		return GroupMembership{}, reply.Error
	}
	if reply.Controller == nil {
		return GroupMembership{}, nil
	}
	return *reply.Controller, nil
}
