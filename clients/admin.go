package clients

import (
	"context"
	"fmt"

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
}

// PartitionStatus is one partition in a ClusterStatus.
type PartitionStatus struct {
	Topic       string   `json:"topic"`
	Partition   uint32   `json:"partition"`
	Leader      uint64   `json:"leader"` // 0 = no leader known
	Replicas    []uint64 `json:"replicas"`
	CommitIndex uint64   `json:"commit_index"`
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
			})
		}
	}
	return status, nil
}
