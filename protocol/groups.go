package protocol

import (
	"encoding/binary"
	"fmt"
	"time"
)

// Group admin operations, the last tokens of <prefix>.api.admin.<op>.
const (
	AdminGroupJoin      = "group.join"
	AdminGroupHeartbeat = "group.heartbeat"
	AdminGroupLeave     = "group.leave"
	AdminGroupList      = "group.list"
	AdminGroupDescribe  = "group.describe"
	AdminGroupDelete    = "group.delete"
	AdminGroupReset     = "group.reset"
)

// SubjectBrokerCommit is broker id's offset commit subject.
func SubjectBrokerCommit(prefix string, id uint64) string {
	return brokerSubject(prefix, id, "group.commit")
}

// SubjectBrokerCommitted is broker id's committed-offset fetch subject.
func SubjectBrokerCommitted(prefix string, id uint64) string {
	return brokerSubject(prefix, id, "group.offsets")
}

// SubjectGroupChanged is published (empty body) by the coordinator when a
// group's membership or assignment changes; members subscribe and
// heartbeat at once instead of at their next interval.
func SubjectGroupChanged(prefix, group string) string { return prefix + ".group.changed." + group }

// MaxGroupNameLength bounds group and member names.
const MaxGroupNameLength = 200

// ValidateGroupName checks a consumer group name: 1 to MaxGroupNameLength
// characters from [A-Za-z0-9._-], with no empty dot-separated part (the
// name is part of the group's subjects, SubjectGroupChanged).
func ValidateGroupName(name string) error {
	return validateName("group name", name, MaxGroupNameLength, true)
}

// ValidateExistingGroupName checks a name that refers to a group which may
// exist already, as in a describe, an offset fetch, a reset or a delete:
// ValidateGroupName without its rule on empty dot-separated parts, which
// came later, so that groups named under the older rule can still be read,
// reset and deleted. Joins and commits use ValidateGroupName.
func ValidateExistingGroupName(name string) error {
	return validateName("group name", name, MaxGroupNameLength, false)
}

// ValidateMemberID checks a consumer group member id: 1 to
// MaxGroupNameLength characters from [A-Za-z0-9._-].
func ValidateMemberID(id string) error {
	return validateName("member id", id, MaxGroupNameLength, false)
}

// GroupPartition names a partition, with the assignment epoch where one
// applies (0 otherwise).
type GroupPartition struct {
	Topic     string `json:"topic"`
	Partition uint32 `json:"partition"`
	Epoch     uint64 `json:"epoch,omitempty"`
}

// Offset commit operations (OffsetCommitRequest.Op).
const (
	// CommitOpCommit commits offsets; each partition's Epoch must not be
	// older than the partition's current epoch for the group.
	CommitOpCommit = ""
	// CommitOpReset sets offsets regardless of the stored epoch (admin
	// reset-offsets; the coordinator checks the group has no members).
	// The partition leader resolves ResetTo. With a partition's Epoch
	// set (the coordinator sets the controller index of its check) the
	// reset is refused with CodeGroupNotEmpty where a member claimed the
	// partition with a higher epoch since, and with CodeStaleEpoch where
	// a later delete or reset applied; once applied it fences commits
	// and claims with a nonzero epoch below it, as a delete does.
	CommitOpReset = "reset"
	// CommitOpDelete deletes the group's state of the partitions. With a
	// partition's Epoch set (the coordinator sets the delete's controller
	// index) the partition keeps a tombstone that fences the group's
	// members of before the delete: a commit or claim with a nonzero epoch
	// below it is stale. Each such delete replaces the fence. A delete
	// keeps a record whose epoch is above its own (the group was created
	// again after it).
	CommitOpDelete = "delete"
	// CommitOpDeleteAndFence is CommitOpDelete that also leaves its
	// tombstone where the group has no state on the partition: the
	// coordinator sends it to the partitions of the group's topics, where
	// a member granted a partition may not have claimed it yet.
	CommitOpDeleteAndFence = "delete_and_fence"
)

// Reset targets (OffsetCommitRequest.ResetTo, ResetOffsetsRequest.To).
const (
	ResetEarliest  = "earliest"
	ResetLatest    = "latest"
	ResetOffset    = "offset"    // the partition's Offset (or ResetOffsetsRequest.Value)
	ResetTimestamp = "timestamp" // the first record at or after Value, unix ms
)

// PartitionOffset is one partition's offset in a commit.
type PartitionOffset struct {
	Topic     string `json:"topic"`
	Partition uint32 `json:"partition"`
	// Offset is the next offset to consume (the offset after the last
	// processed record); at most the partition's high watermark.
	Offset uint64 `json:"offset"`
	// Metadata is stored with the offset: at most MaxCommitMetadataBytes.
	Metadata string `json:"metadata,omitempty"`
	// Epoch is the member's assignment epoch of the partition.
	Epoch uint64 `json:"epoch"`
}

// OffsetCommitRequest commits offsets of partitions one broker leads.
type OffsetCommitRequest struct {
	Version int               `json:"v"`
	Group   string            `json:"group"`
	Member  string            `json:"member,omitempty"`
	Op      string            `json:"op,omitempty"` // CommitOp*
	Offsets []PartitionOffset `json:"offsets"`
	// ResetTo and ResetValue apply with CommitOpReset.
	ResetTo    string `json:"reset_to,omitempty"`
	ResetValue int64  `json:"reset_value,omitempty"`
}

// PartitionResult is one partition's outcome; Error nil means success.
type PartitionResult struct {
	Topic     string `json:"topic"`
	Partition uint32 `json:"partition"`
	// Offset is the offset stored (the resolved one with CommitOpReset).
	Offset uint64 `json:"offset"`
	Error  *Error `json:"error,omitempty"`
}

// OffsetCommitReply answers an OffsetCommitRequest, one result per offset in
// request order. A result's Error is per partition (CodeNotLeader for one
// this broker no longer leads); Error is set when the whole request failed.
type OffsetCommitReply struct {
	Version int               `json:"v"`
	Error   *Error            `json:"error,omitempty"`
	Results []PartitionResult `json:"results"`
}

// OffsetFetchRequest reads the committed offsets of a group on partitions
// one broker leads. With Claim, each partition's Epoch is first written to
// the partition's log as the group's new epoch (refused with CodeStaleEpoch
// if older than the current one), and the offset is read after it applied.
type OffsetFetchRequest struct {
	Version    int              `json:"v"`
	Group      string           `json:"group"`
	Member     string           `json:"member,omitempty"`
	Claim      bool             `json:"claim,omitempty"`
	Partitions []GroupPartition `json:"partitions"`
}

// CommittedOffset is one partition's consumer state for a group, with the
// partition's ends and the group's lag.
type CommittedOffset struct {
	Topic     string `json:"topic"`
	Partition uint32 `json:"partition"`
	// Committed is false when the group has no offset for the partition
	// (Offset is then 0 and the reset policy applies).
	Committed  bool      `json:"committed"`
	Offset     uint64    `json:"offset"`
	Metadata   string    `json:"metadata,omitempty"`
	CommitTime time.Time `json:"commit_time,omitzero"`
	Member     string    `json:"member,omitempty"`
	Epoch      uint64    `json:"epoch"`
	// HighWatermark and LogStartOffset are the partition's committed end and
	// first held offset.
	HighWatermark  uint64 `json:"high_watermark"`
	LogStartOffset uint64 `json:"log_start_offset"`
	// LagRecords is HighWatermark minus the committed offset (from the log
	// start without one); LagSeconds the age of the oldest unconsumed
	// record (its batch's append time), 0 without lag.
	LagRecords uint64  `json:"lag_records"`
	LagSeconds float64 `json:"lag_seconds"`
	Error      *Error  `json:"error,omitempty"`
}

// OffsetFetchReply answers an OffsetFetchRequest, one entry per partition in
// request order.
type OffsetFetchReply struct {
	Version    int               `json:"v"`
	Error      *Error            `json:"error,omitempty"`
	Partitions []CommittedOffset `json:"partitions"`
}

// JoinGroupRequest makes a member join (or rejoin) a group for topics.
// Member is chosen by the client (unique, e.g. random); joining again with
// the same id updates the topics and keeps the member's partitions.
type JoinGroupRequest struct {
	Version int      `json:"v"`
	Group   string   `json:"group"`
	Member  string   `json:"member"`
	Topics  []string `json:"topics"`
	// SessionTimeoutMs: without a heartbeat for this long the member is
	// removed and its partitions move. 0 = 10 s; 100 ms to 10 min.
	SessionTimeoutMs int64 `json:"session_timeout_ms,omitempty"`
}

// HeartbeatRequest keeps a member alive and reports what it owns.
type HeartbeatRequest struct {
	Version int    `json:"v"`
	Group   string `json:"group"`
	Member  string `json:"member"`
	// Owned lists the partitions the member consumes now. A partition the
	// coordinator asked it to revoke and that is missing here is released
	// to its next owner.
	Owned []GroupPartition `json:"owned"`
	// Seq numbers the member's heartbeats: it increases with every
	// heartbeat the member sends. The coordinator ignores the Owned list of
	// a heartbeat whose Seq is not above the highest it has seen from the
	// member (a late copy of one the member gave up on), answers it with
	// the current assignment and does not renew the session on it.
	// 0 (a client without sequence numbers) is always acted on.
	Seq uint64 `json:"seq,omitempty"`
}

// HeartbeatReply answers join and heartbeat: the member's assignment.
type HeartbeatReply struct {
	Version int    `json:"v"`
	Error   *Error `json:"error,omitempty"`
	// Assigned are the partitions the member owns and keeps, with their
	// assignment epochs. Revoke are partitions it owns but must give up.
	Assigned []GroupPartition `json:"assigned"`
	Revoke   []GroupPartition `json:"revoke"`
	// HeartbeatIntervalMs is how often the member should heartbeat.
	HeartbeatIntervalMs int64 `json:"heartbeat_interval_ms"`
}

// LeaveGroupRequest removes a member; its partitions move at once.
type LeaveGroupRequest struct {
	Version int    `json:"v"`
	Group   string `json:"group"`
	Member  string `json:"member"`
}

// GroupRequest names a group (describe, delete; empty for list).
type GroupRequest struct {
	Version int    `json:"v"`
	Group   string `json:"group"`
}

// GroupSummary is one group in a list.
type GroupSummary struct {
	Group   string   `json:"group"`
	Members int      `json:"members"`
	Topics  []string `json:"topics"`
}

// ListGroupsReply answers AdminGroupList.
type ListGroupsReply struct {
	Version int            `json:"v"`
	Error   *Error         `json:"error,omitempty"`
	Groups  []GroupSummary `json:"groups"`
}

// GroupMember describes a member.
type GroupMember struct {
	Member           string           `json:"member"`
	Topics           []string         `json:"topics"`
	SessionTimeoutMs int64            `json:"session_timeout_ms"`
	Owned            []GroupPartition `json:"owned"`
}

// PartitionOwner is one partition's owner and assignment target.
type PartitionOwner struct {
	Topic     string `json:"topic"`
	Partition uint32 `json:"partition"`
	Owner     string `json:"owner,omitempty"`
	Epoch     uint64 `json:"epoch,omitempty"`
	// Target is the member the partition is moving to, when it differs
	// from Owner (a revocation is pending).
	Target string `json:"target,omitempty"`
}

// DescribeGroupReply answers AdminGroupDescribe.
type DescribeGroupReply struct {
	Version    int              `json:"v"`
	Error      *Error           `json:"error,omitempty"`
	Group      string           `json:"group"`
	Topics     []string         `json:"topics"`
	Members    []GroupMember    `json:"members"`
	Partitions []PartitionOwner `json:"partitions"`
}

// ResetOffsetsRequest sets a group's offsets of a topic (AdminGroupReset);
// refused with CodeGroupNotEmpty while the group has members. A member
// that joins while the reset is under way may have read the offset before
// it: the partitions it claimed keep their offsets and answer
// CodeGroupNotEmpty in ResetOffsetsReply.Results.
type ResetOffsetsRequest struct {
	Version int    `json:"v"`
	Group   string `json:"group"`
	Topic   string `json:"topic"`
	To      string `json:"to"`    // ResetEarliest, ResetLatest, ResetOffset, ResetTimestamp
	Value   int64  `json:"value"` // the offset, or unix ms
}

// ResetOffsetsReply answers AdminGroupReset with the offsets set.
type ResetOffsetsReply struct {
	Version int               `json:"v"`
	Error   *Error            `json:"error,omitempty"`
	Results []PartitionResult `json:"results"`
}

// DeleteGroupReply answers AdminGroupDelete.
type DeleteGroupReply struct {
	Version int    `json:"v"`
	Error   *Error `json:"error,omitempty"`
}

// ---- Consumer-state control entries (partition logs) ----

// ControlConsumerOps is the first byte of a partition log control entry
// holding consumer-state operations.
const ControlConsumerOps byte = 1

// consumerOpsVersion is the version of the consumer-ops encoding.
const consumerOpsVersion byte = 1

// ConsumerOpKind says what a ConsumerOp does.
type ConsumerOpKind uint8

const (
	// ConsumerOpCommit sets the offset if Epoch is not older than the
	// partition's epoch for the group (and raises the epoch to Epoch).
	ConsumerOpCommit ConsumerOpKind = 1
	// ConsumerOpClaim raises the group's epoch of the partition to Epoch
	// (refused if older); the offset is unchanged.
	ConsumerOpClaim ConsumerOpKind = 2
	// ConsumerOpReset sets the offset regardless of the stored epoch;
	// with Epoch set (not 0) only when the stored epoch is not above it,
	// and it then fences the epochs below it (CommitOpReset).
	ConsumerOpReset ConsumerOpKind = 3
	// ConsumerOpDelete forgets the group on the partition; with Epoch set
	// (not 0) it keeps a tombstone that fences the group's members of
	// before the delete, and leaves a record with a higher epoch alone.
	ConsumerOpDelete ConsumerOpKind = 4
	// ConsumerOpDeleteAndFence is ConsumerOpDelete that, with Epoch set,
	// also writes its tombstone where the group has no state on the
	// partition (CommitOpDeleteAndFence).
	ConsumerOpDeleteAndFence ConsumerOpKind = 5
)

// ConsumerOp is one operation on a partition's consumer state.
type ConsumerOp struct {
	Kind     ConsumerOpKind
	Group    string
	Member   string
	Epoch    uint64
	Offset   uint64
	Metadata string
	// Time is the leader's clock at proposal, unix milliseconds (the
	// commit time every replica stores).
	Time int64
}

// MaxCommitMetadataBytes bounds the metadata a commit stores beside an
// offset, as Kafka's offset.metadata.max.bytes does by default: every
// replica keeps it in memory and in its snapshots, and consumer ops are
// coalesced into Raft entries that must fit in one peer message.
const MaxCommitMetadataBytes = 4096

// consumerOpsHeaderSize is the size of a consumer-ops entry before its ops.
const consumerOpsHeaderSize = 2 + 4

// ConsumerOpsSize is the size of the entry data AppendConsumerOps writes
// for ops.
func ConsumerOpsSize(ops []ConsumerOp) int {
	n := consumerOpsHeaderSize
	for i := range ops {
		n += ConsumerOpSize(&ops[i])
	}
	return n
}

// ConsumerOpSize is what one op adds to a consumer-ops entry.
func ConsumerOpSize(op *ConsumerOp) int {
	str := func(s string) int { return 2 + min(len(s), 0xffff) }
	return 1 + str(op.Group) + str(op.Member) + 3*8 + str(op.Metadata)
}

// AppendConsumerOps appends the control entry data for ops:
//
//	u8 ControlConsumerOps, u8 version, u32 count, then per op:
//	u8 kind, string group, string member, u64 epoch, u64 offset,
//	i64 time, string metadata (strings: u16 length + bytes)
func AppendConsumerOps(dst []byte, ops []ConsumerOp) []byte {
	dst = append(dst, ControlConsumerOps, consumerOpsVersion)
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(ops)))
	for i := range ops {
		op := &ops[i]
		dst = append(dst, byte(op.Kind))
		dst = apiAppendString(dst, op.Group)
		dst = apiAppendString(dst, op.Member)
		dst = binary.LittleEndian.AppendUint64(dst, op.Epoch)
		dst = binary.LittleEndian.AppendUint64(dst, op.Offset)
		dst = binary.LittleEndian.AppendUint64(dst, uint64(op.Time))
		dst = apiAppendString(dst, op.Metadata)
	}
	return dst
}

// DecodeConsumerOps decodes control entry data written by AppendConsumerOps.
func DecodeConsumerOps(b []byte) ([]ConsumerOp, error) {
	if len(b) < 2 || b[0] != ControlConsumerOps {
		return nil, fmt.Errorf("%w: not a consumer-ops control entry", ErrMalformed)
	}
	if b[1] != consumerOpsVersion {
		return nil, fmt.Errorf("%w: consumer-ops version %d, want %d", ErrMalformed, b[1], consumerOpsVersion)
	}
	d := apiDecoder{buf: b[2:]}
	count := d.uint32()
	// Each op takes at least 31 bytes; a count beyond that is corrupt.
	if d.err == nil && uint64(count)*31 > uint64(len(d.buf)) {
		return nil, fmt.Errorf("%w: %d consumer ops in %d bytes", ErrMalformed, count, len(d.buf))
	}
	ops := make([]ConsumerOp, 0, count)
	for range count {
		var op ConsumerOp
		op.Kind = ConsumerOpKind(d.uint8())
		op.Group = d.string()
		op.Member = d.string()
		op.Epoch = d.uint64()
		op.Offset = d.uint64()
		op.Time = int64(d.uint64())
		op.Metadata = d.string()
		if d.err != nil {
			return nil, d.err
		}
		if op.Kind < ConsumerOpCommit || op.Kind > ConsumerOpDeleteAndFence {
			return nil, fmt.Errorf("%w: consumer op kind %d", ErrMalformed, op.Kind)
		}
		ops = append(ops, op)
	}
	if err := d.end(); err != nil {
		return nil, err
	}
	return ops, nil
}
