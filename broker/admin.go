package broker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/raftmq/raftmq/protocol"
)

// adminTimeout bounds an admin request, forwarding included.
const adminTimeout = 15 * time.Second

// topicLeaderWait bounds how long a topic create waits for its partitions to
// elect leaders before replying, so a producer can use the topic at once.
const topicLeaderWait = 5 * time.Second

type registerBrokerRequest struct {
	Version int    `json:"v"`
	Broker  uint64 `json:"broker"`
}

// adminError is the reply of an admin request that failed before reaching
// its handler; every admin reply type has the same "error" field.
type adminError struct {
	Version int             `json:"v"`
	Error   *protocol.Error `json:"error"`
}

// handleAdmin serves <prefix>.api.admin.<op> (any broker) and
// <prefix>.api.broker.<id>.admin.<op> (forwarded to this broker as the
// controller leader).
func (b *Broker) handleAdmin(msg *nats.Msg) {
	ctx, cancel := context.WithTimeout(context.Background(), adminTimeout)
	defer cancel()
	op, forwarded := strings.CutPrefix(msg.Subject, fmt.Sprintf("%s.api.broker.%d.admin.", b.prefix, b.cfg.ID))
	if !forwarded {
		op = strings.TrimPrefix(msg.Subject, b.prefix+".api.admin.")
	}
	var reply any
	if op == protocol.AdminDescribeTopic || op == protocol.AdminListTopics || op == protocol.AdminClusterStatus {
		// Topics and the cluster status are described by the controller
		// leader once it applied every committed command, so a describe,
		// list or status that follows an acknowledged create, delete or
		// reassignment sees it, whichever broker the request reached.
		// (The other brokers learn metadata from a broadcast that may
		// still be in flight.) AdminMetadata, which producers and
		// consumers use to route, stays with any broker: clients wait
		// out an unknown topic there.
		if !b.atControllerLeader(ctx, msg, op, forwarded, "lead the controller") {
			return
		}
		for attempt := 0; !b.controllerCaughtUp(); attempt++ {
			if ctx.Err() != nil || !b.isControllerLeader() {
				b.respondJSON(msg, adminError{protocol.APIVersion, protocol.Errorf(protocol.CodeNotReady, "broker %d has not applied the controller log yet", b.cfg.ID)})
				return
			}
			waitBackoff(ctx, attempt)
		}
		b.adoptMetadata(b.controller.state.current())
	}
	switch op {
	case protocol.AdminCreateTopic, protocol.AdminDeleteTopic, protocol.AdminRegisterBroker,
		protocol.AdminReassignPartition, protocol.AdminReplaceBroker, protocol.AdminReassignDone,
		protocol.AdminAddController, protocol.AdminRemoveController:
		if !b.atControllerLeader(ctx, msg, op, forwarded, "lead the controller") {
			return
		}
		switch op {
		case protocol.AdminCreateTopic:
			reply = b.createTopic(ctx, msg.Data)
		case protocol.AdminDeleteTopic:
			reply = b.deleteTopic(ctx, msg.Data)
		case protocol.AdminRegisterBroker:
			reply = b.registerBroker(ctx, msg.Data)
		default:
			reply = b.membershipAdmin(ctx, op, msg.Data)
		}
	case protocol.AdminGroupJoin, protocol.AdminGroupHeartbeat, protocol.AdminGroupLeave, protocol.AdminGroupList,
		protocol.AdminGroupDescribe, protocol.AdminGroupDelete, protocol.AdminGroupReset:
		if !b.atControllerLeader(ctx, msg, op, forwarded, "coordinate groups") {
			return
		}
		reply = b.groupAdmin(ctx, op, msg.Data)
	case protocol.AdminDescribeTopic:
		var req protocol.TopicRequest
		if err := json.Unmarshal(msg.Data, &req); err != nil {
			reply = adminError{protocol.APIVersion, protocol.Errorf(protocol.CodeMalformedRequest, "%v", err)}
			break
		}
		m := b.currentMetadata()
		if m.Topics[req.Name] == nil {
			reply = protocol.TopicReply{Version: protocol.APIVersion, Error: protocol.Errorf(protocol.CodeUnknownTopic, "topic %q does not exist", req.Name)}
			break
		}
		info := b.topicInfo(m, req.Name)
		reply = protocol.TopicReply{Version: protocol.APIVersion, Topic: &info}
	case protocol.AdminListTopics:
		m := b.currentMetadata()
		topics := []protocol.TopicInfo{}
		for _, name := range m.sortedTopicNames() {
			topics = append(topics, b.topicInfo(m, name))
		}
		reply = protocol.ListTopicsReply{Version: protocol.APIVersion, Topics: topics}
	case protocol.AdminMetadata, protocol.AdminClusterStatus:
		var req protocol.MetadataRequest
		if len(msg.Data) > 0 {
			if err := json.Unmarshal(msg.Data, &req); err != nil {
				reply = adminError{protocol.APIVersion, protocol.Errorf(protocol.CodeMalformedRequest, "%v", err)}
				break
			}
		}
		reply = b.metadataReply(req.Topics)
	default:
		reply = adminError{protocol.APIVersion, protocol.Errorf(protocol.CodeMalformedRequest, "unknown admin operation %q", op)}
	}
	b.respondJSON(msg, reply)
}

// atControllerLeader reports whether this broker leads the controller, so
// it serves the request itself. Otherwise the request is handled here: a
// request forwarded to this broker is answered not_leader (saying it does
// not <role>; the forwarding broker tries the new leader), any other is
// forwarded to the controller leader.
func (b *Broker) atControllerLeader(ctx context.Context, msg *nats.Msg, op string, forwarded bool, role string) bool {
	if b.isControllerLeader() {
		return true
	}
	if forwarded {
		b.respondJSON(msg, adminError{protocol.APIVersion, &protocol.Error{Code: protocol.CodeNotLeader, Leader: b.controllerLeader(),
			Message: fmt.Sprintf("broker %d does not %s", b.cfg.ID, role)}})
		return false
	}
	b.forwardToController(ctx, msg, op)
	return false
}

// forwardToController relays an admin request to the controller leader and
// its reply back, retrying while the leader is unknown or moving. When no
// controller leader is known or reachable for noControllerLeaderWait in a
// row, it answers not_ready at once instead of holding the request for the
// whole admin timeout (a cluster status is then answered from this
// broker's own view, which is what an operator needs to see then).
func (b *Broker) forwardToController(ctx context.Context, msg *nats.Msg, op string) {
	var last *protocol.Error
	var leaderlessSince time.Time // zero while a leader is known and reachable
	leaderless := func(now time.Time) bool {
		if leaderlessSince.IsZero() {
			leaderlessSince = now
		}
		return now.Sub(leaderlessSince) >= b.noControllerLeaderWait()
	}
	for attempt := 0; ctx.Err() == nil; attempt++ {
		if attempt > 0 {
			select {
			case <-ctx.Done():
			case <-time.After(min(time.Duration(attempt)*100*time.Millisecond, time.Second)):
			}
		}
		leader := b.controllerLeader()
		if leader == 0 || (leader == b.cfg.ID && !b.isControllerLeader()) {
			if leaderless(time.Now()) {
				b.answerWithoutController(msg, op)
				return
			}
			last = protocol.Errorf(protocol.CodeNotReady, "the controller has no leader yet")
			continue
		}
		if leader == b.cfg.ID {
			b.handleAdmin(&nats.Msg{Subject: protocol.SubjectBrokerAdmin(b.prefix, b.cfg.ID, op), Data: msg.Data, Header: msg.Header, Reply: msg.Reply, Sub: msg.Sub})
			return
		}
		response, err := b.nc.RequestMsgWithContext(ctx, &nats.Msg{
			Subject: protocol.SubjectBrokerAdmin(b.prefix, leader, op), Data: msg.Data, Header: msg.Header,
		})
		if errors.Is(err, nats.ErrNoResponders) {
			// The broker named as leader is gone (a stale status report).
			if leaderless(time.Now()) {
				b.answerWithoutController(msg, op)
				return
			}
		} else {
			leaderlessSince = time.Time{}
		}
		if err != nil {
			last = protocol.Errorf(protocol.CodeTimeout, "controller leader %d: %v", leader, err)
			continue
		}
		var probe adminError
		if data, err := messagePayload(response); err == nil && json.Unmarshal(data, &probe) == nil &&
			probe.Error != nil && probe.Error.Code == protocol.CodeNotLeader {
			last = probe.Error
			continue
		}
		if msg.Reply != "" {
			// The header says how the payload is encoded.
			_ = msg.RespondMsg(&nats.Msg{Data: response.Data, Header: response.Header})
		}
		return
	}
	if last == nil {
		last = protocol.Errorf(protocol.CodeTimeout, "no controller leader answered")
	}
	b.respondJSON(msg, adminError{protocol.APIVersion, last})
}

// noControllerLeaderWait is how long an admin request waits for a
// controller leader to be known: a few election timeouts, room for an
// election after the leader failed (a split vote included) and for the
// status reports that announce the new leader; never less than
// minNoControllerLeaderWait.
func (b *Broker) noControllerLeaderWait() time.Duration {
	return max(5*b.cfg.ElectionTimeout, minNoControllerLeaderWait) + 2*b.cfg.StatusInterval
}

// minNoControllerLeaderWait keeps short election timeouts from failing
// admin requests during an ordinary election: on a busy machine, or while
// a whole cluster restarts, one can take a few seconds.
const minNoControllerLeaderWait = 3 * time.Second

// answerWithoutController answers an admin request that found no
// controller leader: not_ready, saying so, except a cluster status, which
// is answered from this broker's own view with no controller leader.
func (b *Broker) answerWithoutController(msg *nats.Msg, op string) {
	if op == protocol.AdminClusterStatus {
		reply := b.metadataReply(nil)
		reply.ControllerLeader = 0
		b.respondJSON(msg, reply)
		return
	}
	voters := "its voters"
	if v := b.controllerVoters(); len(v) > 0 {
		voters = fmt.Sprintf("its voters %v", v)
	}
	b.respondJSON(msg, adminError{protocol.APIVersion, protocol.Errorf(protocol.CodeNotReady,
		"broker %d: the controller has had no reachable leader for %v; %s may have lost their quorum (are a majority of them running?)",
		b.cfg.ID, b.noControllerLeaderWait(), voters)})
}

func (b *Broker) createTopic(ctx context.Context, data []byte) protocol.TopicReply {
	fail := func(e *protocol.Error) protocol.TopicReply {
		return protocol.TopicReply{Version: protocol.APIVersion, Error: e}
	}
	var req protocol.CreateTopicRequest
	if err := json.Unmarshal(data, &req); err != nil {
		return fail(protocol.Errorf(protocol.CodeMalformedRequest, "%v", err))
	}
	if err := protocol.ValidateTopicName(req.Name); err != nil {
		return fail(protocol.Errorf(protocol.CodeInvalidArgument, "%v", err))
	}
	if req.Partitions == 0 {
		req.Partitions = b.cfg.DefaultPartitions
	}
	if req.Partitions < 0 || req.Partitions > b.cfg.MaxPartitions {
		return fail(protocol.Errorf(protocol.CodeInvalidArgument, "partition count %d must be in 1..%d", req.Partitions, b.cfg.MaxPartitions))
	}
	if req.Replicas == 0 {
		req.Replicas = min(3, len(b.controller.state.current().Brokers))
	}
	if req.RetentionMs < -1 || req.RetentionBytes < -1 {
		return fail(protocol.Errorf(protocol.CodeInvalidArgument,
			"retention %d ms / %d bytes: each must be positive, 0 (the brokers' default) or -1 (no limit)", req.RetentionMs, req.RetentionBytes))
	}
	m, apiErr := b.proposeControl(ctx, controllerCommand{
		Op: opCreateTopic, Topic: req.Name, Partitions: req.Partitions, Replicas: req.Replicas, Time: time.Now(),
		RetentionMs: req.RetentionMs, RetentionBytes: req.RetentionBytes, CaseUnique: true,
	})
	if apiErr != nil {
		return fail(apiErr)
	}
	b.adoptMetadata(m)
	b.publishMetadata(m)
	if m.Topics[req.Name] == nil {
		// m is the metadata once the create applied with whatever was
		// committed behind it: a delete of the topic, say.
		return fail(protocol.Errorf(protocol.CodeUnknownTopic, "topic %q was created, then deleted by another request before this reply", req.Name))
	}
	b.waitForLeaders(ctx, m, req.Name)
	info := b.topicInfo(m, req.Name)
	return protocol.TopicReply{Version: protocol.APIVersion, Topic: &info}
}

// waitForLeaders waits until every partition of a topic has a known leader,
// or topicLeaderWait passes.
func (b *Broker) waitForLeaders(ctx context.Context, m *clusterMetadata, name string) {
	ctx, cancel := context.WithTimeout(ctx, topicLeaderWait)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		all := true
		for i := range m.Topics[name].Partitions {
			if b.leaderOf(name, uint32(i)) == 0 {
				all = false
				break
			}
		}
		if all {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

func (b *Broker) deleteTopic(ctx context.Context, data []byte) protocol.DeleteTopicReply {
	var req protocol.TopicRequest
	if err := json.Unmarshal(data, &req); err != nil {
		return protocol.DeleteTopicReply{Version: protocol.APIVersion, Error: protocol.Errorf(protocol.CodeMalformedRequest, "%v", err)}
	}
	m, apiErr := b.proposeControl(ctx, controllerCommand{Op: opDeleteTopic, Topic: req.Name, Time: time.Now()})
	if apiErr != nil {
		return protocol.DeleteTopicReply{Version: protocol.APIVersion, Error: apiErr}
	}
	b.adoptMetadata(m)
	b.publishMetadata(m)
	return protocol.DeleteTopicReply{Version: protocol.APIVersion}
}

func (b *Broker) registerBroker(ctx context.Context, data []byte) adminError {
	var req registerBrokerRequest
	if err := json.Unmarshal(data, &req); err != nil {
		return adminError{protocol.APIVersion, protocol.Errorf(protocol.CodeMalformedRequest, "%v", err)}
	}
	m, apiErr := b.proposeControl(ctx, controllerCommand{Op: opRegisterBroker, Broker: req.Broker, Time: time.Now()})
	if apiErr == nil {
		b.adoptMetadata(m)
	}
	return adminError{protocol.APIVersion, apiErr}
}

// registerIfNeeded asks the controller to add this broker to the cluster's
// broker list once it has metadata that lacks it.
func (b *Broker) registerIfNeeded() {
	m := b.currentMetadata()
	if m.Version == 0 || slices.Contains(m.Brokers, b.cfg.ID) {
		return
	}
	if !b.track() {
		return
	}
	go func() {
		defer b.requests.Done()
		data, _ := json.Marshal(registerBrokerRequest{Version: protocol.APIVersion, Broker: b.cfg.ID})
		ctx, cancel := context.WithTimeout(context.Background(), b.cfg.StatusInterval)
		defer cancel()
		if _, err := b.nc.RequestWithContext(ctx, protocol.SubjectAdmin(b.prefix, protocol.AdminRegisterBroker), data); err != nil {
			b.logger.Debug("broker registration pending", "err", err)
		}
	}()
}

// controllerLeader is the controller leader as this broker knows it.
func (b *Broker) controllerLeader() uint64 {
	if leader := b.controllerGroupLeader(); leader != 0 {
		return leader
	}
	b.mu.RLock()
	defer b.mu.RUnlock()
	leader, seen := uint64(0), time.Time{}
	for _, report := range b.reports {
		if report.status.ControllerLeader != 0 && report.seen.After(seen) {
			leader, seen = report.status.ControllerLeader, report.seen
		}
	}
	return leader
}

// topicInfo describes a topic with the leaders and commit indexes the
// brokers' status reports give.
func (b *Broker) topicInfo(m *clusterMetadata, name string) protocol.TopicInfo {
	t := m.Topics[name]
	info := protocol.TopicInfo{Name: name, Replicas: t.Replicas, CreatedAt: t.CreatedAt, RetentionMs: t.RetentionMs, RetentionBytes: t.RetentionBytes}
	for i, p := range t.Partitions {
		pi := protocol.PartitionInfo{Partition: uint32(i), Replicas: slices.Clone(p.Replicas), GroupID: p.GroupID}
		pi.Leader = b.leaderOf(name, uint32(i))
		st, ok := b.partitionStatusFrom(pi.Leader, p.GroupID)
		if ok {
			pi.CommitIndex, pi.HighWatermark = st.CommitIndex, st.HighWatermark
		}
		b.addMembership(&pi, p, st, ok)
		pi.Failed = b.failedOn(p.GroupID, p.runningOn())
		info.Partitions = append(info.Partitions, pi)
	}
	return info
}

// partitionStatusFrom is broker id's latest report on a group.
func (b *Broker) partitionStatusFrom(id, groupID uint64) (protocol.PartitionStatus, bool) {
	if id == b.cfg.ID {
		b.mu.RLock()
		r := b.groups[groupID]
		b.mu.RUnlock()
		if r != nil {
			return b.partitionStatus(r), true
		}
	}
	b.mu.RLock()
	defer b.mu.RUnlock()
	for _, p := range b.reports[id].status.Partitions {
		if p.GroupID == groupID {
			return p, true
		}
	}
	return protocol.PartitionStatus{}, false
}

func (b *Broker) metadataReply(topics []string) protocol.MetadataReply {
	m := b.currentMetadata()
	reply := protocol.MetadataReply{Version: protocol.APIVersion, ControllerLeader: b.controllerLeader(), Topics: []protocol.TopicInfo{}}
	if m.Version == 0 {
		reply.Error = protocol.Errorf(protocol.CodeNotReady, "broker %d has no cluster metadata yet", b.cfg.ID)
		return reply
	}
	reply.Controller = b.controllerMembership()
	alive, stopping := b.aliveBrokers(), b.stoppingBrokers()
	for _, id := range m.Brokers {
		reply.Brokers = append(reply.Brokers, protocol.BrokerInfo{ID: id, Alive: alive[id], Stopping: alive[id] && stopping[id]})
	}
	names := topics
	if len(names) == 0 {
		names = m.sortedTopicNames()
	}
	for _, name := range names {
		if m.Topics[name] == nil {
			reply.Error = protocol.Errorf(protocol.CodeUnknownTopic, "topic %q does not exist", name)
			continue
		}
		reply.Topics = append(reply.Topics, b.topicInfo(m, name))
	}
	return reply
}

// silenceDeadline is the time before which a broker's latest status
// report is too old to count: a broker is down after three status
// intervals of silence (Config.StatusInterval).
func (b *Broker) silenceDeadline() time.Time {
	return time.Now().Add(-3 * b.cfg.StatusInterval)
}

// aliveBrokers are the brokers whose status arrived in the last three
// status intervals (this one always).
func (b *Broker) aliveBrokers() map[uint64]bool {
	b.mu.RLock()
	defer b.mu.RUnlock()
	alive := map[uint64]bool{b.cfg.ID: true}
	deadline := b.silenceDeadline()
	for id, report := range b.reports {
		if report.seen.After(deadline) {
			alive[id] = true
		}
	}
	return alive
}

// stoppingBrokers is the set of brokers shutting down: this one when it
// is closing, the others by their latest status report.
func (b *Broker) stoppingBrokers() map[uint64]bool {
	b.mu.RLock()
	defer b.mu.RUnlock()
	stopping := map[uint64]bool{b.cfg.ID: b.closing}
	for id, report := range b.reports {
		if id != b.cfg.ID {
			stopping[id] = report.status.Stopping
		}
	}
	return stopping
}

func (b *Broker) partitionStatus(r *partitionReplica) protocol.PartitionStatus {
	st := r.group.Status()
	_, highWatermark, _ := r.state.visible()
	return protocol.PartitionStatus{
		Topic: r.topic, Partition: r.partition, GroupID: r.groupID, Role: st.Role.String(), Term: st.Term,
		Leader: st.Leader, CommitIndex: st.CommitIndex, AppliedIndex: st.AppliedIndex, HighWatermark: highWatermark,
		LastIndex: st.LastIndex, Voters: st.Configuration.Voters, OutgoingVoters: st.Configuration.OutgoingVoters,
		Learners: st.Configuration.Learners,
	}
}

// localStatus is this broker's BrokerStatus.
func (b *Broker) localStatus() protocol.BrokerStatus {
	b.mu.RLock()
	replicas := make([]*partitionReplica, 0, len(b.groups))
	for _, r := range b.groups {
		replicas = append(replicas, r)
	}
	stopping := b.closing
	b.mu.RUnlock()
	slices.SortFunc(replicas, func(x, y *partitionReplica) int { return int(x.groupID) - int(y.groupID) })
	status := protocol.BrokerStatus{Version: protocol.APIVersion, ID: b.cfg.ID, Ready: b.Ready(), Stopping: stopping,
		MetadataVersion: b.currentMetadata().Version, Partitions: []protocol.PartitionStatus{}}
	status.ControllerLeader = b.controllerGroupLeader()
	if b.isControllerLeader() {
		status.Controller = groupMembership(b.controller.group.Status().Configuration)
	}
	for _, r := range replicas {
		status.Partitions = append(status.Partitions, b.partitionStatus(r))
	}
	status.FailedReplicas = b.failedReplicas()
	status.UnstableReplicas = b.unstableReplicas()
	if err := b.controllerError(); err != nil {
		status.ControllerError = err.Error()
	}
	return status
}

func (b *Broker) publishStatus(status *protocol.BrokerStatus) {
	b.mu.Lock()
	b.reports[b.cfg.ID] = brokerReport{seen: time.Now(), status: *status}
	b.mu.Unlock()
	data, err := json.Marshal(status)
	if err != nil {
		return
	}
	b.publishLarge("status report", protocol.SubjectClusterStatus(b.prefix), data)
}

// decodeStatusReport decodes a status report published by another broker;
// false for an undecodable one or this broker's own.
func (b *Broker) decodeStatusReport(msg *nats.Msg) (protocol.BrokerStatus, bool) {
	var status protocol.BrokerStatus
	data, err := messagePayload(msg)
	if err != nil || json.Unmarshal(data, &status) != nil || status.ID == 0 || status.ID == b.cfg.ID {
		return status, false
	}
	return status, true
}

func (b *Broker) handleStatusReport(msg *nats.Msg) {
	status, ok := b.decodeStatusReport(msg)
	if !ok {
		return
	}
	b.mu.Lock()
	b.reports[status.ID] = brokerReport{seen: time.Now(), status: status}
	b.mu.Unlock()
}

// handleOtherAccountReport receives, on a broker that replicates in its
// server's peer account, the status reports published in the client
// account: those of brokers that replicate there (over TCP), which cannot
// reach this one. It logs each such broker once and uses nothing else of
// the report, which any client could have published.
func (b *Broker) handleOtherAccountReport(msg *nats.Msg) {
	status, ok := b.decodeStatusReport(msg)
	if !ok {
		return
	}
	// Such a broker never registers (it hears no metadata), so any id is
	// taken; a client posing as brokers can cause at most
	// maxOtherAccountBrokers lines.
	b.mu.Lock()
	first := !b.otherAccount[status.ID] && len(b.otherAccount) < maxOtherAccountBrokers
	if first {
		b.otherAccount[status.ID] = true
	}
	b.mu.Unlock()
	if first {
		b.logger.Error(otherAccountMessage, "other_broker", status.ID)
	}
}

// maxOtherAccountBrokers bounds how many brokers handleOtherAccountReport
// logs.
const maxOtherAccountBrokers = 16

// otherAccountMessage is logged once for a broker whose Raft traffic runs
// in another NATS account than this broker's: this one reaches its
// embedded server in-process (the peer account), the other over TCP.
const otherAccountMessage = "broker replicates in another NATS account: the two cannot reach each other; " +
	"a cluster's brokers must all embed their NATS servers or all use --nats-url (docs/adr/0005)"

// peerAccount reports whether this broker's Raft traffic runs in its
// server's peer account (a connection of its own, in-process).
func (b *Broker) peerAccount() bool { return b.peerNC != b.nc }

func (b *Broker) handleStatusRequest(msg *nats.Msg) {
	status := b.localStatus()
	b.respondJSON(msg, status)
}

func (b *Broker) publishMetadata(m *clusterMetadata) {
	data, err := json.Marshal(m)
	if err != nil {
		return
	}
	b.publishLarge("metadata broadcast", protocol.SubjectClusterMetadata(b.prefix), data)
}

func (b *Broker) handleMetadataBroadcast(msg *nats.Msg) {
	var m clusterMetadata
	data, err := messagePayload(msg)
	if err == nil {
		err = json.Unmarshal(data, &m)
	}
	if err != nil {
		b.logger.Warn("undecodable metadata broadcast", "err", err)
		return
	}
	if m.Topics == nil {
		m.Topics = map[string]*topicMeta{}
	}
	b.adoptMetadata(&m)
}
