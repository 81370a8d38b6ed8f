package clients

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/raftmq/raftmq/protocol"
)

// fetchStream is one partition fetcher's conversation with the partition's
// leader. Each fetch request asks for a stream of up to fetchReplies
// replies (protocol.FetchRequest.MaxReplies): the broker sends the next
// reply as soon as it sent one, while data is committed beyond it, so its
// log reads, the NATS server and this client's connection work at the same
// time instead of taking turns. The replies come to a subscription of the
// fetcher's own; each request has its own reply subject, so replies to an
// abandoned request (timed out, superseded) are told apart and dropped.
//
// Used by one goroutine (the fetcher's), which selects on replies and
// expired.
type fetchStream struct {
	client  *Client
	tp      topicPartition
	request protocol.FetchRequest // template: the offset changes
	inbox   string                // reply subject prefix, ending in "."
	sub     *nats.Subscription
	replies chan *nats.Msg // the subscription's messages
	timer   *time.Timer    // fires when the next reply is late
	expired <-chan time.Time

	sequence uint64 // of the request in flight; its replies go to inbox+sequence
	open     bool   // a request is in flight and its stream has not ended
	subject  string // the request's subject (the leader's fetch subject)
	received int    // replies to the request in flight so far
	refresh  bool   // refresh the partition's metadata before the next request
	attempt  int    // failed requests in a row, for the backoff
	unknown  unknownTopicTimer
	encoded  []byte // reused request encoding
}

func newFetchStream(client *Client, tp topicPartition, config consumerConfig) (*fetchStream, error) {
	s := &fetchStream{
		client: client,
		tp:     tp,
		request: protocol.FetchRequest{Topic: tp.topic, Partition: tp.partition,
			MaxBytes: uint32(config.fetchMaxBytes), MaxWait: config.fetchMaxWait, MaxReplies: uint8(config.fetchReplies)},
		inbox: client.conn.NewInbox() + ".",
		// Room for a whole stream and replies to abandoned requests: the
		// fetcher reads replies as they come, whatever Poll does, so this
		// fills up only while it waits out a retry backoff. A reply that
		// finds it full is dropped by NATS; the request then times out
		// and is sent again.
		replies: make(chan *nats.Msg, 4*config.fetchReplies+16),
		timer:   time.NewTimer(time.Hour),
	}
	s.timer.Stop()
	sub, err := client.conn.ChanSubscribe(s.inbox+"*", s.replies)
	if err != nil {
		return nil, fmt.Errorf("clients: subscribe to fetch replies: %w", err)
	}
	_ = sub.SetPendingLimits(-1, -1)
	s.sub = sub
	return s, nil
}

func (s *fetchStream) close() {
	_ = s.sub.Unsubscribe()
	s.timer.Stop()
}

// send asks the partition's leader for the records from offset on. An
// error (no leader known, a publish failure) is what the request's reply
// would have been: the caller handles both alike.
func (s *fetchStream) send(ctx context.Context, offset uint64) error {
	s.sequence++ // replies to an earlier request are stale from here on
	s.received, s.open, s.expired = 0, false, nil
	s.timer.Stop()
	leader, err := s.client.leaderOf(ctx, s.tp, s.refresh)
	if err != nil {
		return err
	}
	s.refresh = false
	s.request.Offset = offset
	s.encoded = protocol.AppendFetchRequest(s.encoded[:0], &s.request)
	s.subject = protocol.SubjectBrokerFetch(s.client.config.prefix, leader)
	if err := s.client.conn.PublishRequest(s.subject, s.inbox+strconv.FormatUint(s.sequence, 10), s.encoded); err != nil {
		return s.client.requestError(s.subject, err)
	}
	s.open = true
	s.expireIn(s.client.config.requestTimeout + s.request.MaxWait)
	return nil
}

// expireIn arms expired to fire after d unless a reply comes first.
func (s *fetchStream) expireIn(d time.Duration) {
	s.timer.Reset(d) // Go 1.23 timers: no stale fire is received after Reset
	s.expired = s.timer.C
}

// abandon gives up the request in flight: its replies are dropped and the
// next send asks again.
func (s *fetchStream) abandon() {
	s.sequence++
	s.open, s.expired = false, nil
	s.timer.Stop()
}

// timedOut ends the request in flight: its next reply is late.
func (s *fetchStream) timedOut() error {
	s.open, s.expired = false, nil
	return s.client.requestError(s.subject, errRequestTimeout)
}

// receive takes a message of the subscription. ok is false for a reply to
// an abandoned request (drop it). Otherwise it returns the reply, whether
// the stream goes on after it, or the reply's error; a stream ends with an
// error.
func (s *fetchStream) receive(msg *nats.Msg) (reply protocol.FetchReply, more, ok bool, err error) {
	sequence, parseErr := strconv.ParseUint(strings.TrimPrefix(msg.Subject, s.inbox), 10, 64)
	if parseErr != nil || sequence != s.sequence || !s.open {
		return reply, false, false, nil
	}
	s.received++
	more = false
	switch {
	case len(msg.Data) == 0 && msg.Header.Get("Status") == "503":
		err = s.client.requestError(s.subject, nats.ErrNoResponders)
	default:
		reply, err = protocol.DecodeFetchReply(msg.Data)
		if err == nil && reply.Err != nil {
			err = reply.Err
		}
		more = err == nil && protocol.FetchStreamContinues(&reply, s.received, s.request.MaxReplies)
	}
	s.open = more
	if more {
		s.expireIn(s.client.config.requestTimeout) // a stream's later replies do not wait
	} else {
		s.timer.Stop()
		s.expired = nil
	}
	return reply, more, true, err
}

// retry prepares another request after a retriable error (Client.retryLeader:
// the not-leader hint or a metadata refresh, and the backoff). It returns
// ctx's error if ctx ends first.
func (s *fetchStream) retry(ctx context.Context, err error) error {
	if s.unknown.expired(err, &s.client.config) {
		return err // deleted, not spreading
	}
	s.attempt++
	s.refresh, err = s.client.retryLeader(ctx, s.tp, s.attempt, err)
	return err
}

// succeeded resets the backoff after a reply with data or a clean end.
func (s *fetchStream) succeeded() { s.attempt, s.unknown = 0, unknownTopicTimer{} }
