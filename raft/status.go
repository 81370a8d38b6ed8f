package raft

import "github.com/raftmq/raftmq/protocol"

// Status is a snapshot of one replica of a group.
type Status struct {
	ID           uint64 // this node
	GroupID      uint64
	Role         Role
	Term         uint64
	Leader       uint64 // 0 when unknown
	CommitIndex  uint64
	AppliedIndex uint64
	LastIndex    uint64
	// Transferee is the node leadership is being handed to, 0 when none.
	Transferee uint64
	// ReadRounds counts the ReadIndex heartbeat rounds this replica started
	// as leader since it started (concurrent reads share rounds).
	ReadRounds uint64
	// Configuration is the configuration in effect (the newest appended
	// one; §6 takes effect when appended). Its slices must not be modified.
	Configuration protocol.RaftConfiguration
	// ConfigurationIndex is the index of the entry that set it (0 when it
	// comes from the bootstrap configuration or a snapshot).
	ConfigurationIndex uint64
	// Unconfirmed lists, on a leader, the other members (voters and
	// learners) that have not acknowledged the entry of the configuration
	// in effect (ConfigurationIndex), or that the leader has not heard
	// from within the election timeout, in order; nil otherwise. A member
	// that stopped answering stays in it. An owner that changes the
	// membership in steps waits until the members it keeps are confirmed
	// before it removes others.
	Unconfirmed []uint64
}
