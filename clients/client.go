package clients

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/raftmq/raftmq/protocol"
)

// Client is a connection to a raftmq cluster over NATS. It caches cluster
// metadata (topics, partitions, leaders) and refreshes it when a broker says
// it is not the leader or the cache grows old. Producers, consumers and the
// admin calls all hang off a Client. A Client is safe for concurrent use.
type Client struct {
	conn     *nats.Conn
	ownsConn bool
	config   clientConfig
	logger   *slog.Logger
	metadata *metadataCache
	replies  *replyMux

	closeOnce sync.Once
	closed    atomic.Bool
}

// DefaultServerURL is the URL Connect dials when given none: the first
// broker of `raftmq dev` or a default `raftmq serve`.
const DefaultServerURL = "nats://127.0.0.1:4222"

// Connect dials the NATS system at urls (a comma-separated list, as NATS
// clients accept; "" means DefaultServerURL) and returns a Client that owns
// the connection: Close closes it. The connection reconnects forever to any
// of the listed servers, so a client survives one broker going down. ctx
// bounds the first dial.
func Connect(ctx context.Context, urls string, opts ...ClientOption) (*Client, error) {
	config, err := newClientConfig(opts)
	if err != nil {
		return nil, err
	}
	if urls == "" {
		urls = DefaultServerURL
	}
	natsOptions := []nats.Option{
		nats.Name(config.name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.RetryOnFailedConnect(false),
	}
	if deadline, ok := ctx.Deadline(); ok {
		natsOptions = append(natsOptions, nats.Timeout(time.Until(deadline)))
	}
	natsOptions = append(natsOptions, config.natsOptions...)
	type dialResult struct {
		conn *nats.Conn
		err  error
	}
	done := make(chan dialResult, 1)
	go func() {
		conn, err := nats.Connect(urls, natsOptions...)
		done <- dialResult{conn, err}
	}()
	select {
	case <-ctx.Done():
		go func() {
			if r := <-done; r.conn != nil {
				r.conn.Close()
			}
		}()
		return nil, fmt.Errorf("clients: connect to %s: %w", urls, ctx.Err())
	case r := <-done:
		if r.err != nil {
			return nil, fmt.Errorf("clients: connect to %s: %w", urls, r.err)
		}
		client, err := newClient(r.conn, config)
		if err != nil {
			r.conn.Close()
			return nil, err
		}
		client.ownsConn = true
		return client, nil
	}
}

// New returns a Client over an existing NATS connection. Close does not
// close conn; the caller keeps owning it.
func New(conn *nats.Conn, opts ...ClientOption) (*Client, error) {
	if conn == nil {
		return nil, errors.New("clients: nil NATS connection")
	}
	config, err := newClientConfig(opts)
	if err != nil {
		return nil, err
	}
	return newClient(conn, config)
}

func newClient(conn *nats.Conn, config clientConfig) (*Client, error) {
	c := &Client{conn: conn, config: config, logger: config.logger}
	replies, err := newReplyMux(conn)
	if err != nil {
		return nil, err
	}
	c.replies = replies
	c.metadata = newMetadataCache(c)
	return c, nil
}

// Conn returns the client's NATS connection.
func (c *Client) Conn() *nats.Conn { return c.conn }

// SubjectPrefix returns the cluster's subject prefix (WithSubjectPrefix).
func (c *Client) SubjectPrefix() string { return c.config.prefix }

// Close releases the client. It closes the NATS connection when Connect
// opened it. Producers and consumers of the client must be closed first;
// their outstanding requests fail with ErrClosed.
func (c *Client) Close() error {
	c.closeOnce.Do(func() {
		c.closed.Store(true)
		c.replies.close()
		if c.ownsConn {
			c.conn.Close()
		}
	})
	return nil
}

// ErrClosed is returned by operations on a closed Client, Producer or Consumer.
var ErrClosed = errors.New("clients: closed")

// ErrNoBrokers means no broker answered: nothing subscribes to the subject
// (the cluster is down, or the subject prefix is wrong). Retriable.
var ErrNoBrokers = errors.New("clients: no broker answered (is raftmq running, and is the subject prefix right?)")

// request sends data to subject and waits for the reply, bounded by ctx and
// by the client's request timeout.
func (c *Client) request(ctx context.Context, subject string, data []byte) ([]byte, error) {
	if c.closed.Load() {
		return nil, ErrClosed
	}
	ctx, cancel := context.WithTimeout(ctx, c.config.requestTimeout)
	defer cancel()
	msg, err := c.conn.RequestMsgWithContext(ctx, &nats.Msg{Subject: subject, Data: data, Header: acceptZstd})
	if err != nil {
		return nil, c.requestError(subject, err)
	}
	reply, err := protocol.DecodePayload(msg.Data, msg.Header.Get(protocol.HeaderEncoding))
	if err != nil {
		return nil, fmt.Errorf("clients: %s: %w", subject, err)
	}
	return reply, nil
}

// acceptZstd is the header of admin and metadata requests: the broker may
// compress a large reply (a big cluster's status or metadata).
var acceptZstd = nats.Header{protocol.HeaderAcceptEncoding: []string{protocol.EncodingZstd}}

func (c *Client) requestError(subject string, err error) error {
	switch {
	case errors.Is(err, nats.ErrNoResponders):
		return fmt.Errorf("%w (subject %s)", ErrNoBrokers, subject)
	case errors.Is(err, nats.ErrConnectionClosed):
		return fmt.Errorf("clients: %s: %w", subject, ErrClosed)
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, nats.ErrTimeout):
		return fmt.Errorf("clients: %s: %w", subject, errRequestTimeout)
	}
	return fmt.Errorf("clients: %s: %w", subject, err)
}

// errRequestTimeout marks a request that got no reply in time; it may have
// taken effect. It matches protocol.CodeTimeout with errors.Is.
var errRequestTimeout = &protocol.Error{Code: protocol.CodeTimeout, Message: "no reply in time"}

// adminRequest sends a JSON admin request op to any broker and decodes the
// JSON reply into reply. An operation that changes nothing is sent again
// when a broker does not answer in time (requestAgainOnTimeout).
func (c *Client) adminRequest(ctx context.Context, op string, request, reply any) error {
	body, err := json.Marshal(request)
	if err != nil {
		return fmt.Errorf("clients: encode %s request: %w", op, err)
	}
	subject := protocol.SubjectAdmin(c.config.prefix, op)
	var data []byte
	if readOnlyAdminOps[op] {
		data, err = c.requestAgainOnTimeout(ctx, subject, body)
	} else {
		data, err = c.request(ctx, subject, body)
	}
	if err != nil {
		return err
	}
	if err := json.Unmarshal(data, reply); err != nil {
		return fmt.Errorf("clients: decode %s reply: %w", op, err)
	}
	return nil
}

// retriable reports whether err may go away if the same request is sent
// again, after a metadata refresh and a pause. A NATS connection that is
// reconnecting holds publishes in a buffer of bounded size
// (nats.ReconnectBufSize) and refuses them once it is full: that outage is
// as passing as the connection's own.
func retriable(err error) bool {
	var apiError *protocol.Error
	if errors.As(err, &apiError) {
		return apiError.Retriable()
	}
	return errors.Is(err, ErrNoBrokers) || errors.Is(err, nats.ErrTimeout) ||
		errors.Is(err, nats.ErrConnectionReconnecting) || errors.Is(err, nats.ErrDisconnected) ||
		errors.Is(err, nats.ErrReconnectBufExceeded)
}

// replyMux routes replies of pipelined requests: one wildcard inbox
// subscription per client, one token per request. Unlike
// nats.Conn.Request, the caller publishes from its own goroutine, so
// requests leave in the order the caller sends them.
type replyMux struct {
	conn   *nats.Conn
	prefix string
	sub    *nats.Subscription

	mu      sync.Mutex
	next    uint64
	pending map[uint64]*pendingRequest
	closed  bool
}

type pendingRequest struct {
	done  func(*nats.Msg, error)
	timer *time.Timer
}

func newReplyMux(conn *nats.Conn) (*replyMux, error) {
	m := &replyMux{conn: conn, prefix: conn.NewInbox() + ".", pending: make(map[uint64]*pendingRequest)}
	sub, err := conn.Subscribe(m.prefix+"*", m.deliver)
	if err != nil {
		return nil, fmt.Errorf("clients: subscribe to reply inbox: %w", err)
	}
	_ = sub.SetPendingLimits(-1, -1)
	m.sub = sub
	return m, nil
}

// send publishes data to subject with a fresh reply token and calls done
// exactly once with the reply or an error (ErrNoBrokers, a timeout after
// timeout, ErrClosed, a publish error). done runs on a NATS or timer
// goroutine and must not block.
func (m *replyMux) send(subject string, data []byte, timeout time.Duration, done func(*nats.Msg, error)) error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return ErrClosed
	}
	m.next++
	token := m.next
	request := &pendingRequest{done: done}
	request.timer = time.AfterFunc(timeout, func() {
		if r := m.take(token); r != nil {
			r.done(nil, errRequestTimeout)
		}
	})
	m.pending[token] = request
	m.mu.Unlock()

	if err := m.conn.PublishRequest(subject, m.prefix+strconv.FormatUint(token, 10), data); err != nil {
		if r := m.take(token); r != nil {
			go r.done(nil, err)
		}
	}
	return nil
}

// take removes a pending request and stops its timer; nil when it is gone.
func (m *replyMux) take(token uint64) *pendingRequest {
	m.mu.Lock()
	defer m.mu.Unlock()
	r := m.pending[token]
	if r != nil {
		delete(m.pending, token)
		r.timer.Stop()
	}
	return r
}

func (m *replyMux) deliver(msg *nats.Msg) {
	token, err := strconv.ParseUint(strings.TrimPrefix(msg.Subject, m.prefix), 10, 64)
	if err != nil {
		return
	}
	r := m.take(token)
	if r == nil {
		return // timed out already
	}
	if len(msg.Data) == 0 && msg.Header.Get("Status") == "503" {
		r.done(nil, ErrNoBrokers)
		return
	}
	r.done(msg, nil)
}

func (m *replyMux) close() {
	m.mu.Lock()
	m.closed = true
	pending := m.pending
	m.pending = make(map[uint64]*pendingRequest)
	m.mu.Unlock()
	_ = m.sub.Unsubscribe()
	for _, r := range pending {
		r.timer.Stop()
		r.done(nil, ErrClosed)
	}
}

// readOnlyAdminOps are the admin operations that change nothing, so a
// request that got no reply can be sent again.
var readOnlyAdminOps = map[string]bool{
	protocol.AdminMetadata: true, protocol.AdminClusterStatus: true,
	protocol.AdminListTopics: true, protocol.AdminDescribeTopic: true,
	protocol.AdminGroupList: true, protocol.AdminGroupDescribe: true,
}

// requestAgainOnTimeout is request for a request that changes nothing: when
// no reply came within a quarter of the request timeout (at least a
// second), it sends the request again while the earlier attempts stay
// open, and takes the first reply of any of them, until the request
// timeout. Any broker of the queue group answers such requests, and a
// broker that stopped answering (frozen, or gone before its NATS server
// noticed) keeps getting its share of them until NATS drops it: one
// attempt would fail as often as it reaches that broker. The earlier
// attempts stay open because a broker may be slow rather than gone: one
// with no controller leader answers a cluster status from its own view
// only after waiting several election timeouts for one.
func (c *Client) requestAgainOnTimeout(ctx context.Context, subject string, body []byte) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, c.config.requestTimeout)
	defer cancel() // ends the attempts still open
	perAttempt := max(c.config.requestTimeout/4, time.Second)
	type result struct {
		data []byte
		err  error
	}
	maxAttempts := int(c.config.requestTimeout/perAttempt) + 1
	results := make(chan result, maxAttempts) // no attempt blocks on its send
	attempts, open := 0, 0
	send := func() {
		attempts++
		open++
		go func() {
			data, err := c.request(ctx, subject, body)
			results <- result{data, err}
		}()
	}
	send()
	again := time.NewTicker(perAttempt)
	defer again.Stop()
	for {
		select {
		case r := <-results:
			open--
			if r.err == nil || !errors.Is(r.err, errRequestTimeout) || open == 0 {
				return r.data, r.err
			}
		case <-again.C:
			if attempts < maxAttempts && ctx.Err() == nil {
				send()
			}
		}
	}
}
