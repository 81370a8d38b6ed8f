package raft

import (
	"math"
	"testing"
	"time"
)

// BenchmarkProposeSingleNode: 64 proposers (16K 100 B entries in flight,
// as BenchmarkClusterSegmentlog/100B) on a one-voter group over an
// in-memory log that keeps the last 256K entries, so the cost measured is Propose, the driver round and
// resolving, without followers or a disk. cpu-ns/entry is the whole
// process's CPU per entry.
func BenchmarkProposeSingleNode(b *testing.B) {
	net := &memNetwork{hosts: map[uint64]*Host{}, cut: map[uint64]bool{}}
	h, err := NewHost(HostConfig{NodeID: 1, Send: net.send, Seed: 1, Logger: benchLogger})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = h.Close() })
	cfg := DefaultGroupConfig()
	cfg.GroupID = 1
	cfg.Voters = []uint64{1}
	cfg.ElectionTimeout = 200 * time.Millisecond
	cfg.HeartbeatInterval = 20 * time.Millisecond
	cfg.Log = newBenchLog(1<<18, math.MaxUint64)
	cfg.Stable, cfg.StateMachine = &memStable{}, &countingSM{}
	g, err := h.AddGroup(cfg)
	if err != nil {
		b.Fatal(err)
	}
	bc := &benchCluster{groups: map[uint64]*Group{1: g}}
	leader := bc.leader(b)
	w0 := h.wakeups()
	proposers, window := loadShape(100)
	proposeLoad(b, leader, 100, proposers, window, 1)
	w := h.wakeups().sub(w0)
	b.ReportMetric(float64(w.total())/float64(b.N)*1000, "wakeups/1000entries")
}
