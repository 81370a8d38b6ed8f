package raft

import "time"

// progressState is how the leader replicates to one follower (the flow
// control of etcd raft's Progress, described in the package documentation).
type progressState uint8

const (
	// probeState: the leader does not know where the follower's log matches
	// its own; it sends one AppendEntries at a time and waits for the answer.
	probeState progressState = iota
	// replicateState: the follower's log is known to match up to match; the
	// leader streams AppendEntries optimistically, bounded by inflights.
	replicateState
	// snapshotState: the follower needs entries the leader compacted away;
	// a snapshot is being streamed to it and AppendEntries wait.
	snapshotState
)

func (s progressState) String() string {
	switch s {
	case replicateState:
		return "replicate"
	case snapshotState:
		return "snapshot"
	}
	return "probe"
}

// progress is the leader's view of one follower (Figure 2: nextIndex,
// matchIndex) plus flow control.
type progress struct {
	match, next uint64
	state       progressState
	// probeSent pauses a probing follower until it answers or a heartbeat
	// response arrives.
	probeSent bool
	// recentActive records any message from the follower since the last
	// CheckQuorum round.
	recentActive bool
	// heardAt is when the leader last had a message from the follower
	// (heard: ever, in this leadership).
	heardAt time.Duration
	heard   bool
	// sentCommit is the commit index last sent, so a commit advance reaches
	// an up-to-date follower without waiting for the next heartbeat.
	sentCommit uint64
	// receivedAtHeartbeat is the follower's received index (what it holds
	// matching this leader, durable or not) in the previous heartbeat
	// response; no new entry received over a whole heartbeat interval
	// while entries are outstanding means messages were lost, and the
	// leader probes again. A follower that received everything but syncs
	// slowly is not resent anything.
	receivedAtHeartbeat uint64
	// snapshotSince is when the current snapshot transfer started.
	snapshotSince time.Duration
	// readAck is the newest ReadIndex round the follower acknowledged.
	readAck   uint64
	inflights inflights
}

func (p *progress) becomeProbe() {
	p.state = probeState
	p.probeSent = false
	p.next = max(p.next, p.match+1)
	p.inflights.reset()
}

// becomeSnapshot pauses AppendEntries while a snapshot streams (since now).
func (p *progress) becomeSnapshot(now time.Duration) {
	p.state = snapshotState
	p.probeSent = false
	p.snapshotSince = now
	p.inflights.reset()
}

func (p *progress) becomeReplicate() {
	p.state = replicateState
	p.probeSent = false
	p.next = p.match + 1
	p.inflights.reset()
}

// maybeUpdate records that the follower matches up to index; it reports
// whether match advanced.
func (p *progress) maybeUpdate(index uint64) bool {
	if index <= p.match {
		return false
	}
	p.match = index
	p.next = max(p.next, index+1)
	p.inflights.freeTo(index)
	return true
}

// maybeDecreaseTo handles a rejection of the AppendEntries whose prevLogIndex
// was rejected; probeHint is the leader's largest index that may match (from
// the follower's conflict hint). It reports false for a stale rejection.
func (p *progress) maybeDecreaseTo(rejected, probeHint uint64) bool {
	if p.state == replicateState {
		if rejected <= p.match {
			return false // an answer to something older than what we know matches
		}
	} else if rejected != p.next-1 {
		return false // not the probe outstanding
	}
	p.next = max(min(rejected, probeHint+1), p.match+1)
	p.probeSent = false
	return true
}

// paused reports whether the leader must not send another AppendEntries now.
func (p *progress) paused() bool {
	if p.state == snapshotState {
		return true
	}
	if p.state == probeState {
		return p.probeSent
	}
	return p.inflights.full()
}

// inflights bounds the AppendEntries a replicating follower has not
// acknowledged, by count and by bytes. It is a ring of the last index and
// data size of each message.
type inflights struct {
	maxCount int
	maxBytes uint64
	start    int
	count    int
	bytes    uint64
	buf      []inflight
}

type inflight struct {
	last  uint64
	bytes uint64
}

func (in *inflights) full() bool {
	return in.count >= in.maxCount || (in.maxBytes > 0 && in.bytes >= in.maxBytes)
}

func (in *inflights) add(last, bytes uint64) {
	if in.buf == nil {
		in.buf = make([]inflight, in.maxCount)
	}
	i := (in.start + in.count) % len(in.buf)
	in.buf[i] = inflight{last: last, bytes: bytes}
	in.count++
	in.bytes += bytes
}

// freeTo releases every message whose last index is at most index.
func (in *inflights) freeTo(index uint64) {
	for in.count > 0 {
		f := in.buf[in.start]
		if f.last > index {
			return
		}
		in.bytes -= f.bytes
		in.start = (in.start + 1) % len(in.buf)
		in.count--
	}
}

func (in *inflights) reset() {
	in.start, in.count, in.bytes = 0, 0, 0
}
