package raft

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

// simCorpus is the fixed seed corpus every default run replays.
var simCorpus = []uint64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24}

func runSimSeed(t *testing.T, cfg simConfig) simStats {
	t.Helper()
	return runSimSeedNamed(t, cfg, "TestSimulation")
}

// runSimSeedNamed runs one seed; a failure names the test that reproduces it.
func runSimSeedNamed(t *testing.T, cfg simConfig, test string) simStats {
	t.Helper()
	if *flagSimSteps > 0 {
		cfg.steps = *flagSimSteps
	}
	stats, v := newSim(cfg).run()
	if v != nil {
		t.Errorf("simulation seed=%d nodes=%d: %v\n\treproduce: go test ./raft -run '%s$' -sim.seed=%d -sim.nodes=%d -sim.steps=%d",
			cfg.seed, cfg.nodes, v, test, cfg.seed, cfg.nodes, cfg.steps)
	}
	return stats
}

// TestSimulation runs 3- and 5-node clusters through network faults,
// partitions and crashes, checking the Raft safety properties after every
// step and liveness after healing.
func TestSimulation(t *testing.T) {
	var seeds []uint64
	sizes := []int{3, 5}
	switch {
	case *flagSimSeed != 0:
		seeds = []uint64{*flagSimSeed}
		if *flagSimNodes != 0 {
			sizes = []int{*flagSimNodes}
		}
	default:
		for i, s := range simCorpus {
			if i%simCorpusScale == 0 {
				seeds = append(seeds, s)
			}
		}
		random := 2 + *flagSimSeeds
		for range random {
			seeds = append(seeds, rand.Uint64())
		}
	}
	var total simStats
	violations := 0
	start := time.Now()
	for _, nodes := range sizes {
		for _, seed := range seeds {
			stats := runSimSeed(t, defaultSimConfig(seed, nodes))
			total.add(stats)
			if t.Failed() {
				violations++
				if violations > 3 {
					t.FailNow()
				}
			}
		}
	}
	fmt.Printf("raft simulation: seeds=%d steps=%d crashes=%d partitions=%d elections=%d committed=%d violations=%d virtual=%v wall=%v\n",
		len(seeds)*len(sizes), total.steps, total.crashes, total.partitions, total.elections, total.committed, violations,
		total.virtual.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
}

// TestSimulationIsDeterministic runs one seed twice and compares.
func TestSimulationIsDeterministic(t *testing.T) {
	cfg := defaultSimConfig(42, 3)
	cfg.steps = 1500
	a, va := newSim(cfg).run()
	b, vb := newSim(cfg).run()
	if a != b || (va == nil) != (vb == nil) {
		t.Fatalf("same seed, different runs: %+v %v / %+v %v", a, va, b, vb)
	}
}

// findViolation runs seeds 1..maxSeeds of cfg and returns the first
// violation of the given kind (any kind when kind is empty) and its seed.
func findViolation(cfg simConfig, maxSeeds int, kind string) (uint64, *simViolation) {
	for seed := uint64(1); seed <= uint64(maxSeeds); seed++ {
		cfg.seed = seed
		if _, v := newSim(cfg).run(); v != nil && (kind == "" || v.kind == kind) {
			return seed, v
		}
	}
	return 0, nil
}

// crashHeavyConfig makes elections frequent and contested and crashes
// common, with quick restarts: the conditions under which faulty storage
// shows.
func crashHeavyConfig(nodes int) simConfig {
	cfg := defaultSimConfig(0, nodes)
	cfg.steps = 4000
	cfg.faultEvery = 10 * time.Millisecond
	cfg.crashProb = 0.5
	cfg.partitionProb = 0
	cfg.restartMin = time.Millisecond
	cfg.restartMax = 10 * time.Millisecond
	cfg.electionTimeout = 20 * time.Millisecond
	cfg.heartbeat = 5 * time.Millisecond
	cfg.disablePreVote = true
	return cfg
}

// TestSimulationCatchesForgottenVote shows the election-safety checker
// bites: a stable store that loses the vote on restart lets a node vote
// twice in one term, and the simulation finds two leaders of a term.
func TestSimulationCatchesForgottenVote(t *testing.T) {
	cfg := crashHeavyConfig(3)
	cfg.memLogOnly = true // the vote store is what is under test; keep it fast
	cfg.forgetVote = true
	seed, v := findViolation(cfg, 60, "election safety")
	if v == nil {
		t.Fatalf("forgotten votes: got %v (seed %d), want an election safety violation within 60 seeds", v, seed)
	}
	t.Logf("seed %d: %v", seed, v)
	cfg.forgetVote = false
	if seed, v := findViolation(cfg, 5, ""); v != nil {
		t.Fatalf("control run with a correct store: seed %d: %v", seed, v)
	}
}

// TestSimulationCatchesEarlyDurableLog shows the acknowledged-proposal
// checker bites: a log that reports entries durable before syncing them
// loses acknowledged entries in crashes.
func TestSimulationCatchesEarlyDurableLog(t *testing.T) {
	cfg := crashHeavyConfig(3)
	cfg.lyingLog = true
	cfg.noRestartCheck = true
	seed, v := findViolation(cfg, 60, "lost acknowledged proposal")
	if v == nil {
		t.Fatalf("lying log: got %v (seed %d), want a lost acknowledged proposal within 60 seeds", v, seed)
	}
	t.Logf("seed %d: %v", seed, v)
	cfg.lyingLog = false
	if seed, v := findViolation(cfg, 5, ""); v != nil {
		t.Fatalf("control run with a correct log: seed %d: %v", seed, v)
	}
}
