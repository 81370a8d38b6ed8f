package transport

import (
	"sync"
)

// MemNetwork connects in-memory transports for tests: the same Send /
// SetHandler / Close shape as Transport, no NATS. Delivery is asynchronous
// (a goroutine per node runs the handler), in order per sender, and lossy
// only where a link is cut, the receiver is gone, or its inbox is full.
type MemNetwork struct {
	mu      sync.Mutex
	nodes   map[uint64]*MemTransport
	cut     map[memLink]bool
	inboxes int
}

type memLink struct{ from, to uint64 }

// DefaultMemInboxFrames bounds each in-memory node's undelivered frames.
const DefaultMemInboxFrames = 1 << 16

// NewMemNetwork returns an empty network.
func NewMemNetwork() *MemNetwork {
	return &MemNetwork{nodes: make(map[uint64]*MemTransport), cut: make(map[memLink]bool), inboxes: DefaultMemInboxFrames}
}

// Join adds node id to the network, replacing (and closing) an earlier
// transport with the same id, as a restarted node would.
func (n *MemNetwork) Join(id uint64) *MemTransport {
	t := &MemTransport{network: n, nodeID: id, wake: make(chan struct{}, 1), stopped: make(chan struct{})}
	n.mu.Lock()
	old := n.nodes[id]
	n.nodes[id] = t
	n.mu.Unlock()
	if old != nil {
		old.Close()
	}
	go t.deliverLoop()
	return t
}

// SetLink cuts (up=false) or restores the one-way link from → to.
func (n *MemNetwork) SetLink(from, to uint64, up bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if up {
		delete(n.cut, memLink{from, to})
	} else {
		n.cut[memLink{from, to}] = true
	}
}

// Isolate cuts (or, with isolated=false, restores) every link to and from id.
func (n *MemNetwork) Isolate(id uint64, isolated bool) {
	n.mu.Lock()
	ids := make([]uint64, 0, len(n.nodes))
	for other := range n.nodes {
		ids = append(ids, other)
	}
	n.mu.Unlock()
	for _, other := range ids {
		if other != id {
			n.SetLink(id, other, !isolated)
			n.SetLink(other, id, !isolated)
		}
	}
}

func (n *MemNetwork) route(from, to uint64) *MemTransport {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cut[memLink{from, to}] {
		return nil
	}
	return n.nodes[to]
}

// MemTransport is one node on a MemNetwork.
type MemTransport struct {
	network *MemNetwork
	nodeID  uint64
	handler Handler

	mu      sync.Mutex
	inbox   []memFrame
	closed  bool
	dropped uint64
	wake    chan struct{}
	stopped chan struct{}
}

type memFrame struct {
	from  uint64
	frame []byte
}

// NodeID is this node's id.
func (t *MemTransport) NodeID() uint64 { return t.nodeID }

// SetHandler installs the inbound frame handler (see Handler).
func (t *MemTransport) SetHandler(h Handler) {
	t.mu.Lock()
	t.handler = h
	t.mu.Unlock()
}

// Send copies frame and queues it for node to. It never blocks. Frames to
// an unknown or closed node, or over a cut link, vanish without error, as
// on a network; a full inbox returns ErrQueueFull.
func (t *MemTransport) Send(to uint64, frame []byte) error {
	if t.isClosed() {
		return ErrClosed
	}
	dst := t.network.route(t.nodeID, to)
	if dst == nil {
		return nil
	}
	return dst.enqueue(memFrame{from: t.nodeID, frame: append([]byte(nil), frame...)})
}

// Dropped is the number of inbound frames this node dropped.
func (t *MemTransport) Dropped() uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.dropped
}

func (t *MemTransport) enqueue(f memFrame) error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil
	}
	if len(t.inbox) >= t.network.inboxes {
		t.dropped++
		t.mu.Unlock()
		return ErrQueueFull
	}
	t.inbox = append(t.inbox, f)
	select { // under mu, so never after Close closed wake
	case t.wake <- struct{}{}:
	default:
	}
	t.mu.Unlock()
	return nil
}

func (t *MemTransport) isClosed() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.closed
}

func (t *MemTransport) deliverLoop() {
	defer close(t.stopped)
	var batch []memFrame
	for range t.wake {
		t.mu.Lock()
		if t.closed {
			t.mu.Unlock()
			return
		}
		batch = append(batch[:0], t.inbox...)
		clear(t.inbox)
		t.inbox = t.inbox[:0]
		handler := t.handler
		t.mu.Unlock()
		for _, f := range batch {
			t.mu.Lock()
			closed := t.closed
			if handler == nil && !closed {
				t.dropped++
			}
			t.mu.Unlock()
			if closed {
				break
			}
			if handler != nil {
				handler(f.from, f.frame)
			}
		}
		clear(batch)
	}
}

// Close leaves the network and discards undelivered frames. A handler call
// already running may finish after Close returns; no new one starts. Safe
// to call more than once.
func (t *MemTransport) Close() error {
	t.mu.Lock()
	already := t.closed
	t.closed = true
	t.inbox = nil
	if !already {
		close(t.wake)
	}
	t.mu.Unlock()
	if !already {
		t.network.mu.Lock()
		if t.network.nodes[t.nodeID] == t {
			delete(t.network.nodes, t.nodeID)
		}
		t.network.mu.Unlock()
	}
	return nil
}
