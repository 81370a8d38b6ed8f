package raft

import (
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/raftmq/raftmq/protocol"
)

// Linearizable reads in the simulation: clients write unique values
// (every proposal) and read a register (the last value applied) through
// ReadIndex on random nodes; porcupine checks the history.

// simRegisterInput is a register operation: a write of value or a read.
type simRegisterInput struct {
	write bool
	value string
}

// simRegisterModel is a register whose writes carry their position in the
// log (seq, dense from 1) and whose state is the seq of the last write; a
// read outputs the seq of the value it saw. Writes must linearize in log
// order: a correct Raft commits them in that order, so the true
// linearization is among those checked, and fixing the order of writes
// nobody read keeps the search linear instead of exponential.
var simRegisterModel = porcupine.Model{
	Init: func() any { return 0 },
	Step: func(state, input, output any) (bool, any) {
		in := input.(simSeqInput)
		if in.write {
			return in.seq == state.(int)+1, in.seq
		}
		return output.(int) == state.(int), state
	},
	DescribeOperation: func(input, output any) string {
		in := input.(simSeqInput)
		if in.write {
			return fmt.Sprintf("write #%d", in.seq)
		}
		return fmt.Sprintf("read -> #%d", output)
	},
}

type simSeqInput struct {
	write bool
	seq   int
}

// simHistory records register operations on a logical clock that follows
// the simulation's event order.
type simHistory struct {
	clock  int64
	ops    []porcupine.Operation
	writes map[string]int // value -> index in ops
	client int
}

func (h *simHistory) tick() int64 { h.clock++; return h.clock }

func (h *simHistory) write(value string) {
	if h.writes == nil {
		h.writes = map[string]int{}
	}
	h.client++
	h.writes[value] = len(h.ops)
	h.ops = append(h.ops, porcupine.Operation{ClientId: h.client, Input: simRegisterInput{write: true, value: value}, Call: h.tick(), Return: math.MaxInt64})
}

func (h *simHistory) acked(value string) {
	if i, ok := h.writes[value]; ok && h.ops[i].Return == math.MaxInt64 {
		h.ops[i].Return = h.tick()
	}
}

// simReader is one node's reads in progress and its register.
type simReader struct {
	value   string
	calls   map[uint64]int64 // read id -> call time
	waiting []simWaitingRead // confirmed, waiting for apply
}

type simWaitingRead struct {
	id, index uint64
}

// read issues a read on a random live node.
func (s *sim) read() {
	var alive []*simNode
	for _, n := range s.nodes {
		if n.alive {
			alive = append(alive, n)
		}
	}
	if len(alive) == 0 {
		return
	}
	n := alive[s.rand.IntN(len(alive))]
	s.history.client++
	id := uint64(s.history.client)
	if n.reader.calls == nil {
		n.reader.calls = map[uint64]int64{}
	}
	n.reader.calls[id] = s.history.tick()
	if s.cfg.staleReads {
		s.readsDone(n, []readState{{id: id, index: n.lastApplied}})
		return
	}
	n.core.requestRead(id, s.now)
	s.drive(n)
}

// readsDone takes a node's finished reads: each returns once the node
// applied its index.
func (s *sim) readsDone(n *simNode, reads []readState) {
	for _, r := range reads {
		if r.err != nil {
			delete(n.reader.calls, r.id)
			continue
		}
		n.reader.waiting = append(n.reader.waiting, simWaitingRead{id: r.id, index: r.index})
	}
	s.serveReads(n)
}

func (s *sim) serveReads(n *simNode) {
	kept := n.reader.waiting[:0]
	for _, w := range n.reader.waiting {
		if w.index > n.lastApplied {
			kept = append(kept, w)
			continue
		}
		call, ok := n.reader.calls[w.id]
		if !ok {
			continue
		}
		delete(n.reader.calls, w.id)
		s.history.ops = append(s.history.ops, porcupine.Operation{ClientId: int(w.id), Input: simRegisterInput{}, Call: call, Output: n.reader.value, Return: s.history.tick()})
	}
	n.reader.waiting = kept
}

// applied updates the node's register and serves the reads it unblocks.
func (s *sim) applied(n *simNode, e *protocol.Entry) {
	if e.Type == protocol.EntryControl && strings.HasPrefix(string(e.Data), "p") {
		n.reader.value = string(e.Data)
		// The write took effect (committed) by its first apply anywhere;
		// ending it there bounds the search without ruling out the true
		// linearization (its commit).
		s.history.acked(n.reader.value)
	}
	s.serveReads(n)
}

// linearizable checks the history: writes that never committed are left
// out (no read can have seen them); a write ends at its acknowledgement or
// its first apply, whichever came first.
func (s *sim) linearizable(timeout time.Duration) (porcupine.CheckResult, int) {
	seq := map[string]int{"": 0}
	for index := uint64(1); index <= uint64(len(s.committed)); index++ {
		if data := s.committed[index].data; strings.HasPrefix(data, "p") {
			seq[data] = len(seq)
		}
	}
	var ops []porcupine.Operation
	reads := 0
	for _, op := range s.history.ops {
		in := op.Input.(simRegisterInput)
		if in.write {
			k, ok := seq[in.value]
			if !ok {
				continue
			}
			op.Input = simSeqInput{write: true, seq: k}
		} else {
			reads++
			op.Input = simSeqInput{}
			k, ok := seq[op.Output.(string)]
			if !ok {
				k = -1 // a value never committed: illegal
			}
			op.Output = k
		}
		ops = append(ops, op)
	}
	return porcupine.CheckOperationsTimeout(simRegisterModel, ops, timeout), reads
}

func readSimConfig(seed uint64, nodes int) simConfig {
	cfg := defaultSimConfig(seed, nodes)
	cfg.steps = 6000
	cfg.readEvery = 2 * time.Millisecond
	cfg.proposeEvery = 3 * time.Millisecond
	return cfg
}

// TestSimulationReadIndexIsLinearizable runs clusters with faults, crashes
// and ReadIndex reads on every node and checks the history with porcupine.
func TestSimulationReadIndexIsLinearizable(t *testing.T) {
	checked := 0
	for _, nodes := range []int{3, 5} {
		for seed := uint64(1); seed <= 4; seed++ {
			s := newSim(readSimConfig(seed, nodes))
			if _, v := s.run(); v != nil {
				t.Fatalf("seed %d nodes %d: %v", seed, nodes, v)
			}
			res, reads := s.linearizable(20 * time.Second)
			switch res {
			case porcupine.Illegal:
				t.Fatalf("seed %d nodes %d: reads are not linearizable (%d reads)", seed, nodes, reads)
			case porcupine.Ok:
				checked++
				if reads < 100 {
					t.Fatalf("seed %d nodes %d: only %d reads completed", seed, nodes, reads)
				}
			default:
				t.Logf("seed %d nodes %d: linearizability check timed out", seed, nodes)
			}
		}
	}
	if checked == 0 {
		t.Fatalf("no history could be checked")
	}
}

// TestSimulationCatchesStaleReads shows the linearizability check bites:
// reads served from a node's applied state without ReadIndex are stale
// behind partitions and lagging followers.
func TestSimulationCatchesStaleReads(t *testing.T) {
	for seed := uint64(1); seed <= 20; seed++ {
		cfg := readSimConfig(seed, 3)
		cfg.staleReads = true
		s := newSim(cfg)
		if _, v := s.run(); v != nil {
			t.Fatalf("seed %d: %v", seed, v)
		}
		if res, _ := s.linearizable(20 * time.Second); res == porcupine.Illegal {
			t.Logf("seed %d: stale reads found", seed)
			return
		}
	}
	t.Fatalf("stale reads went unnoticed in 20 seeds")
}
