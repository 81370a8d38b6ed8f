package raft

import (
	"testing"
	"time"

	"github.com/raftmq/raftmq/protocol"
)

// testNet wires cores together with synchronous, in-order delivery for the
// rule and scenario tests. Nodes sync their log at once unless manualSync
// is set, in which case syncNode must be called.
type testNet struct {
	t     testing.TB
	now   time.Duration
	nodes map[uint64]*testNode
	ids   []uint64
	// cut[from][to] drops messages from -> to.
	cut map[[2]uint64]bool
	// queue holds messages not yet delivered.
	queue []protocol.RaftMessage
}

type testNode struct {
	core       *core
	log        *memLog
	stable     *memStable
	applied    []protocol.Entry
	manualSync bool
	appended   durableMark
	sent       []protocol.RaftMessage // everything the node sent, for inspection
	reads      []readState            // finished ReadIndex requests
	snapshots  []snapshotRequest      // snapshots the core asked to stream
}

const (
	testElection  = 100 * time.Millisecond
	testHeartbeat = 10 * time.Millisecond
)

func testCoreConfig(id uint64, voters []uint64, log *memLog, hs HardState) coreConfig {
	return coreConfig{
		ID: id, Voters: voters, Log: log, HardState: hs,
		ElectionTimeout: testElection, HeartbeatInterval: testHeartbeat,
		MaxAppendBytes: 1 << 20, MaxInflightMessages: 64, MaxInflightBytes: 16 << 20, MaxApplyBytes: 1 << 20,
		Seed: id,
	}
}

func newTestNet(t testing.TB, ids ...uint64) *testNet {
	n := &testNet{t: t, nodes: map[uint64]*testNode{}, ids: ids, cut: map[[2]uint64]bool{}}
	for _, id := range ids {
		n.addNode(id, newMemLog(), &memStable{}, nil)
	}
	return n
}

func (n *testNet) addNode(id uint64, log *memLog, stable *memStable, tune func(*coreConfig)) *testNode {
	hs, _ := stable.Load()
	cfg := testCoreConfig(id, n.ids, log, hs)
	if tune != nil {
		tune(&cfg)
	}
	node := &testNode{core: newCore(cfg, n.now), log: log, stable: stable}
	n.nodes[id] = node
	return node
}

// restart replaces a node with a fresh core on what its storage kept.
func (n *testNet) restart(id uint64) *testNode {
	old := n.nodes[id]
	return n.addNode(id, old.log.crashClone(), old.stable.crashClone(), nil)
}

func (n *testNet) isolate(id uint64) {
	for _, other := range n.ids {
		if other != id {
			n.cut[[2]uint64{id, other}] = true
			n.cut[[2]uint64{other, id}] = true
		}
	}
}

func (n *testNet) heal() { clear(n.cut) }

// drive carries out a node's ready the way the driver does.
func (n *testNet) drive(id uint64) {
	node := n.nodes[id]
	for node.core.hasReady() {
		rd := node.core.takeReady()
		if rd.err != nil {
			n.t.Fatalf("node %d: %v", id, rd.err)
		}
		if err := persistReady(node.log, node.stable, &rd); err != nil {
			n.t.Fatalf("node %d: %v", id, err)
		}
		if k := len(rd.entries); k > 0 {
			node.appended = durableMark{term: rd.entries[k-1].Term, index: rd.entries[k-1].Index}
			if !node.manualSync {
				n.syncNode(id)
			}
		}
		node.sent = append(node.sent, rd.messages...)
		for _, m := range rd.messages {
			if !n.cut[[2]uint64{m.From, m.To}] {
				n.queue = append(n.queue, m)
			}
		}
		node.applied = append(node.applied, rd.committed...)
		node.reads = append(node.reads, rd.reads...)
		node.snapshots = append(node.snapshots, rd.snapshots...)
	}
}

// syncNode makes a node's log durable and tells its core.
func (n *testNet) syncNode(id uint64) {
	node := n.nodes[id]
	if _, err := node.log.Sync(); err != nil {
		n.t.Fatal(err)
	}
	if node.appended.index != 0 {
		node.core.durableNotice(node.appended.term, node.appended.index, n.now)
	}
	n.drive(id)
}

// deliver runs every node and delivers messages until the network is quiet.
func (n *testNet) deliver() {
	for _, id := range n.ids {
		n.drive(id)
	}
	for len(n.queue) > 0 {
		m := n.queue[0]
		n.queue = n.queue[1:]
		if to := n.nodes[m.To]; to != nil && !n.cut[[2]uint64{m.From, m.To}] {
			to.core.step(&m, n.now)
			n.drive(m.To)
		}
	}
}

// advance moves the clock, ticking every node whose deadline passed.
func (n *testNet) advance(d time.Duration) {
	end := n.now + d
	for {
		next, nextID := end, uint64(0)
		for _, id := range n.ids {
			if dl := n.nodes[id].core.deadline(); dl <= next {
				next, nextID = dl, id
			}
		}
		n.now = max(n.now, next)
		if nextID == 0 {
			return
		}
		n.nodes[nextID].core.tick(n.now)
		n.deliver()
	}
}

// elect makes id campaign (as if its election timer fired) and delivers.
func (n *testNet) elect(id uint64) {
	n.t.Helper()
	c := n.nodes[id].core
	n.now = max(n.now, c.electionDeadline)
	c.tick(n.now)
	n.deliver()
	if c.role != RoleLeader {
		n.t.Fatalf("node %d did not win: role %v term %d", id, c.role, c.term)
	}
}

func (n *testNet) propose(id uint64, data ...string) (first uint64) {
	n.t.Helper()
	ents := make([]protocol.Entry, len(data))
	for i, d := range data {
		ents[i] = protocol.Entry{Type: protocol.EntryControl, Data: []byte(d)}
	}
	first, _, err := n.nodes[id].core.propose(ents, n.now)
	if err != nil {
		n.t.Fatalf("propose on %d: %v", id, err)
	}
	n.deliver()
	return first
}

// logWith returns a memLog holding entries with the given terms from index 1.
func logWith(terms ...uint64) *memLog {
	l := newMemLog()
	for i, term := range terms {
		_ = l.Append([]protocol.Entry{{Index: uint64(i + 1), Term: term, Type: protocol.EntryControl}})
	}
	_, _ = l.Sync()
	return l
}

func logTerms(l LogReader) []uint64 {
	var out []uint64
	for i := l.FirstIndex(); i <= l.LastIndex(); i++ {
		t, _ := l.Term(i)
		out = append(out, t)
	}
	return out
}

// takeMessages returns and clears what a node sent of the given type.
func (node *testNode) takeMessages(typ protocol.RaftMessageType) []protocol.RaftMessage {
	var out, rest []protocol.RaftMessage
	for _, m := range node.sent {
		if m.Type == typ {
			out = append(out, m)
		} else {
			rest = append(rest, m)
		}
	}
	node.sent = rest
	return out
}
