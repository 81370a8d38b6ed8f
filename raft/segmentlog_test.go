package raft

import "github.com/raftmq/raftmq/segmentlog"

// segmentlog.Log implements LogStorage directly, without an adapter.
var _ LogStorage = (*segmentlog.Log)(nil)
