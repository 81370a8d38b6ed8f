//go:build race

package raft

// Under the race detector the simulation runs shorter and on fewer seeds;
// it is single-goroutine, so the race detector adds nothing but time.
const simDefaultSteps = 3000

const simCorpusScale = 4
