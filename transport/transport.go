package transport

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
)

// DefaultClusterName is the subject prefix used when Config.ClusterName is empty.
const DefaultClusterName = "raftmq"

// Sentinel errors. Test with errors.Is.
var (
	// ErrFrameTooLarge is returned by Send for a frame that cannot fit in one
	// NATS message; the error text names the limit.
	ErrFrameTooLarge = errors.New("transport: frame too large")
	// ErrQueueFull is returned by Send when the destination's queue is full;
	// the frame was dropped (and counted).
	ErrQueueFull = errors.New("transport: send queue full, frame dropped")
	// ErrClosed is returned by Send after Close.
	ErrClosed = errors.New("transport: closed")
)

// Handler receives inbound frames. from is the sending node id. The handler
// owns frame (it may keep or modify it). It is called from the NATS
// subscription goroutine, one frame at a time, in the order the sender sent
// them; it must not block for long.
type Handler func(from uint64, frame []byte)

// Config configures a Transport.
type Config struct {
	// ClusterName prefixes every subject ("<ClusterName>.peer.<node>").
	// Default DefaultClusterName. Dot-separated tokens without spaces or
	// wildcards.
	ClusterName string
	// NodeID is this node's id; required, non-zero.
	NodeID uint64
	// MaxPayload caps the size of one NATS message. Zero means the
	// connection's max payload (nc.MaxPayload()); it may not exceed it.
	MaxPayload int
	// FlushInterval is the linger: after the first frame to send, the
	// flusher waits this long for more before publishing. Zero (the
	// default) publishes as soon as the flusher runs; frames that arrive
	// while it publishes are still coalesced.
	FlushInterval time.Duration
	// CoalesceBytes is the size at which a message being filled for a
	// destination is closed and a new one started; a single larger frame
	// still goes out whole, up to the max payload. Default
	// DefaultCoalesceBytes (or the max payload, if smaller): full 1 MiB
	// messages cost more copying than they save in per-message overhead.
	CoalesceBytes int
	// MaxQueueBytes bounds the bytes queued per destination; a frame that
	// would exceed it is dropped. Default max(16 MiB, 4*MaxPayload).
	MaxQueueBytes int
	// Registerer receives the transport's metrics; nil registers none.
	// Every metric carries the const label node=<NodeID>.
	Registerer prometheus.Registerer
	// Logger logs decode and publish errors (rate-unlimited, at Warn);
	// nil discards.
	Logger *slog.Logger
}

// Validate reports whether the config is usable. It does not modify c.
func (c Config) Validate() error {
	if c.NodeID == 0 {
		return errors.New("transport: NodeID must be non-zero")
	}
	if c.ClusterName != "" {
		if err := validateSubjectPrefix(c.ClusterName); err != nil {
			return err
		}
	}
	switch {
	case c.MaxPayload < 0:
		return fmt.Errorf("transport: MaxPayload %d is negative", c.MaxPayload)
	case c.MaxPayload > 0 && c.MaxPayload < minPayload:
		return fmt.Errorf("transport: MaxPayload %d is below the minimum %d", c.MaxPayload, minPayload)
	case c.FlushInterval < 0:
		return fmt.Errorf("transport: FlushInterval %v is negative", c.FlushInterval)
	case c.CoalesceBytes < 0:
		return fmt.Errorf("transport: CoalesceBytes %d is negative", c.CoalesceBytes)
	case c.MaxQueueBytes < 0:
		return fmt.Errorf("transport: MaxQueueBytes %d is negative", c.MaxQueueBytes)
	}
	return nil
}

// DefaultCoalesceBytes is the default Config.CoalesceBytes.
const DefaultCoalesceBytes = 64 << 10

// minPayload keeps room for the envelope header and a useful frame.
const minPayload = 256

func validateSubjectPrefix(prefix string) error {
	for _, token := range strings.Split(prefix, ".") {
		if token == "" || strings.ContainsAny(token, " \t\r\n*>") {
			return fmt.Errorf("transport: cluster name %q is not a valid subject prefix (dot-separated tokens, no spaces or wildcards)", prefix)
		}
	}
	return nil
}

// PeerSubject is the subject a node with the given id receives peer traffic on.
func PeerSubject(clusterName string, node uint64) string {
	if clusterName == "" {
		clusterName = DefaultClusterName
	}
	return clusterName + ".peer." + strconv.FormatUint(node, 10)
}

// Transport moves opaque frames between nodes over NATS. See the package
// documentation.
type Transport struct {
	nc            *nats.Conn
	nodeID        uint64
	clusterName   string
	maxPayload    int
	coalesceBytes int
	maxFrame      int
	maxQueueBytes int
	linger        time.Duration
	logger        *slog.Logger
	stats         stats
	collectors    []prometheus.Collector
	registerer    prometheus.Registerer

	handler      atomic.Pointer[Handler]
	sub          *nats.Subscription
	subscription atomic.Pointer[nats.Subscription] // sub, for metrics read on other goroutines

	mu     sync.Mutex // guards the fields below
	peers  map[uint64]*peerQueue
	dirty  []*peerQueue // peers with queued data, each once
	free   [][]byte     // envelope buffers for reuse
	closed bool
	// publishing is set while one goroutine (the flusher or a sender,
	// see send) publishes queued envelopes; only one does at a time.
	publishing    bool
	directSenders sync.WaitGroup // senders publishing themselves; Close waits for them
	wake          chan struct{}  // capacity 1: there is something to flush
	closing       chan struct{}  // closed by Close: cut the linger short
	stopped       chan struct{}  // closed when the flusher exits
}

// peerQueue holds what is queued for one destination. Guarded by Transport.mu.
type peerQueue struct {
	to          uint64
	subject     string
	current     []byte   // envelope being filled; nil when empty
	ready       [][]byte // full envelopes waiting to be published
	queuedBytes int
	dirty       bool
}

// New starts a transport on nc: it subscribes to this node's peer subject
// and starts the flusher goroutine. The caller keeps ownership of nc and
// closes it after Close.
func New(nc *nats.Conn, cfg Config) (*Transport, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if nc == nil {
		return nil, errors.New("transport: nil NATS connection")
	}
	connMax := int(nc.MaxPayload())
	maxPayload := cfg.MaxPayload
	switch {
	case connMax <= 0 && maxPayload == 0:
		return nil, errors.New("transport: NATS connection reports no max payload (not connected?) and Config.MaxPayload is unset")
	case maxPayload == 0:
		maxPayload = connMax
	case connMax > 0 && maxPayload > connMax:
		return nil, fmt.Errorf("transport: MaxPayload %d exceeds the NATS server's max payload %d", maxPayload, connMax)
	}
	if maxPayload < minPayload {
		return nil, fmt.Errorf("transport: max payload %d is below the minimum %d", maxPayload, minPayload)
	}
	t := &Transport{
		nc:            nc,
		nodeID:        cfg.NodeID,
		clusterName:   cfg.ClusterName,
		maxPayload:    maxPayload,
		maxFrame:      MaxFrameSize(maxPayload, cfg.NodeID),
		maxQueueBytes: cfg.MaxQueueBytes,
		linger:        cfg.FlushInterval,
		logger:        cfg.Logger,
		peers:         make(map[uint64]*peerQueue),
		wake:          make(chan struct{}, 1),
		closing:       make(chan struct{}),
		stopped:       make(chan struct{}),
	}
	if t.clusterName == "" {
		t.clusterName = DefaultClusterName
	}
	t.coalesceBytes = min(maxPayload, cfg.CoalesceBytes)
	if cfg.CoalesceBytes == 0 {
		t.coalesceBytes = min(maxPayload, DefaultCoalesceBytes)
	}
	if t.maxQueueBytes == 0 {
		t.maxQueueBytes = max(16<<20, 4*maxPayload)
	}
	if t.logger == nil {
		t.logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Registerer != nil {
		if err := t.registerMetrics(cfg.Registerer); err != nil {
			return nil, err
		}
	}
	sub, err := nc.Subscribe(PeerSubject(t.clusterName, t.nodeID), t.receive)
	if err != nil {
		t.unregisterMetrics()
		return nil, fmt.Errorf("transport: subscribe: %w", err)
	}
	// Raft tolerates loss (it resends), but a burst of AppendEntries should
	// not trip the client's slow-consumer limit early. Drops are counted
	// (Stats.SlowConsumerDrops) and logged by the connection's error
	// handler (Connect).
	if err := sub.SetPendingLimits(peerPendingMessages, peerPendingBytes); err != nil {
		_ = sub.Unsubscribe()
		t.unregisterMetrics()
		return nil, fmt.Errorf("transport: pending limits: %w", err)
	}
	t.subscription.Store(sub)
	// Have the server register the subscription before returning, so peers
	// on the same server reach us at once; an error (a reconnect in
	// progress) only delays that.
	_ = nc.FlushTimeout(5 * time.Second)
	t.sub = sub
	go t.flushLoop()
	return t, nil
}

// Pending limits of the peer subscription: messages are bounded by bytes
// only (heartbeats are tiny, AppendEntries up to the max payload).
const (
	peerPendingMessages = -1
	peerPendingBytes    = 256 << 20
)

// MaxFrameSize is the largest frame that fits in one NATS message of
// maxPayload bytes sent by node from.
func MaxFrameSize(maxPayload int, from uint64) int {
	body := maxPayload - 1 - uvarintLen(from)
	return body - uvarintLen(uint64(body))
}

// MaxFrameSize is the largest frame Send accepts.
func (t *Transport) MaxFrameSize() int { return t.maxFrame }

// NodeID is this transport's node id.
func (t *Transport) NodeID() uint64 { return t.nodeID }

// SetHandler installs the inbound frame handler; frames that arrive while
// none is installed are dropped and counted. Safe to call at any time.
func (t *Transport) SetHandler(h Handler) {
	if h == nil {
		t.handler.Store(nil)
		return
	}
	t.handler.Store(&h)
}

// Send queues frame for node to and returns at once; it never waits for
// the network (without a linger it may publish the queue into the NATS
// client's buffer itself, see the package documentation). The frame is
// copied, so the caller may reuse it on return.
// Frames to the same destination are delivered in order, coalesced into as
// few NATS messages as Config.CoalesceBytes allows. Delivery is best effort: a
// full queue drops the frame (ErrQueueFull), and NATS itself may lose
// messages while a connection is down.
func (t *Transport) Send(to uint64, frame []byte) error {
	return t.send(to, len(frame), frame, nil)
}

// SendAppend is Send for a frame that encode writes straight into the
// outgoing NATS message, saving the copy of an encoded frame: encode must
// append exactly size bytes to dst and return the extended slice. encode
// runs with the transport's lock held, so it must be quick and must not
// call the Transport. A frame of another size than announced is dropped
// with an error (the message being filled is left as it was).
func (t *Transport) SendAppend(to uint64, size int, encode func(dst []byte) []byte) error {
	return t.send(to, size, nil, encode)
}

// send queues frame, or the size bytes encode writes, for node to.
func (t *Transport) send(to uint64, size int, frame []byte, encode func(dst []byte) []byte) error {
	if size > t.maxFrame {
		t.stats.framesDropped.Add(1)
		return fmt.Errorf("%w: %d bytes exceeds the %d-byte limit (NATS max payload %d minus envelope)",
			ErrFrameTooLarge, size, t.maxFrame, t.maxPayload)
	}
	need := uvarintLen(uint64(size)) + size
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return ErrClosed
	}
	q := t.peers[to]
	if q == nil {
		q = &peerQueue{to: to, subject: PeerSubject(t.clusterName, to)}
		t.peers[to] = q
	}
	if queued := q.queuedBytes; queued+need > t.maxQueueBytes {
		t.mu.Unlock()
		t.stats.framesDropped.Add(1)
		return fmt.Errorf("%w: %d bytes queued for node %d (limit %d)", ErrQueueFull, queued, to, t.maxQueueBytes)
	}
	if q.current != nil && len(q.current)+need > t.coalesceBytes {
		q.ready = append(q.ready, q.current)
		q.current = nil
	}
	if q.current == nil {
		q.current = appendEnvelopeHeader(t.newBufferLocked(need+maxEnvelopeHeader), t.nodeID)
	}
	if encode == nil {
		q.current = appendFrame(q.current, frame)
	} else {
		before := len(q.current)
		encoded := encode(binary.AppendUvarint(q.current, uint64(size)))
		if len(encoded) != before+need {
			q.current = encoded[:before]
			t.mu.Unlock()
			t.stats.framesDropped.Add(1)
			return fmt.Errorf("transport: SendAppend to node %d: encoder wrote %d bytes, announced %d", to, len(encoded)-before-(need-size), size)
		}
		q.current = encoded
	}
	q.queuedBytes += need
	if !q.dirty {
		q.dirty = true
		t.dirty = append(t.dirty, q)
	}
	// Without a linger, a sender that finds nobody publishing publishes
	// itself, saving the hand-off to the flusher goroutine on the path of
	// every Raft round trip; frames sent meanwhile by others queue up and
	// go out with the next round (claimPublisher).
	direct := t.linger == 0 && !t.publishing
	if direct {
		t.publishing = true
		t.directSenders.Add(1)
	}
	t.mu.Unlock()
	if direct {
		t.publishQueued()
		t.directSenders.Done()
		return nil
	}
	select {
	case t.wake <- struct{}{}:
	default:
	}
	return nil
}

// newBufferLocked returns an empty envelope buffer with room for at least
// need bytes (and at least the coalesce size), reusing a free one.
func (t *Transport) newBufferLocked(need int) []byte {
	for i := len(t.free) - 1; i >= 0; i-- {
		if b := t.free[i]; cap(b) >= need {
			last := len(t.free) - 1
			t.free[i] = t.free[last]
			t.free[last] = nil
			t.free = t.free[:last]
			return b[:0]
		}
	}
	return make([]byte, 0, max(need, t.coalesceBytes))
}

// flushLoop publishes what Send queued while another goroutine was
// publishing (or everything, with a linger), and drains the queues at Close.
func (t *Transport) flushLoop() {
	defer close(t.stopped)
	var linger *time.Timer
	for {
		<-t.wake
		if t.linger > 0 {
			if linger == nil {
				linger = time.NewTimer(t.linger)
			} else {
				linger.Reset(t.linger)
			}
			select {
			case <-linger.C:
			case <-t.closing:
				linger.Stop()
			}
		}
		if t.claimPublisher() {
			t.publishQueued()
		}
		if t.isClosed() {
			// Send refuses frames once closed is set; once the senders
			// that publish themselves are done, one more round publishes
			// everything queued before Close.
			t.directSenders.Wait()
			if t.claimPublisher() {
				t.publishQueued()
			}
			return
		}
	}
}

// claimPublisher makes the caller the publisher unless another goroutine
// is: only one publishes at a time, which keeps each destination's frames
// in order. A publisher that finds the queues non-empty keeps publishing,
// so frames queued while it runs are never left behind.
func (t *Transport) claimPublisher() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.publishing {
		return false
	}
	t.publishing = true
	return true
}

// publishQueued publishes until the queues are empty, then gives up the
// publisher role (claimPublisher).
func (t *Transport) publishQueued() {
	var batch [][]byte
	var subjects []string
	for {
		t.mu.Lock()
		if len(t.dirty) == 0 {
			t.publishing = false
			t.mu.Unlock()
			return
		}
		batch, subjects = t.takeQueuedLocked(batch[:0], subjects[:0])
		t.mu.Unlock()
		for i, msg := range batch {
			t.publish(subjects[i], msg)
		}
		t.recycle(batch)
		clear(subjects)
	}
}

func (t *Transport) isClosed() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.closed
}

// takeQueuedLocked moves every queued envelope out of the peer queues.
func (t *Transport) takeQueuedLocked(batch [][]byte, subjects []string) ([][]byte, []string) {
	for _, q := range t.dirty {
		if q.current != nil {
			q.ready = append(q.ready, q.current)
			q.current = nil
		}
		for _, msg := range q.ready {
			batch = append(batch, msg)
			subjects = append(subjects, q.subject)
		}
		clear(q.ready)
		q.ready = q.ready[:0]
		q.queuedBytes = 0
		q.dirty = false
	}
	clear(t.dirty)
	t.dirty = t.dirty[:0]
	return batch, subjects
}

func (t *Transport) publish(subject string, msg []byte) {
	frames := countFrames(msg)
	if err := t.nc.Publish(subject, msg); err != nil {
		t.stats.framesDropped.Add(uint64(frames))
		t.stats.publishErrors.Add(1)
		t.logger.Warn("transport: publish failed", "subject", subject, "bytes", len(msg), "err", err)
		return
	}
	t.stats.messagesSent.Add(1)
	t.stats.framesSent.Add(uint64(frames))
	t.stats.bytesSent.Add(uint64(len(msg)))
}

// countFrames counts the frames of an envelope this transport built.
func countFrames(msg []byte) int {
	_, body, err := readEnvelopeHeader(msg)
	if err != nil {
		return 0
	}
	n := 0
	for len(body) > 0 {
		if _, body, err = nextFrame(body); err != nil {
			break
		}
		n++
	}
	return n
}

// recycle returns published envelopes (nats.Conn.Publish copied them) to the
// free list, keeping a bounded number.
func (t *Transport) recycle(batch [][]byte) {
	t.mu.Lock()
	for _, b := range batch {
		if len(t.free) < 16 {
			t.free = append(t.free, b)
		}
	}
	t.mu.Unlock()
	clear(batch)
}

// receive is the NATS subscription callback.
func (t *Transport) receive(msg *nats.Msg) {
	t.stats.messagesReceived.Add(1)
	t.stats.bytesReceived.Add(uint64(len(msg.Data)))
	hp := t.handler.Load()
	_, err := decodeEnvelope(msg.Data, func(from uint64, frame []byte) {
		if hp == nil {
			t.stats.framesDropped.Add(1)
			return
		}
		t.stats.framesReceived.Add(1)
		(*hp)(from, frame)
	})
	if err != nil {
		t.stats.decodeErrors.Add(1)
		t.logger.Warn("transport: dropping undecodable peer message", "subject", msg.Subject, "bytes", len(msg.Data), "err", err)
	}
}

// Close publishes what is queued, stops the flusher and unsubscribes. It
// does not close the NATS connection. Safe to call more than once.
func (t *Transport) Close() error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		<-t.stopped
		return nil
	}
	t.closed = true
	t.mu.Unlock()
	close(t.closing)
	select {
	case t.wake <- struct{}{}:
	default:
	}
	<-t.stopped
	err := t.sub.Unsubscribe()
	t.unregisterMetrics()
	if err != nil && !errors.Is(err, nats.ErrConnectionClosed) && !errors.Is(err, nats.ErrBadSubscription) {
		return fmt.Errorf("transport: unsubscribe: %w", err)
	}
	return nil
}
