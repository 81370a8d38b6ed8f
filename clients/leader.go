package clients

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/raftmq/raftmq/protocol"
)

// callLeader sends request to the leader of a partition and passes the
// reply to handle, which returns the reply's error (a *protocol.Error) or
// nil. Retriable failures are retried with backoff and a metadata refresh
// until ctx ends; wait is added to the per-attempt timeout (a long poll).
func (c *Client) callLeader(ctx context.Context, tp topicPartition, subject func(prefix string, id uint64) string,
	request []byte, wait time.Duration, handle func(reply []byte) error) error {
	refresh := false
	for attempt := 1; ; attempt++ {
		err := c.callLeaderOnce(ctx, tp, subject, request, wait, refresh, handle)
		if err == nil {
			return nil
		}
		if !retriable(err) {
			return err
		}
		var waitErr error
		if refresh, waitErr = c.retryLeader(ctx, tp, attempt, err); waitErr != nil {
			return fmt.Errorf("%w (last error: %v)", waitErr, err)
		}
	}
}

// unknownTopicTimer times a run of unknown_topic answers to one kind of
// request (WithUnknownTopicWait).
type unknownTopicTimer struct{ since, last time.Time }

// expired reports whether err ends the retries: an unknown_topic answer
// after unknown_topic answers for at least the config's unknown-topic
// wait. Any other error starts the run again, and so does a pause: an
// answer more than the wait plus the longest retry backoff after the run's
// previous one is not a retry of the same run (a long-lived producer whose
// topic was deleted, then created again under the name, must wait again
// for the new topic to spread instead of failing at its first answer).
func (u *unknownTopicTimer) expired(err error, c *clientConfig) bool {
	if !errors.Is(err, protocol.CodeUnknownTopic) {
		*u = unknownTopicTimer{}
		return false
	}
	now := time.Now()
	if u.since.IsZero() || now.Sub(u.last) > c.unknownTopicWait+c.retryBackoffMax {
		u.since = now
	}
	u.last = now
	return now.Sub(u.since) >= c.unknownTopicWait
}

// retryLeader prepares the attempt after a retriable error of a request to
// tp's leader: it follows a not-leader answer's hint, or else asks for the
// partition's metadata to be refreshed before the next attempt (refresh),
// and waits out the backoff. It returns ctx's error if ctx ends first.
func (c *Client) retryLeader(ctx context.Context, tp topicPartition, attempt int, err error) (refresh bool, waitErr error) {
	refresh = true
	var apiError *protocol.Error
	if errors.As(err, &apiError) && apiError.Code == protocol.CodeNotLeader && apiError.Leader != 0 {
		c.metadata.setLeader(tp.topic, tp.partition, apiError.Leader)
		refresh = false
	}
	c.logger.Debug("raftmq: retrying", "topic", tp.topic, "partition", tp.partition, "attempt", attempt, "error", err)
	pause := time.NewTimer(c.config.backoff(attempt))
	defer pause.Stop()
	select {
	case <-ctx.Done():
		return refresh, ctx.Err()
	case <-pause.C:
		return refresh, nil
	}
}

// leaderOf returns tp's leader from the metadata, refreshed first if
// refresh is set; a partition with no leader yet is a retriable error.
func (c *Client) leaderOf(ctx context.Context, tp topicPartition, refresh bool) (uint64, error) {
	if refresh {
		if _, err := c.metadata.refresh(ctx, tp.topic); err != nil {
			return 0, err
		}
	}
	leader, err := c.metadata.leader(ctx, tp.topic, tp.partition)
	if err != nil {
		return 0, err
	}
	if leader == 0 {
		return 0, &protocol.Error{Code: protocol.CodeNotReady, Message: "partition has no leader yet"}
	}
	if c.closed.Load() {
		return 0, ErrClosed
	}
	return leader, nil
}

func (c *Client) callLeaderOnce(ctx context.Context, tp topicPartition, subject func(prefix string, id uint64) string,
	request []byte, wait time.Duration, refresh bool, handle func(reply []byte) error) error {
	leader, err := c.leaderOf(ctx, tp, refresh)
	if err != nil {
		return err
	}
	attemptCtx, cancel := context.WithTimeout(ctx, c.config.requestTimeout+wait)
	defer cancel()
	msg, err := c.conn.RequestWithContext(attemptCtx, subject(c.config.prefix, leader), request)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return c.requestError(subject(c.config.prefix, leader), err)
	}
	return handle(msg.Data)
}

// Offsets is the answer of ListOffsets.
type Offsets struct {
	// Offset is the offset the position resolves to.
	Offset uint64
	// LogStart is the first offset the partition still holds.
	LogStart uint64
	// HighWatermark is the offset after the last committed record.
	HighWatermark uint64
}

// ListOffsets resolves a position of a partition to an offset: Earliest is
// the log start, Latest the high watermark, AtTime the first record at or
// after the time, AtOffset the offset itself (checked against nothing).
// Retriable errors are retried until ctx ends.
func (c *Client) ListOffsets(ctx context.Context, topic string, partition uint32, at Position) (Offsets, error) {
	request := protocol.ListOffsetsRequest{Topic: topic, Partition: partition}
	switch at.kind {
	case positionEarliest:
		request.Timestamp = protocol.OffsetEarliest
	case positionLatest, positionOffset:
		request.Timestamp = protocol.OffsetLatest
	case positionTime:
		request.Timestamp = max(at.time.UnixMilli(), 0)
	}
	var offsets Offsets
	err := c.callLeader(ctx, topicPartition{topic, partition}, protocol.SubjectBrokerOffsets,
		protocol.AppendListOffsetsRequest(nil, &request), 0, func(data []byte) error {
			reply, err := protocol.DecodeListOffsetsReply(data)
			if err != nil {
				return err
			}
			if reply.Err != nil {
				return reply.Err
			}
			offsets = Offsets{Offset: reply.Offset, LogStart: reply.LogStartOffset, HighWatermark: reply.HighWatermark}
			return nil
		})
	if err != nil {
		return Offsets{}, fmt.Errorf("clients: list offsets of %s/%d: %w", topic, partition, err)
	}
	if at.kind == positionOffset {
		offsets.Offset = at.offset
	}
	return offsets, nil
}
