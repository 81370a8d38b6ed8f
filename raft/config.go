package raft

import (
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"slices"
	"time"

	"github.com/raftmq/raftmq/protocol"
	"github.com/raftmq/raftmq/snapshot"
)

// HostConfig configures a Host, the driver of every group on one node.
type HostConfig struct {
	// NodeID is this node's (broker's) id; never 0.
	NodeID uint64
	// Send hands outbound messages to the transport. It is called from the
	// Host's worker goroutines, possibly concurrently; it must not block for
	// long and must not call back into the Host synchronously except through
	// Step. The callee owns msgs (and may keep them); entry Data must not be
	// modified.
	Send func(msgs []protocol.RaftMessage)
	// Logger receives state changes; nil means slog.Default().
	Logger *slog.Logger
	// Workers is the number of goroutines running group cores.
	// Default GOMAXPROCS.
	Workers int
	// SyncWorkers is the number of goroutines that sync logs (fsync) in
	// parallel with everything else. Default 16.
	SyncWorkers int
	// ApplyWorkers is the number of goroutines applying committed entries
	// to state machines. Default GOMAXPROCS.
	ApplyWorkers int
	// Seed seeds the randomized election timeouts; 0 picks one at random.
	Seed uint64
}

// Validate reports a configuration error without changing c.
func (c *HostConfig) Validate() error {
	switch {
	case c.NodeID == 0:
		return errors.New("raft: HostConfig.NodeID must not be 0")
	case c.Send == nil:
		return errors.New("raft: HostConfig.Send must be set")
	case c.Workers < 0 || c.SyncWorkers < 0 || c.ApplyWorkers < 0:
		return errors.New("raft: HostConfig worker counts must not be negative")
	}
	return nil
}

func (c HostConfig) withDefaults() HostConfig {
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Workers == 0 {
		c.Workers = runtime.GOMAXPROCS(0)
	}
	if c.SyncWorkers == 0 {
		c.SyncWorkers = 16
	}
	if c.ApplyWorkers == 0 {
		c.ApplyWorkers = runtime.GOMAXPROCS(0)
	}
	return c
}

// GroupConfig configures one Raft group replica. Start from
// DefaultGroupConfig and set GroupID, Voters, Log, Stable and StateMachine.
type GroupConfig struct {
	GroupID uint64
	// Voters is the bootstrap configuration, used until the log holds a
	// configuration entry (membership.go). A replica joining an existing
	// group (a new learner) starts with none and learns it from the log.
	Voters       []uint64
	Log          LogStorage
	Stable       StableStorage
	StateMachine StateMachine
	// Applied is the last index the state machine already holds (0 for a
	// new one); the driver applies from Applied+1.
	Applied uint64
	// AppliedConfiguration, when it has voters, is the configuration in
	// effect at Applied: that of the newest EntryConfig entry the state
	// machine applied (what a snapshot's Meta.Configuration records), or
	// the bootstrap one when it applied none. With it the start-up search
	// for the configuration reads only the log after Applied; without it,
	// the log back to its newest config entry, which is all of the log
	// after the newest snapshot when the configuration did not change
	// since (about a second per GiB of log).
	AppliedConfiguration protocol.RaftConfiguration
	// ElectionTimeout is the minimum election timeout; each replica picks a
	// random timeout in [ElectionTimeout, 2*ElectionTimeout). Default 1s.
	ElectionTimeout time.Duration
	// HeartbeatInterval is how often a leader sends heartbeats. Default
	// 100ms; must be below ElectionTimeout.
	HeartbeatInterval time.Duration
	// CampaignEarly draws this replica's random election timeout from
	// [ElectionTimeout/2, ElectionTimeout) instead of [ElectionTimeout,
	// 2*ElectionTimeout). Given to one replica of a group, it makes that
	// replica the first to campaign when the replicas start together (a
	// new group), so its owner chooses the first leader; after a leader
	// fails it campaigns first too, though the others still reject its
	// (pre-)vote until their own leader lease has run out. Only the
	// election timer changes: CheckQuorum, the leader lease and the
	// abandonment of a leadership transfer keep ElectionTimeout. Needs
	// HeartbeatInterval below ElectionTimeout/2, so a heartbeat still
	// comes before the timer fires.
	CampaignEarly bool
	// MaxAppendBytes bounds the entries of one AppendEntries as encoded
	// (protocol.RaftEntrySize: data plus index, term, type and length, a
	// few bytes per entry) and the encoded chunk of one snapshot message;
	// either message adds at most protocol.MaxRaftHeaderSize bytes, so a
	// transport whose frames hold F bytes needs at most
	// F-protocol.MaxRaftHeaderSize. An entry larger than the bound is sent
	// alone, so the owner must bound entries to fit a frame too. Default
	// 1 MiB.
	MaxAppendBytes uint64
	// MaxInflightMessages bounds unacknowledged AppendEntries per follower.
	// Default 256.
	MaxInflightMessages int
	// MaxInflightBytes bounds unacknowledged entry bytes per follower.
	// Default 64 MiB.
	MaxInflightBytes uint64
	// MaxApplyBytes bounds one batch handed to StateMachine.Apply.
	// Default 4 MiB (a batch holds at least one entry).
	MaxApplyBytes uint64
	// EntryWindowBytes bounds the entry data the driver keeps in memory
	// of what it appended last, to replicate and apply it without reading
	// it back from the log (window.go). A busy group holds up to this
	// much; an idle one nothing. Default 32 MiB; 0 also means the default.
	EntryWindowBytes uint64
	// PromoteMaxLag is how many entries a learner may be behind the
	// leader's last index for PromoteLearner to accept it. Default 1000.
	PromoteMaxLag uint64
	// DisablePreVote turns off PreVote (thesis §9.6). On by default.
	DisablePreVote bool
	// DisableCheckQuorum turns off CheckQuorum and the leader lease it
	// enables. On by default.
	DisableCheckQuorum bool
	// Snapshots is the group's snapshot store (optional; nil disables
	// InstallSnapshot). Its owner writes snapshots into it and reports
	// each with Group.SnapshotTaken; a leader streams the newest to
	// followers that need compacted entries, and a follower receives into
	// it (see Restorer, LogResetter). The store must be the group's own.
	Snapshots *snapshot.Store
}

// DefaultGroupConfig returns the documented defaults.
func DefaultGroupConfig() GroupConfig {
	return GroupConfig{
		ElectionTimeout:     time.Second,
		HeartbeatInterval:   100 * time.Millisecond,
		MaxAppendBytes:      1 << 20,
		MaxInflightMessages: 256,
		MaxInflightBytes:    64 << 20,
		MaxApplyBytes:       4 << 20,
		EntryWindowBytes:    defaultWindowBytes,
		PromoteMaxLag:       1000,
	}
}

// Validate reports a configuration error without changing c. Zero
// durations and limits are errors; use DefaultGroupConfig.
func (c *GroupConfig) Validate() error {
	switch {
	case c.GroupID == 0:
		return errors.New("raft: GroupConfig.GroupID must not be 0")
	case c.Log == nil || c.Stable == nil || c.StateMachine == nil:
		return errors.New("raft: GroupConfig needs Log, Stable and StateMachine")
	case c.ElectionTimeout <= 0 || c.HeartbeatInterval <= 0:
		return errors.New("raft: GroupConfig timeouts must be positive")
	case c.HeartbeatInterval >= c.ElectionTimeout:
		return fmt.Errorf("raft: HeartbeatInterval %v must be below ElectionTimeout %v", c.HeartbeatInterval, c.ElectionTimeout)
	case c.CampaignEarly && !c.CanCampaignEarly():
		return c.errCampaignEarly()
	case c.MaxAppendBytes == 0 || c.MaxInflightMessages <= 0 || c.MaxApplyBytes == 0:
		return errors.New("raft: GroupConfig limits must be positive")
	case slices.Contains(c.Voters, 0):
		return errors.New("raft: voter id 0 is reserved")
	case len(c.AppliedConfiguration.Voters) > 0 && c.AppliedConfiguration.Validate() != nil:
		return fmt.Errorf("raft: GroupConfig.AppliedConfiguration: %w", c.AppliedConfiguration.Validate())
	}
	return nil
}

// errCampaignEarly is the error for CampaignEarly where CanCampaignEarly
// is false.
func (c *GroupConfig) errCampaignEarly() error {
	return fmt.Errorf("raft: CampaignEarly needs HeartbeatInterval %v below half of ElectionTimeout %v", c.HeartbeatInterval, c.ElectionTimeout)
}

// CanCampaignEarly reports whether c's timings allow CampaignEarly: a
// heartbeat interval below half the election timeout.
func (c *GroupConfig) CanCampaignEarly() bool {
	return c.HeartbeatInterval < c.ElectionTimeout/2
}

func (c *GroupConfig) coreConfig(nodeID uint64, hs HardState, seed uint64) coreConfig {
	base, baseIndex := c.snapshotBaseConfiguration()
	// The state machine's configuration as of Applied covers the log up to
	// Applied. Not when the log lost applied entries in a crash: the
	// configuration of what it holds may be an older one.
	if len(c.AppliedConfiguration.Voters) > 0 && c.Applied >= baseIndex && c.Applied <= c.Log.LastIndex() {
		base, baseIndex = c.AppliedConfiguration, c.Applied
	}
	return coreConfig{
		ID:                  nodeID,
		Configuration:       base,
		ConfigurationIndex:  baseIndex,
		Voters:              c.Voters,
		Log:                 c.Log,
		HardState:           hs,
		Applied:             c.Applied,
		ElectionTimeout:     c.ElectionTimeout,
		HeartbeatInterval:   c.HeartbeatInterval,
		CampaignEarly:       c.CampaignEarly,
		MaxAppendBytes:      c.MaxAppendBytes,
		MaxInflightMessages: c.MaxInflightMessages,
		MaxInflightBytes:    c.MaxInflightBytes,
		MaxApplyBytes:       c.MaxApplyBytes,
		DisablePreVote:      c.DisablePreVote,
		DisableCheckQuorum:  c.DisableCheckQuorum,
		Seed:                seed,
	}
}

// snapshotBaseConfiguration is the configuration of the newest stored
// snapshot that covers the log's compacted prefix (index at least
// FirstIndex-1), the base under the log's own config entries on restart;
// the zero configuration when there is none.
func (c *GroupConfig) snapshotBaseConfiguration() (protocol.RaftConfiguration, uint64) {
	if c.Snapshots == nil {
		return protocol.RaftConfiguration{}, 0
	}
	info, ok := c.Snapshots.Latest()
	if !ok || info.Meta.Index+1 < c.Log.FirstIndex() {
		return protocol.RaftConfiguration{}, 0
	}
	conf := snapshotConfiguration(info.Meta.Configuration)
	if len(conf.Voters) == 0 {
		return conf, 0
	}
	return conf, info.Meta.Index
}
