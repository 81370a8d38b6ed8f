package protocol

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"strconv"
	"strings"
	"time"
)

// APIVersion is the client API version this package reads and writes.
const APIVersion = 1

// DefaultSubjectPrefix is the subject prefix of a cluster that sets none.
const DefaultSubjectPrefix = "raftmq"

// APIQueue is the NATS queue group of the subjects any broker may serve, so
// each request reaches exactly one broker.
const APIQueue = "raftmq-api"

// NATS headers of a plain publish.
const (
	HeaderKey       = "Raftmq-Key"
	HeaderPartition = "Raftmq-Partition"
)

// Admin operations, the last tokens of <prefix>.api.admin.<op>.
const (
	AdminCreateTopic   = "topic.create"
	AdminListTopics    = "topic.list"
	AdminDescribeTopic = "topic.describe"
	AdminDeleteTopic   = "topic.delete"
	AdminMetadata      = "metadata"
	AdminClusterStatus = "cluster.status"
	// AdminRegisterBroker is broker-internal: a broker announces itself to
	// the controller leader.
	AdminRegisterBroker = "broker.register"
)

// SubjectProduce is the plain publish subject of a topic.
func SubjectProduce(prefix, topic string) string { return prefix + ".api.produce." + topic }

// SubjectProduceAll matches every plain publish subject (the brokers
// subscribe to it); TopicFromProduceSubject recovers the topic.
func SubjectProduceAll(prefix string) string { return prefix + ".api.produce.>" }

// TopicFromProduceSubject returns the topic of a plain publish subject, or
// false when the subject is not one.
func TopicFromProduceSubject(prefix, subject string) (string, bool) {
	topic, ok := strings.CutPrefix(subject, prefix+".api.produce.")
	return topic, ok && topic != ""
}

// SubjectBrokerProduce is broker id's produce subject.
func SubjectBrokerProduce(prefix string, id uint64) string {
	return brokerSubject(prefix, id, "produce")
}

// SubjectBrokerFetch is broker id's fetch subject.
func SubjectBrokerFetch(prefix string, id uint64) string { return brokerSubject(prefix, id, "fetch") }

// SubjectBrokerOffsets is broker id's list-offsets subject.
func SubjectBrokerOffsets(prefix string, id uint64) string {
	return brokerSubject(prefix, id, "offsets")
}

// SubjectBrokerStatus is broker id's status subject.
func SubjectBrokerStatus(prefix string, id uint64) string { return brokerSubject(prefix, id, "status") }

// SubjectBrokerAdmin is the admin subject op addressed to broker id.
func SubjectBrokerAdmin(prefix string, id uint64, op string) string {
	return brokerSubject(prefix, id, "admin."+op)
}

// SubjectAdmin is the admin subject of op, served by any broker.
func SubjectAdmin(prefix, op string) string { return prefix + ".api.admin." + op }

// SubjectStatusAll is answered by every live broker with its BrokerStatus.
func SubjectStatusAll(prefix string) string { return prefix + ".api.status" }

// SubjectClusterMetadata carries the controller leader's metadata
// broadcasts (broker-internal).
func SubjectClusterMetadata(prefix string) string { return prefix + ".cluster.metadata" }

// SubjectClusterStatus carries every broker's periodic BrokerStatus
// (broker-internal; liveness and partition leadership).
func SubjectClusterStatus(prefix string) string { return prefix + ".cluster.status" }

func brokerSubject(prefix string, id uint64, op string) string {
	return prefix + ".api.broker." + strconv.FormatUint(id, 10) + "." + op
}

// MaxTopicNameLength is the longest topic name.
const MaxTopicNameLength = 200

// ValidateTopicName checks that name can be a topic: 1 to MaxTopicNameLength
// characters from [A-Za-z0-9_-] in dot-separated non-empty tokens (a topic is
// part of a NATS subject). The brokers also refuse, with topic_exists, a
// name that differs from an existing topic's only in case: the two would
// share a data directory on a case-insensitive file system.
func ValidateTopicName(name string) error {
	return validateName("topic name", name, MaxTopicNameLength, true)
}

// validateName checks a name of 1 to maxLength characters from
// [A-Za-z0-9._-]; one that is a subject token (dotted) may not have an
// empty dot-separated part, which NATS refuses in a subject.
func validateName(what, name string, maxLength int, dotted bool) error {
	if name == "" {
		return fmt.Errorf("protocol: empty %s", what)
	}
	if len(name) > maxLength {
		return fmt.Errorf("protocol: %s is %d characters, the limit is %d", what, len(name), maxLength)
	}
	if dotted && slices.Contains(strings.Split(name, "."), "") {
		return fmt.Errorf("protocol: %s %q has an empty dot-separated part", what, name)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c == '.' || c == '_' || c == '-' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' {
			continue
		}
		return fmt.Errorf("protocol: %s %q has character %q; use letters, digits, '.', '_' and '-'", what, name, c)
	}
	return nil
}

// PartitionForKey maps a record key to a partition: FNV-1a 32 of the key
// modulo the partition count. The SDK's key partitioner and the plain publish
// subject use it, so the same key lands in the same partition either way.
func PartitionForKey(key []byte, partitions int) int {
	if partitions <= 0 {
		return 0
	}
	h := fnv.New32a()
	h.Write(key)
	return int(h.Sum32() % uint32(partitions))
}

// Acks says when the broker answers a produce request.
type Acks uint8

const (
	// AcksQuorum (the default) answers once the batch is committed: durable
	// on a majority of the replicas (the leader counts once its own fsync is
	// done; two followers are a majority of three without it).
	AcksQuorum Acks = 0
	// AcksLeader answers once the leader has appended the batch, before it is
	// durable or replicated. Unsafe: an acknowledged batch can be lost when
	// the leader fails.
	AcksLeader Acks = 1
	// AcksApplied answers once the partition's state machine applied the
	// batch (committed, and visible to fetches).
	AcksApplied Acks = 2
)

// Valid reports whether a is a known acks mode.
func (a Acks) Valid() bool { return a <= AcksApplied }

func (a Acks) String() string {
	switch a {
	case AcksQuorum:
		return "quorum"
	case AcksLeader:
		return "leader"
	case AcksApplied:
		return "applied"
	}
	return fmt.Sprintf("acks(%d)", uint8(a))
}

// ParseAcks parses "quorum", "leader" or "applied".
func ParseAcks(s string) (Acks, error) {
	switch s {
	case "quorum", "":
		return AcksQuorum, nil
	case "leader":
		return AcksLeader, nil
	case "applied":
		return AcksApplied, nil
	}
	return 0, fmt.Errorf("protocol: unknown acks %q (want quorum, leader or applied)", s)
}

// ErrMalformed marks a client API message that cannot be decoded.
var ErrMalformed = errors.New("protocol: malformed message")

// ProduceRequest appends one record batch to a partition.
type ProduceRequest struct {
	Topic     string
	Partition uint32
	Acks      Acks
	// Timeout bounds how long the broker waits for the acknowledgement;
	// 0 means the broker's default. Millisecond resolution on the wire.
	Timeout time.Duration
	// Batch is exactly one sealed record batch (see the package
	// documentation). Base offset and append time are assigned by the
	// cluster; whatever the producer put there is overwritten.
	Batch []byte
}

// AppendProduceRequest appends the encoding of r to dst:
// version, acks u8, partition u32, timeout ms u32, topic string, batch (rest).
func AppendProduceRequest(dst []byte, r *ProduceRequest) []byte {
	dst = append(dst, APIVersion, byte(r.Acks))
	dst = binary.LittleEndian.AppendUint32(dst, r.Partition)
	dst = binary.LittleEndian.AppendUint32(dst, durationMillis(r.Timeout))
	dst = apiAppendString(dst, r.Topic)
	return append(dst, r.Batch...)
}

// DecodeProduceRequest decodes a ProduceRequest. Batch aliases b. A request
// in an unknown version gives an *Error with CodeUnsupportedVersion.
func DecodeProduceRequest(b []byte) (ProduceRequest, error) {
	var r ProduceRequest
	d := apiDecoder{buf: b}
	if err := d.version(); err != nil {
		return r, err
	}
	r.Acks = Acks(d.uint8())
	r.Partition = d.uint32()
	r.Timeout = time.Duration(d.uint32()) * time.Millisecond
	r.Topic = d.string()
	r.Batch = d.rest()
	if d.err != nil {
		return r, d.err
	}
	if !r.Acks.Valid() {
		return r, fmt.Errorf("%w: unknown acks %d", ErrMalformed, r.Acks)
	}
	return r, nil
}

// ProduceReply answers a ProduceRequest.
type ProduceReply struct {
	Err *Error // nil on success
	// BaseOffset is the record offset of the batch's first record. With
	// AcksLeader it is valid too (the leader's log assigned it), but the
	// batch may still be lost.
	BaseOffset uint64
	// AppendTime is the append time the leader stamped, unix milliseconds.
	AppendTime int64
}

// AppendProduceReply appends the encoding of r: version, error block, base
// offset u64, append time i64.
func AppendProduceReply(dst []byte, r *ProduceReply) []byte {
	dst = append(dst, APIVersion)
	dst = appendErrorBlock(dst, r.Err)
	dst = binary.LittleEndian.AppendUint64(dst, r.BaseOffset)
	return binary.LittleEndian.AppendUint64(dst, uint64(r.AppendTime))
}

// DecodeProduceReply decodes a ProduceReply.
func DecodeProduceReply(b []byte) (ProduceReply, error) {
	var r ProduceReply
	d := apiDecoder{buf: b}
	if err := d.version(); err != nil {
		return r, err
	}
	r.Err = d.errorBlock()
	r.BaseOffset = d.uint64()
	r.AppendTime = int64(d.uint64())
	return r, d.end()
}

// FetchRequest reads committed record batches of a partition.
type FetchRequest struct {
	Topic     string
	Partition uint32
	// Offset is the first record offset wanted. The reply starts with the
	// batch holding it, so it may include records before Offset; the
	// consumer skips them.
	Offset uint64
	// MaxBytes bounds the reply's batch bytes; at least one batch is
	// returned when one is available, whatever its size. 0 = broker default.
	MaxBytes uint32
	// MaxWait is how long the broker holds the request when nothing is
	// committed at Offset yet (long poll). 0 answers at once.
	MaxWait time.Duration
	// MaxReplies above 1 asks for a stream of up to that many replies: the
	// first one as without it (long poll included), then, while the last
	// reply's NextOffset is below its HighWatermark, another one from that
	// NextOffset at once (no waiting), each of up to MaxBytes. Whether a
	// reply ends the stream follows from the reply itself:
	// FetchStreamContinues. Replies go to the request's reply subject, so
	// the requester must read them from a subscription of its own (a NATS
	// request takes only the first). 0 and 1 ask for one reply.
	MaxReplies uint8
}

// AppendFetchRequest appends the encoding of r: version, partition u32,
// offset u64, max bytes u32, max wait ms u32, topic string, and max replies
// u8 only when above 1.
func AppendFetchRequest(dst []byte, r *FetchRequest) []byte {
	dst = append(dst, APIVersion)
	dst = binary.LittleEndian.AppendUint32(dst, r.Partition)
	dst = binary.LittleEndian.AppendUint64(dst, r.Offset)
	dst = binary.LittleEndian.AppendUint32(dst, r.MaxBytes)
	dst = binary.LittleEndian.AppendUint32(dst, durationMillis(r.MaxWait))
	dst = apiAppendString(dst, r.Topic)
	if r.MaxReplies > 1 {
		dst = append(dst, r.MaxReplies)
	}
	return dst
}

// FetchStreamContinues reports whether another reply follows reply, the
// n-th (counting from 1) of the stream answering a request for maxReplies
// replies: unless it is the last allowed, carries an error, holds no
// batches, or reaches the high watermark. Broker and consumer both decide
// with it.
func FetchStreamContinues(reply *FetchReply, n int, maxReplies uint8) bool {
	return n < int(maxReplies) && reply.Err == nil && len(reply.Batches) > 0 && reply.NextOffset < reply.HighWatermark
}

// DecodeFetchRequest decodes a FetchRequest.
func DecodeFetchRequest(b []byte) (FetchRequest, error) {
	var r FetchRequest
	d := apiDecoder{buf: b}
	if err := d.version(); err != nil {
		return r, err
	}
	r.Partition = d.uint32()
	r.Offset = d.uint64()
	r.MaxBytes = d.uint32()
	r.MaxWait = time.Duration(d.uint32()) * time.Millisecond
	r.Topic = d.string()
	if d.err == nil && len(d.buf) > 0 {
		if r.MaxReplies = d.uint8(); r.MaxReplies < 2 {
			return r, fmt.Errorf("%w: max replies %d is written only above 1", ErrMalformed, r.MaxReplies)
		}
	}
	return r, d.end()
}

// FetchReply answers a FetchRequest.
type FetchReply struct {
	Err *Error // nil on success; CodeOffsetOutOfRange carries the valid range
	// HighWatermark is the offset after the last committed record.
	HighWatermark uint64
	// LogStartOffset is the first offset still held.
	LogStartOffset uint64
	// NextOffset is the offset after the last record in Batches (the offset
	// to fetch next); equal to the request's offset when Batches is empty.
	NextOffset uint64
	// Batches is zero or more complete record batches, concatenated, exactly
	// as stored. Iterate them with SplitBatches.
	Batches []byte
}

// AppendFetchReply appends the encoding of r: version, error block, high
// watermark u64, log start offset u64, next offset u64, batches (rest).
func AppendFetchReply(dst []byte, r *FetchReply) []byte {
	dst = AppendFetchReplyHeader(dst, r)
	return append(dst, r.Batches...)
}

// AppendFetchReplyHeader appends everything of r but its batches, so a
// broker can read the batches from the log straight after the header.
func AppendFetchReplyHeader(dst []byte, r *FetchReply) []byte {
	dst = append(dst, APIVersion)
	dst = appendErrorBlock(dst, r.Err)
	dst = binary.LittleEndian.AppendUint64(dst, r.HighWatermark)
	dst = binary.LittleEndian.AppendUint64(dst, r.LogStartOffset)
	return binary.LittleEndian.AppendUint64(dst, r.NextOffset)
}

// DecodeFetchReply decodes a FetchReply. Batches aliases b and is not
// verified; SplitBatches checks each batch's structure.
func DecodeFetchReply(b []byte) (FetchReply, error) {
	var r FetchReply
	d := apiDecoder{buf: b}
	if err := d.version(); err != nil {
		return r, err
	}
	r.Err = d.errorBlock()
	r.HighWatermark = d.uint64()
	r.LogStartOffset = d.uint64()
	r.NextOffset = d.uint64()
	r.Batches = d.rest()
	return r, d.err
}

// SplitBatches calls fn for each batch in a concatenation of batches (as in
// FetchReply.Batches), verifying each one's CRC. It stops at the first error
// from fn or at a malformed batch (an ErrCorruptBatch error).
func SplitBatches(b []byte, fn func(batch []byte, h BatchHeader) error) error {
	for len(b) > 0 {
		h, err := ReadBatchHeader(b)
		if err != nil {
			return err
		}
		if uint64(h.Length) > uint64(len(b)) {
			return fmt.Errorf("%w: batch of %d bytes, only %d left", ErrCorruptBatch, h.Length, len(b))
		}
		batch := b[:h.Length]
		if h, err = VerifyBatch(batch); err != nil {
			return err
		}
		if err := fn(batch, h); err != nil {
			return err
		}
		b = b[h.Length:]
	}
	return nil
}

// Special timestamps of a ListOffsetsRequest.
const (
	// OffsetLatest asks for the high watermark (the next offset to be written
	// and committed).
	OffsetLatest int64 = -1
	// OffsetEarliest asks for the log start offset.
	OffsetEarliest int64 = -2
)

// ListOffsetsRequest looks up an offset of a partition.
type ListOffsetsRequest struct {
	Topic     string
	Partition uint32
	// Timestamp is OffsetLatest, OffsetEarliest, or unix milliseconds: the
	// reply then holds the first offset whose batch's max timestamp (or
	// append time) is at or after it, or the high watermark when none is.
	Timestamp int64
}

// AppendListOffsetsRequest appends the encoding of r: version, partition
// u32, timestamp i64, topic string.
func AppendListOffsetsRequest(dst []byte, r *ListOffsetsRequest) []byte {
	dst = append(dst, APIVersion)
	dst = binary.LittleEndian.AppendUint32(dst, r.Partition)
	dst = binary.LittleEndian.AppendUint64(dst, uint64(r.Timestamp))
	return apiAppendString(dst, r.Topic)
}

// DecodeListOffsetsRequest decodes a ListOffsetsRequest.
func DecodeListOffsetsRequest(b []byte) (ListOffsetsRequest, error) {
	var r ListOffsetsRequest
	d := apiDecoder{buf: b}
	if err := d.version(); err != nil {
		return r, err
	}
	r.Partition = d.uint32()
	r.Timestamp = int64(d.uint64())
	r.Topic = d.string()
	return r, d.end()
}

// ListOffsetsReply answers a ListOffsetsRequest.
type ListOffsetsReply struct {
	Err            *Error
	Offset         uint64
	HighWatermark  uint64
	LogStartOffset uint64
}

// AppendListOffsetsReply appends the encoding of r: version, error block,
// offset, high watermark, log start offset (u64 each).
func AppendListOffsetsReply(dst []byte, r *ListOffsetsReply) []byte {
	dst = append(dst, APIVersion)
	dst = appendErrorBlock(dst, r.Err)
	dst = binary.LittleEndian.AppendUint64(dst, r.Offset)
	dst = binary.LittleEndian.AppendUint64(dst, r.HighWatermark)
	return binary.LittleEndian.AppendUint64(dst, r.LogStartOffset)
}

// DecodeListOffsetsReply decodes a ListOffsetsReply.
func DecodeListOffsetsReply(b []byte) (ListOffsetsReply, error) {
	var r ListOffsetsReply
	d := apiDecoder{buf: b}
	if err := d.version(); err != nil {
		return r, err
	}
	r.Err = d.errorBlock()
	r.Offset = d.uint64()
	r.HighWatermark = d.uint64()
	r.LogStartOffset = d.uint64()
	return r, d.end()
}

func durationMillis(d time.Duration) uint32 {
	ms := d.Milliseconds()
	switch {
	case ms <= 0:
		if d > 0 {
			return 1
		}
		return 0
	case ms > int64(^uint32(0)):
		return ^uint32(0)
	}
	return uint32(ms)
}

func apiAppendString(dst []byte, s string) []byte {
	if len(s) > 0xffff {
		s = s[:0xffff]
	}
	dst = binary.LittleEndian.AppendUint16(dst, uint16(len(s)))
	return append(dst, s...)
}

func appendErrorBlock(dst []byte, e *Error) []byte {
	if e == nil || e.Code == CodeNone {
		return binary.LittleEndian.AppendUint16(dst, uint16(CodeNone))
	}
	dst = binary.LittleEndian.AppendUint16(dst, uint16(e.Code))
	dst = binary.LittleEndian.AppendUint64(dst, e.Leader)
	dst = binary.LittleEndian.AppendUint64(dst, e.Low)
	dst = binary.LittleEndian.AppendUint64(dst, e.High)
	dst = binary.LittleEndian.AppendUint64(dst, e.Limit)
	return apiAppendString(dst, e.Message)
}

// apiDecoder reads the binary API encoding; the first failure sticks in err
// and every later read returns zero values.
type apiDecoder struct {
	buf []byte
	err error
}

func (d *apiDecoder) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: truncated at %s", ErrMalformed, what)
	}
	d.buf = nil
}

func (d *apiDecoder) version() error {
	if len(d.buf) == 0 {
		d.fail("version")
		return d.err
	}
	if v := d.buf[0]; v != APIVersion {
		d.err = &Error{Code: CodeUnsupportedVersion, Message: fmt.Sprintf("API version %d, this broker speaks %d", v, APIVersion)}
		return d.err
	}
	d.buf = d.buf[1:]
	return nil
}

func (d *apiDecoder) uint8() uint8 {
	if len(d.buf) < 1 {
		d.fail("uint8")
		return 0
	}
	v := d.buf[0]
	d.buf = d.buf[1:]
	return v
}

func (d *apiDecoder) uint16() uint16 {
	if len(d.buf) < 2 {
		d.fail("uint16")
		return 0
	}
	v := binary.LittleEndian.Uint16(d.buf)
	d.buf = d.buf[2:]
	return v
}

func (d *apiDecoder) uint32() uint32 {
	if len(d.buf) < 4 {
		d.fail("uint32")
		return 0
	}
	v := binary.LittleEndian.Uint32(d.buf)
	d.buf = d.buf[4:]
	return v
}

func (d *apiDecoder) uint64() uint64 {
	if len(d.buf) < 8 {
		d.fail("uint64")
		return 0
	}
	v := binary.LittleEndian.Uint64(d.buf)
	d.buf = d.buf[8:]
	return v
}

func (d *apiDecoder) string() string {
	n := int(d.uint16())
	if len(d.buf) < n {
		d.fail("string")
		return ""
	}
	s := string(d.buf[:n])
	d.buf = d.buf[n:]
	return s
}

func (d *apiDecoder) rest() []byte {
	if d.err != nil {
		return nil
	}
	b := d.buf
	d.buf = nil
	if len(b) == 0 {
		return nil
	}
	return b
}

func (d *apiDecoder) errorBlock() *Error {
	code := ErrorCode(d.uint16())
	if code == CodeNone || d.err != nil {
		return nil
	}
	e := &Error{Code: code}
	e.Leader = d.uint64()
	e.Low = d.uint64()
	e.High = d.uint64()
	e.Limit = d.uint64()
	e.Message = d.string()
	if d.err != nil {
		return nil
	}
	return e
}

// end reports the sticky error, or ErrMalformed when bytes are left over.
func (d *apiDecoder) end() error {
	if d.err != nil {
		return d.err
	}
	if len(d.buf) != 0 {
		return fmt.Errorf("%w: %d unexpected trailing bytes", ErrMalformed, len(d.buf))
	}
	return nil
}

// ---- Admin (JSON) ----

// CreateTopicRequest creates a topic (admin op AdminCreateTopic).
type CreateTopicRequest struct {
	Version    int    `json:"v"`
	Name       string `json:"name"`
	Partitions int    `json:"partitions"` // 0 = broker default (1)
	Replicas   int    `json:"replicas"`   // 0 = min(3, brokers)
	// RetentionMs and RetentionBytes override the brokers' retention of the
	// topic's partition logs (by age and by size) when non-zero; -1 = no limit.
	RetentionMs    int64 `json:"retention_ms,omitempty"`
	RetentionBytes int64 `json:"retention_bytes,omitempty"`
}

// TopicRequest names a topic (admin ops AdminDescribeTopic, AdminDeleteTopic).
type TopicRequest struct {
	Version int    `json:"v"`
	Name    string `json:"name"`
}

// MetadataRequest asks for cluster metadata (admin op AdminMetadata);
// empty Topics means every topic. Also used, empty, for AdminListTopics and
// AdminClusterStatus.
type MetadataRequest struct {
	Version int      `json:"v"`
	Topics  []string `json:"topics,omitempty"`
}

// PartitionInfo describes one partition.
type PartitionInfo struct {
	Partition uint32 `json:"partition"`
	// Leader is the current Raft leader as far as the cluster knows, 0 when
	// unknown (an election is running, or no replica answered).
	Leader   uint64   `json:"leader"`
	Replicas []uint64 `json:"replicas"`
	// CommitIndex is the leader's Raft commit index, when known.
	CommitIndex uint64 `json:"commit_index"`
	// HighWatermark is the leader's high watermark, when known.
	// CommitIndex and HighWatermark are as of the leader's last status
	// report (one every status interval, a second by default); a list
	// offsets request to the leader gives the high watermark now.
	HighWatermark uint64 `json:"high_watermark"`
	// GroupID is the partition's Raft group id.
	GroupID uint64 `json:"group_id"`
	// Voters and Learners are the partition group's Raft configuration as
	// its leader reports it (empty when unknown); OutgoingVoters is set only
	// while a joint configuration is in effect.
	Voters         []uint64 `json:"voters,omitempty"`
	OutgoingVoters []uint64 `json:"outgoing_voters,omitempty"`
	Learners       []uint64 `json:"learners,omitempty"`
	// Target is the replica set a reassignment in progress moves the
	// partition to (AdminReassignPartition); empty when none is.
	Target []uint64 `json:"target,omitempty"`
	// Failed lists the brokers whose replica of the partition a storage
	// error stopped and which have not restarted it yet
	// (BrokerStatus.FailedReplicas): of Replicas, and of Target while a
	// reassignment runs.
	Failed []uint64 `json:"failed,omitempty"`
}

// TopicInfo describes one topic.
type TopicInfo struct {
	Name       string          `json:"name"`
	Replicas   int             `json:"replicas"`
	Partitions []PartitionInfo `json:"partitions"`
	CreatedAt  time.Time       `json:"created_at"`
	// RetentionMs and RetentionBytes are the topic's retention overrides
	// (0 = the brokers' defaults, -1 = no limit).
	RetentionMs    int64 `json:"retention_ms,omitempty"`
	RetentionBytes int64 `json:"retention_bytes,omitempty"`
}

// BrokerInfo describes one broker.
type BrokerInfo struct {
	ID    uint64 `json:"id"`
	Alive bool   `json:"alive"`
	// Stopping: the broker is alive and shutting down
	// (BrokerStatus.Stopping).
	Stopping bool `json:"stopping,omitempty"`
}

// TopicReply answers AdminCreateTopic and AdminDescribeTopic.
type TopicReply struct {
	Version int        `json:"v"`
	Error   *Error     `json:"error,omitempty"`
	Topic   *TopicInfo `json:"topic,omitempty"`
}

// ListTopicsReply answers AdminListTopics.
type ListTopicsReply struct {
	Version int         `json:"v"`
	Error   *Error      `json:"error,omitempty"`
	Topics  []TopicInfo `json:"topics"`
}

// DeleteTopicReply answers AdminDeleteTopic.
type DeleteTopicReply struct {
	Version int    `json:"v"`
	Error   *Error `json:"error,omitempty"`
}

// MetadataReply answers AdminMetadata and AdminClusterStatus.
type MetadataReply struct {
	Version          int          `json:"v"`
	Error            *Error       `json:"error,omitempty"`
	ControllerLeader uint64       `json:"controller_leader"`
	Brokers          []BrokerInfo `json:"brokers"`
	Topics           []TopicInfo  `json:"topics"`
	// Controller is the controller group's membership (AdminMetadata and
	// AdminClusterStatus fill it in when the answering broker knows it).
	Controller *GroupMembership `json:"controller,omitempty"`
}

// PartitionStatus is one replica's view of a partition, part of BrokerStatus.
type PartitionStatus struct {
	Topic         string `json:"topic"`
	Partition     uint32 `json:"partition"`
	GroupID       uint64 `json:"group_id"`
	Role          string `json:"role"`
	Term          uint64 `json:"term"`
	Leader        uint64 `json:"leader"`
	CommitIndex   uint64 `json:"commit_index"`
	AppliedIndex  uint64 `json:"applied_index"`
	HighWatermark uint64 `json:"high_watermark"`
	// LastIndex is the replica's last log index; Voters, OutgoingVoters and
	// Learners its Raft configuration in effect.
	LastIndex      uint64   `json:"last_index,omitempty"`
	Voters         []uint64 `json:"voters,omitempty"`
	OutgoingVoters []uint64 `json:"outgoing_voters,omitempty"`
	Learners       []uint64 `json:"learners,omitempty"`
}

// BrokerStatus is one broker's report (SubjectBrokerStatus, SubjectStatusAll).
type BrokerStatus struct {
	Version          int               `json:"v"`
	ID               uint64            `json:"id"`
	Ready            bool              `json:"ready"`
	ControllerLeader uint64            `json:"controller_leader"`
	MetadataVersion  uint64            `json:"metadata_version"`
	Partitions       []PartitionStatus `json:"partitions"`
	// Controller is the controller group's membership, reported by the
	// controller leader only.
	Controller *GroupMembership `json:"controller,omitempty"`
	// Stopping is set once the broker began shutting down: it hands off
	// the leaderships it holds and must not be handed any.
	Stopping bool `json:"stopping,omitempty"`
	// FailedReplicas are the broker's partition replicas that a storage
	// error (a failed write or fsync of the log) or a state machine error
	// stopped, and that it has not restarted yet. They are not in
	// Partitions.
	FailedReplicas []ReplicaFailure `json:"failed_replicas,omitempty"`
	// UnstableReplicas are the groups of the broker's replicas that an
	// error stopped lately (failed and not restarted, or restarted a
	// short while ago): the other brokers hand them no leadership.
	UnstableReplicas []uint64 `json:"unstable_replicas,omitempty"`
	// ControllerError is why the broker's controller replica (bootstrap
	// brokers hold one) stopped: a storage error. It is not restarted in
	// the process; the broker reports itself not ready until it restarts.
	ControllerError string `json:"controller_error,omitempty"`
}

// ReplicaFailure is a partition replica a broker stopped after an error
// and restarts after a backoff (BrokerStatus.FailedReplicas).
type ReplicaFailure struct {
	Topic     string `json:"topic"`
	Partition uint32 `json:"partition"`
	GroupID   uint64 `json:"group_id"`
	// Error is the error that stopped it (or, after a restart that
	// failed, the error of that restart).
	Error string `json:"error"`
	// Failures counts the failures in a row (a replica that ran for a
	// while before failing again starts from 1); the backoff doubles
	// with each.
	Failures int       `json:"failures"`
	Since    time.Time `json:"since"`
	// NextRestart is when the broker tries to restart it.
	NextRestart time.Time `json:"next_restart"`
}

// PublishReply is the JSON reply of the plain publish subject: partition and
// offset on success, error otherwise.
type PublishReply struct {
	Partition uint32 `json:"partition"`
	Offset    uint64 `json:"offset"`
	Error     *Error `json:"error,omitempty"`
}

// MarshalJSON writes a PublishReply as {"partition":P,"offset":O} or
// {"error":{...}}.
func (r PublishReply) MarshalJSON() ([]byte, error) {
	if r.Error != nil {
		return json.Marshal(struct {
			Error *Error `json:"error"`
		}{r.Error})
	}
	type plain PublishReply
	return json.Marshal(plain(r))
}

// ---- Membership admin (JSON) ----

// Membership admin operations, the last tokens of <prefix>.api.admin.<op>.
// All are served by the controller leader (any broker forwards them).
const (
	// AdminReassignPartition moves a partition's replicas to a new set of
	// brokers (ReassignPartitionRequest -> ReassignReply).
	AdminReassignPartition = "partition.reassign"
	// AdminReplaceBroker moves every replica from one broker to another
	// (ReplaceBrokerRequest -> ReassignReply).
	AdminReplaceBroker = "broker.replace"
	// AdminAddController adds a broker to the controller group's voters
	// (ControllerMemberRequest -> ControllerMemberReply).
	AdminAddController = "controller.add"
	// AdminRemoveController removes a broker from the controller group
	// (ControllerMemberRequest -> ControllerMemberReply).
	AdminRemoveController = "controller.remove"
	// AdminReassignDone is broker-internal: a partition leader reports that
	// its group's voters are the reassignment's target.
	AdminReassignDone = "partition.reassign_done"
)

// ReassignPartitionRequest asks to move one partition's replicas to
// Replicas (the first is the preferred leader). The controller records the
// target and replies at once; the partition's leader then adds the new
// brokers as learners, promotes them once caught up, and removes the
// brokers not in Replicas with a joint-consensus change. Watch progress
// with AdminClusterStatus (PartitionInfo.Target is empty when done).
type ReassignPartitionRequest struct {
	Version   int      `json:"v"`
	Topic     string   `json:"topic"`
	Partition uint32   `json:"partition"`
	Replicas  []uint64 `json:"replicas"`
	// Cancel turns the partition's reassignment in progress back toward
	// its current replicas (Replicas is then ignored): brokers only the
	// cancelled target named are removed from the group and delete their
	// copy.
	Cancel bool `json:"cancel,omitempty"`
}

// ReplaceBrokerRequest asks to move every replica held by Old to New
// (New keeps Old's place in each replica list). Old may be down.
type ReplaceBrokerRequest struct {
	Version int    `json:"v"`
	Old     uint64 `json:"old"`
	New     uint64 `json:"new"`
}

// Reassignment is one partition move recorded by the controller.
type Reassignment struct {
	Topic     string   `json:"topic"`
	Partition uint32   `json:"partition"`
	From      []uint64 `json:"from"`
	To        []uint64 `json:"to"`
}

// ReassignReply answers AdminReassignPartition and AdminReplaceBroker with
// the moves the controller recorded (none when the replicas were already
// the requested ones).
type ReassignReply struct {
	Version       int            `json:"v"`
	Error         *Error         `json:"error,omitempty"`
	Reassignments []Reassignment `json:"reassignments"`
}

// ControllerMemberRequest names a broker to add to or remove from the
// controller group.
type ControllerMemberRequest struct {
	Version int    `json:"v"`
	Broker  uint64 `json:"broker"`
}

// GroupMembership is a Raft group's configuration: its voters, the
// outgoing voters while a joint configuration is in effect, and its
// learners.
type GroupMembership struct {
	Voters         []uint64 `json:"voters"`
	OutgoingVoters []uint64 `json:"outgoing_voters,omitempty"`
	Learners       []uint64 `json:"learners,omitempty"`
}

// ControllerMemberReply answers AdminAddController and
// AdminRemoveController with the controller group's membership after the
// change.
type ControllerMemberReply struct {
	Version    int              `json:"v"`
	Error      *Error           `json:"error,omitempty"`
	Controller *GroupMembership `json:"controller,omitempty"`
}
