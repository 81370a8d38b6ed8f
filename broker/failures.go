package broker

import (
	"cmp"
	"errors"
	"slices"
	"time"

	"github.com/raftmq/raftmq/protocol"
	"github.com/raftmq/raftmq/raft"
)

// Replica failures. A partition replica's Raft group stops when its log
// fails to append or sync, or its state machine fails (raft.Group.Stopped):
// the group is then silent and its proposals fail (a sync or apply that
// was running may still finish). The other replicas go on (a leader's followers elect
// another leader when its heartbeats stop). The broker's run loop finds
// such a replica at its next tick, stops it (keeping its data), logs it at
// error level, reports it in its status (BrokerStatus.FailedReplicas, the
// cluster status's failed column, raftmq_replica_failures_total) and
// restarts it after a backoff that doubles with each failure in a row:
// Config.ReplicaRestartBackoff, then twice that, up to 64 times it. A
// transient fault (a full disk whose retention or operator freed space, a
// flaky device) then heals without a broker restart; a persistent one
// keeps failing, at most once per backoff.
//
// The restart reopens the log as a crash restart would, with one more
// step: it cuts the log back to the last index a sync made durable before
// the failure. After a failed fsync, Linux may mark the written pages
// clean while they never reached the disk, and they read back as if
// written: a log that kept them could count entries as durable that a
// power loss would take. Cut, those entries come back from the leader as
// after any crash that lost unsynced entries, which Raft handles (the
// replica never acknowledged them). A restart whose cut itself failed to
// sync finds, next time, the cut tail in the operating system's cache and
// does not cut again; what the disk holds past it is then left to the
// next appends and to recovery (left as it is: it takes a second failure
// in a row at the same place).
//
// Until a restarted replica has run for failureMemory, it is unstable: it
// does not campaign early as its partition's preferred leader, and the
// leaders of its partitions do not hand it the leadership (balanceLeaders
// reads BrokerStatus.UnstableReplicas).

// The controller replica of a bootstrap broker is not restarted: the
// broker reads b.controller everywhere without a lock, as it never
// changes. A controller replica that an error stopped reports a follower
// that knows no leader (so the broker stops answering as the controller
// leader, and the other voters elect one if they are a quorum); the broker
// logs it once, reports it (BrokerStatus.ControllerError) and counts itself
// not ready (/readyz) until it is restarted.

// controllerError is why the controller replica stopped on its own, nil
// while it runs (or when the broker holds none, or closed it).
func (b *Broker) controllerError() error {
	if b.controller == nil {
		return nil
	}
	select {
	case <-b.controller.group.Stopped():
	default:
		return nil
	}
	if err := b.controller.group.Err(); !errors.Is(err, raft.ErrClosed) {
		return err
	}
	return nil
}

// replicaFailure is a replica the broker stopped after an error (under
// b.mu).
type replicaFailure struct {
	topic     string
	partition uint32
	err       error
	failures  int // in a row: reset when the replica ran failureMemory
	since     time.Time
	retryAt   time.Time
	// cutAfter is the log's last durable index when it failed: the
	// restart cuts the log after it (cut: known; a replica that failed to
	// start has none).
	cutAfter uint64
	cut      bool
	// restarted is when the replica last started again; zero while it is
	// stopped.
	restarted time.Time
}

// down reports whether f is a replica stopped after a failure and not
// restarted yet (nil: no failure on record).
func (f *replicaFailure) down() bool {
	return f != nil && f.restarted.IsZero()
}

// maxRestartBackoffFactor bounds the restart backoff at this many times
// Config.ReplicaRestartBackoff.
const maxRestartBackoffFactor = 64

// failureMemory is how long a restarted replica must run before its next
// failure counts as the first one again.
func (b *Broker) failureMemory() time.Duration {
	return 2 * maxRestartBackoffFactor * b.restartBackoff()
}

func (b *Broker) restartBackoff() time.Duration {
	if b.cfg.ReplicaRestartBackoff > 0 {
		return b.cfg.ReplicaRestartBackoff
	}
	return DefaultConfig().ReplicaRestartBackoff
}

// backoffAfter is the wait before restarting a replica that failed n times
// in a row.
func (b *Broker) backoffAfter(n int) time.Duration {
	return b.restartBackoff() * time.Duration(min(1<<min(n-1, 30), maxRestartBackoffFactor))
}

// superviseReplicas stops the replicas whose group stopped on its own and
// restarts, through reconcileReplicas, those whose backoff has passed. It
// runs on the run loop's tick.
func (b *Broker) superviseReplicas(now time.Time) {
	if err := b.controllerError(); err != nil && b.controllerFailed.CompareAndSwap(false, true) {
		b.metrics.replicaFailures.Inc()
		b.logger.Error("controller replica stopped by an error; this broker is not ready until it restarts", "err", err)
	}
	// Read-locked: this runs every tick, beside every request's replicaFor.
	b.mu.RLock()
	var stopped []*partitionReplica
	for _, r := range b.groups {
		select {
		case <-r.group.Stopped():
			stopped = append(stopped, r)
		default:
		}
	}
	due := false
	var expired []uint64
	for id, f := range b.failed {
		switch {
		case f.down():
			due = due || !now.Before(f.retryAt)
		case now.Sub(f.restarted) >= b.failureMemory():
			expired = append(expired, id)
		}
	}
	closing := b.closing
	b.mu.RUnlock()
	type stable struct {
		r        *partitionReplica
		replicas []uint64
	}
	var stableAgain []stable
	if len(expired) > 0 {
		b.mu.Lock()
		for _, id := range expired {
			// Only the run loop changes b.failed: the records are as read.
			delete(b.failed, id)
			if r := b.groups[id]; r != nil {
				stableAgain = append(stableAgain, stable{r, b.replicasLocked(r)})
			}
		}
		b.mu.Unlock()
	}
	for _, r := range stopped {
		b.replicaFailed(r, now)
	}
	for _, s := range stableAgain {
		b.followPreferredLeader(s.r, s.replicas)
	}
	if due && !closing {
		b.reconcileReplicas()
	}
}

// replicaFailed stops a replica whose group stopped with an error, keeping
// its data, and schedules its restart.
func (b *Broker) replicaFailed(r *partitionReplica, now time.Time) {
	err := r.group.Err()
	if errors.Is(err, raft.ErrClosed) {
		return // removed by the broker itself
	}
	durable := r.log.DurableIndex()
	b.stopReplica(r, false)
	f := b.noteFailure(r.groupID, r.topic, r.partition, err, now, &durable)
	b.metrics.replicaFailures.Inc()
	b.logger.Error("partition replica stopped by an error; restarting it after a backoff",
		"topic", r.topic, "partition", r.partition, "group", r.groupID, "err", err,
		"durable_index", durable, "failures", f.failures, "restart_in", f.retryAt.Sub(now))
}

// noteFailure records a failure of a replica (stopped, with the index to
// cut its log after; or failing to restart, with nil) and returns a copy
// of its record.
func (b *Broker) noteFailure(groupID uint64, topic string, partition uint32, err error, now time.Time, cutAfter *uint64) replicaFailure {
	b.mu.Lock()
	defer b.mu.Unlock()
	f := b.failed[groupID]
	if f == nil || (!f.down() && now.Sub(f.restarted) >= b.failureMemory()) {
		f = &replicaFailure{topic: topic, partition: partition, since: now}
		b.failed[groupID] = f
	}
	if !f.down() {
		f.since = now
	}
	f.failures++
	f.err = err
	f.restarted = time.Time{}
	f.retryAt = now.Add(b.backoffAfter(f.failures))
	if cutAfter != nil {
		f.cutAfter, f.cut = *cutAfter, true
	}
	return *f
}

// unstable reports whether a replica of groupID on this broker failed
// within the failure memory, restarted or not: leadership is not handed to
// it (balanceLeaders, campaignsEarly), so that a flaky disk does not take
// the partition's leadership back after each restart only to lose it in
// an election timeout at its next failure.
func (b *Broker) unstable(groupID uint64) bool {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return b.failed[groupID] != nil
}

// unstableReplicas lists the groups of the unstable replicas, in order.
func (b *Broker) unstableReplicas() []uint64 {
	b.mu.RLock()
	defer b.mu.RUnlock()
	var out []uint64
	for id := range b.failed {
		out = append(out, id)
	}
	slices.Sort(out)
	return out
}

// restartDue reports whether reconcileReplicas may start a replica now: not
// while a failure's backoff runs.
func (b *Broker) restartDue(groupID uint64, now time.Time) bool {
	b.mu.RLock()
	defer b.mu.RUnlock()
	f := b.failed[groupID]
	return !f.down() || !now.Before(f.retryAt)
}

// failedCut returns the index after which a replica restarting after a
// failure cuts its log, and whether it must.
func (b *Broker) failedCut(groupID uint64) (uint64, bool) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	f := b.failed[groupID]
	if !f.down() || !f.cut {
		return 0, false
	}
	return f.cutAfter, true
}

// down reports whether groupID's replica here is stopped after a failure
// and not restarted yet.
func (b *Broker) down(groupID uint64) bool {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return b.failed[groupID].down()
}

// replicaStarted marks a failed replica as running again.
func (b *Broker) replicaStarted(groupID uint64, now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if f := b.failed[groupID]; f.down() {
		f.restarted = now
		b.logger.Info("partition replica restarted after a failure", "topic", f.topic, "partition", f.partition,
			"group", groupID, "failures", f.failures, "stopped_for", now.Sub(f.since).Round(time.Millisecond))
	}
}

// failedReplicas lists the replicas stopped after a failure and not
// restarted yet, in group order.
func (b *Broker) failedReplicas() []protocol.ReplicaFailure {
	b.mu.RLock()
	defer b.mu.RUnlock()
	var out []protocol.ReplicaFailure
	for id, f := range b.failed {
		if !f.down() {
			continue
		}
		out = append(out, protocol.ReplicaFailure{Topic: f.topic, Partition: f.partition, GroupID: id, Error: f.err.Error(),
			Failures: f.failures, Since: f.since, NextRestart: f.retryAt})
	}
	slices.SortFunc(out, func(x, y protocol.ReplicaFailure) int { return cmp.Compare(x.GroupID, y.GroupID) })
	return out
}

// failedOn lists the brokers that report their replica of groupID failed:
// this one from its own records, the others from their latest status if
// it is recent (a broker gone silent is down, not failed).
func (b *Broker) failedOn(groupID uint64, replicas []uint64) []uint64 {
	b.mu.RLock()
	defer b.mu.RUnlock()
	deadline := b.silenceDeadline()
	var out []uint64
	for _, id := range replicas {
		if id == b.cfg.ID {
			if b.failed[groupID].down() {
				out = append(out, id)
			}
			continue
		}
		report := b.reports[id]
		if report.seen.Before(deadline) {
			continue
		}
		for _, f := range report.status.FailedReplicas {
			if f.GroupID == groupID {
				out = append(out, id)
				break
			}
		}
	}
	return out
}
