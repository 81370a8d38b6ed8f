package clients

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"time"

	"github.com/raftmq/raftmq/protocol"
)

// TopicPartition names one partition of a topic.
type TopicPartition struct {
	Topic     string
	Partition uint32
}

func (tp TopicPartition) String() string { return fmt.Sprintf("%s/%d", tp.Topic, tp.Partition) }

// CommittedOffset is a group's consumer state on one partition, with the
// partition's ends and the group's lag (records and seconds).
type CommittedOffset = protocol.CommittedOffset

// GroupSummary is one consumer group in ListGroups.
type GroupSummary = protocol.GroupSummary

// leaderBatch sends one request per partition leader for the items (many
// partitions per request) and retries the items whose result is a
// retriable error, after a metadata refresh and backoff, until ctx ends;
// an item answered unknown_topic for WithUnknownTopicWait in a row keeps
// that error (its topic was deleted).
// send returns one error per index (nil = done) or an error for the whole
// request (applies to all its items).
func (c *Client) leaderBatch(ctx context.Context, items []TopicPartition,
	send func(ctx context.Context, leader uint64, indexes []int) ([]error, error)) []error {
	results := make([]error, len(items))
	unknown := make([]unknownTopicTimer, len(items))
	pending := make([]int, len(items))
	for i := range pending {
		pending[i] = i
	}
	for attempt := 1; len(pending) > 0; attempt++ {
		byLeader := map[uint64][]int{}
		for _, i := range pending {
			leader, err := c.metadata.leader(ctx, items[i].Topic, items[i].Partition)
			switch {
			case err != nil:
				results[i] = err
			case leader == 0:
				results[i] = &protocol.Error{Code: protocol.CodeNotReady, Message: "partition has no leader yet"}
			default:
				byLeader[leader] = append(byLeader[leader], i)
				continue
			}
		}
		for leader, indexes := range byLeader {
			errs, err := send(ctx, leader, indexes)
			for j, i := range indexes {
				switch {
				case err != nil:
					results[i] = err
				case j < len(errs):
					results[i] = errs[j]
				default:
					results[i] = errors.New("clients: reply lacks a result")
				}
			}
		}
		var retry []int
		for _, i := range pending {
			if results[i] == nil || !retriable(results[i]) || unknown[i].expired(results[i], &c.config) {
				continue
			}
			var apiError *protocol.Error
			if errors.As(results[i], &apiError) && apiError.Code == protocol.CodeNotLeader && apiError.Leader != 0 {
				c.metadata.setLeader(items[i].Topic, items[i].Partition, apiError.Leader)
			} else {
				c.metadata.forget(items[i].Topic)
			}
			retry = append(retry, i)
		}
		pending = retry
		if len(pending) == 0 {
			break
		}
		pause := time.NewTimer(c.config.backoff(attempt))
		select {
		case <-ctx.Done():
			pause.Stop()
			for _, i := range pending {
				results[i] = fmt.Errorf("%w (last error: %v)", ctx.Err(), results[i])
			}
			return results
		case <-pause.C:
		}
	}
	return results
}

// leaderJSON sends a JSON request to a broker subject and decodes the reply.
func (c *Client) leaderJSON(ctx context.Context, subject string, request, reply any) error {
	body, err := json.Marshal(request)
	if err != nil {
		return err
	}
	data, err := c.request(ctx, subject, body)
	if err != nil {
		return err
	}
	return json.Unmarshal(data, reply)
}

// CommitOffsets commits a group's offsets (each the next offset to consume)
// for many partitions, one request per partition leader. member and each
// offset's Epoch identify the committer; a commit whose epoch is older than
// the partition's current one fails with protocol.CodeStaleEpoch. Retriable
// failures are retried until ctx ends. The error joins every partition's
// failure (a *PartitionError each).
func (c *Client) CommitOffsets(ctx context.Context, group, member string, offsets []protocol.PartitionOffset) error {
	items := make([]TopicPartition, len(offsets))
	for i, o := range offsets {
		items[i] = TopicPartition{o.Topic, o.Partition}
	}
	results := c.leaderBatch(ctx, items, func(ctx context.Context, leader uint64, indexes []int) ([]error, error) {
		req := protocol.OffsetCommitRequest{Version: protocol.APIVersion, Group: group, Member: member}
		for _, i := range indexes {
			req.Offsets = append(req.Offsets, offsets[i])
		}
		var reply protocol.OffsetCommitReply
		if err := c.leaderJSON(ctx, protocol.SubjectBrokerCommit(c.config.prefix, leader), req, &reply); err != nil {
			return nil, err
		}
		if reply.Error != nil {
			return nil, reply.Error
		}
		errs := make([]error, len(reply.Results))
		for j, r := range reply.Results {
			if r.Error != nil {
				errs[j] = r.Error
			}
		}
		return errs, nil
	})
	return joinPartitionErrors(items, results)
}

// partitionErrors takes apart what joinPartitionErrors made: each
// partition's error.
func partitionErrors(err error) map[TopicPartition]error {
	out := map[TopicPartition]error{}
	var all []error
	if joined, ok := err.(interface{ Unwrap() []error }); ok {
		all = joined.Unwrap()
	} else if err != nil {
		all = []error{err}
	}
	for _, e := range all {
		var partitionErr *PartitionError
		if errors.As(e, &partitionErr) {
			out[TopicPartition{partitionErr.Topic, partitionErr.Partition}] = partitionErr.Err
		}
	}
	return out
}

func joinPartitionErrors(items []TopicPartition, results []error) error {
	var errs []error
	for i, err := range results {
		if err != nil {
			errs = append(errs, &PartitionError{Topic: items[i].Topic, Partition: items[i].Partition, Err: err})
		}
	}
	return errors.Join(errs...)
}

// FetchCommitted reads a group's committed offsets of partitions (with
// lag), from each partition's leader once it is current, so an offset
// acknowledged by CommitOffsets is never missed, even across a failover.
func (c *Client) FetchCommitted(ctx context.Context, group string, partitions []TopicPartition) ([]CommittedOffset, error) {
	gps := make([]protocol.GroupPartition, len(partitions))
	for i, tp := range partitions {
		gps[i] = protocol.GroupPartition{Topic: tp.Topic, Partition: tp.Partition}
	}
	return c.fetchCommitted(ctx, group, "", false, gps)
}

// fetchCommitted reads (and with claim, first claims with each partition's
// epoch) committed offsets.
func (c *Client) fetchCommitted(ctx context.Context, group, member string, claim bool, partitions []protocol.GroupPartition) ([]CommittedOffset, error) {
	items := make([]TopicPartition, len(partitions))
	for i, gp := range partitions {
		items[i] = TopicPartition{gp.Topic, gp.Partition}
	}
	out := make([]CommittedOffset, len(partitions))
	results := c.leaderBatch(ctx, items, func(ctx context.Context, leader uint64, indexes []int) ([]error, error) {
		req := protocol.OffsetFetchRequest{Version: protocol.APIVersion, Group: group, Member: member, Claim: claim}
		for _, i := range indexes {
			req.Partitions = append(req.Partitions, partitions[i])
		}
		var reply protocol.OffsetFetchReply
		if err := c.leaderJSON(ctx, protocol.SubjectBrokerCommitted(c.config.prefix, leader), req, &reply); err != nil {
			return nil, err
		}
		if reply.Error != nil {
			return nil, reply.Error
		}
		errs := make([]error, len(reply.Partitions))
		for j, p := range reply.Partitions {
			if j < len(indexes) {
				out[indexes[j]] = p
			}
			if p.Error != nil {
				errs[j] = p.Error
			}
		}
		return errs, nil
	})
	return out, joinPartitionErrors(items, results)
}

// groupAdmin sends a group admin request (served by the coordinator, any
// broker forwards it), retrying retriable errors until ctx ends, an
// unknown topic for WithUnknownTopicWait. errorOf returns the reply's
// error field.
func (c *Client) groupAdmin(ctx context.Context, op string, request, reply any, errorOf func() *protocol.Error) error {
	var unknown unknownTopicTimer
	for attempt := 1; ; attempt++ {
		target := reflect.ValueOf(reply).Elem()
		target.Set(reflect.Zero(target.Type())) // a field absent from this reply must not survive from the last
		err := c.adminRequest(ctx, op, request, reply)
		if err == nil {
			if e := errorOf(); e != nil {
				err = e
			}
		}
		if err == nil || !retriable(err) || unknown.expired(err, &c.config) {
			return err
		}
		pause := time.NewTimer(c.config.backoff(attempt))
		select {
		case <-ctx.Done():
			pause.Stop()
			return fmt.Errorf("%w (last error: %v)", ctx.Err(), err)
		case <-pause.C:
		}
	}
}

// ListGroups lists the consumer groups the coordinator knows.
func (c *Client) ListGroups(ctx context.Context) ([]GroupSummary, error) {
	var reply protocol.ListGroupsReply
	err := c.groupAdmin(ctx, protocol.AdminGroupList, protocol.GroupRequest{Version: protocol.APIVersion}, &reply, func() *protocol.Error { return reply.Error })
	if err != nil {
		return nil, err
	}
	return reply.Groups, nil
}

// GroupDescription is a group's members and, per partition of its topics,
// owner, committed offset, end offset and lag.
type GroupDescription struct {
	Group      string                 `json:"group"`
	Topics     []string               `json:"topics"`
	Members    []protocol.GroupMember `json:"members"`
	Partitions []GroupPartitionState  `json:"partitions"`
}

// GroupPartitionState is one partition in a GroupDescription.
type GroupPartitionState struct {
	CommittedOffset
	Owner  string `json:"owner,omitempty"`
	Target string `json:"moving_to,omitempty"`
}

// DescribeGroup returns a group's members, assignment, committed offsets
// and lag. A group unknown to the coordinator gives an error matching
// protocol.CodeUnknownGroup; topics lists more topics whose offsets to
// show (offsets outlive membership). A topic of the group's that was
// deleted is listed in Topics with no partitions; one of topics that does
// not exist gives an error matching protocol.CodeUnknownTopic.
func (c *Client) DescribeGroup(ctx context.Context, group string, topics ...string) (GroupDescription, error) {
	var reply protocol.DescribeGroupReply
	err := c.groupAdmin(ctx, protocol.AdminGroupDescribe, protocol.GroupRequest{Version: protocol.APIVersion, Group: group}, &reply,
		func() *protocol.Error { return reply.Error })
	if err != nil && !(errors.Is(err, protocol.CodeUnknownGroup) && len(topics) > 0) {
		return GroupDescription{}, err
	}
	desc := GroupDescription{Group: group, Topics: slices.Clone(reply.Topics), Members: reply.Members, Partitions: []GroupPartitionState{}}
	if desc.Members == nil {
		desc.Members = []protocol.GroupMember{}
	}
	owners := map[TopicPartition]protocol.PartitionOwner{}
	for _, p := range reply.Partitions {
		owners[TopicPartition{p.Topic, p.Partition}] = p
	}
	for _, t := range topics {
		if !slices.Contains(desc.Topics, t) {
			desc.Topics = append(desc.Topics, t)
		}
	}
	var partitions []TopicPartition
	for _, topic := range desc.Topics {
		info, err := c.metadata.refresh(ctx, topic)
		if errors.Is(err, protocol.CodeUnknownTopic) && slices.Contains(reply.Topics, topic) {
			continue // the group's, deleted since: listed, with no partitions
		}
		if err != nil {
			return GroupDescription{}, err
		}
		for _, p := range info.Partitions {
			partitions = append(partitions, TopicPartition{topic, p.Partition})
		}
	}
	committed, err := c.FetchCommitted(ctx, group, partitions)
	failed := partitionErrors(err)
	if err != nil && len(failed) == 0 {
		return GroupDescription{}, err
	}
	var errs []error
	for i, tp := range partitions {
		if e, ok := failed[tp]; ok {
			if !errors.Is(e, protocol.CodeUnknownTopic) || !slices.Contains(reply.Topics, tp.Topic) {
				errs = append(errs, &PartitionError{Topic: tp.Topic, Partition: tp.Partition, Err: e})
			}
			continue // the group's topic, deleted since the metadata read above
		}
		desc.Partitions = append(desc.Partitions, GroupPartitionState{CommittedOffset: committed[i], Owner: owners[tp].Owner, Target: owners[tp].Target})
	}
	if len(errs) > 0 {
		return GroupDescription{}, errors.Join(errs...)
	}
	return desc, nil
}

// ResetGroupOffsets sets a group's offsets of every partition of topic to
// position (Earliest, Latest, AtOffset or AtTime). It is refused with
// protocol.CodeGroupNotEmpty while the group has members. A member that
// joins while the reset is under way may have read a partition's offset
// before the reset reached it: that partition keeps its offset and fails
// with protocol.CodeGroupNotEmpty (a *PartitionError in the returned
// error, beside the results of every partition). Once the reset applied
// to a partition, members whose sessions ended before it cannot commit
// over it (protocol.CodeStaleEpoch).
func (c *Client) ResetGroupOffsets(ctx context.Context, group, topic string, to Position) ([]protocol.PartitionResult, error) {
	req := protocol.ResetOffsetsRequest{Version: protocol.APIVersion, Group: group, Topic: topic}
	switch to.kind {
	case positionEarliest:
		req.To = protocol.ResetEarliest
	case positionLatest:
		req.To = protocol.ResetLatest
	case positionOffset:
		req.To, req.Value = protocol.ResetOffset, int64(to.offset)
	case positionTime:
		req.To, req.Value = protocol.ResetTimestamp, to.time.UnixMilli()
	}
	var reply protocol.ResetOffsetsReply
	err := c.groupAdmin(ctx, protocol.AdminGroupReset, req, &reply, func() *protocol.Error { return reply.Error })
	if err != nil {
		return nil, err
	}
	var errs []error
	for _, r := range reply.Results {
		if r.Error != nil {
			errs = append(errs, &PartitionError{Topic: r.Topic, Partition: r.Partition, Err: r.Error})
		}
	}
	return reply.Results, errors.Join(errs...)
}

// DeleteGroup deletes a group without members and its offsets everywhere.
func (c *Client) DeleteGroup(ctx context.Context, group string) error {
	var reply protocol.DeleteGroupReply
	return c.groupAdmin(ctx, protocol.AdminGroupDelete, protocol.GroupRequest{Version: protocol.APIVersion, Group: group}, &reply,
		func() *protocol.Error { return reply.Error })
}
