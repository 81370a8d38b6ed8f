//go:build !race

package raft

// simDefaultSteps is the steps per seed of the default run.
const simDefaultSteps = 20000

// simCorpusScale keeps every corpus seed without the race detector.
const simCorpusScale = 1
