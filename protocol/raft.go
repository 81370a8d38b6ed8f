package protocol

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
)

// RaftMessageType names a Raft RPC (Raft paper Figure 2, thesis §9.6 PreVote,
// §3.10 TimeoutNow).
type RaftMessageType uint8

const (
	// MsgAppend is AppendEntries: Index/LogTerm are prevLogIndex/prevLogTerm,
	// Entries follow them, Commit is the leader's commitIndex.
	MsgAppend RaftMessageType = 1
	// MsgAppendResponse answers MsgAppend. On success Index is the highest
	// index the follower holds durably and knows to match the leader. On
	// Reject, Index is the rejected prevLogIndex and RejectHint/LogTerm give
	// the conflict hint (§5.3 fast backtracking): the largest index at or
	// below the probe whose term is at most the probe's term, and that term.
	MsgAppendResponse RaftMessageType = 2
	// MsgVote is RequestVote (§5.2): Index/LogTerm are lastLogIndex/lastLogTerm.
	MsgVote RaftMessageType = 3
	// MsgVoteResponse answers MsgVote; Reject is !voteGranted.
	MsgVoteResponse RaftMessageType = 4
	// MsgPreVote asks whether a vote would be granted for Term without
	// anybody changing term (thesis §9.6).
	MsgPreVote RaftMessageType = 5
	// MsgPreVoteResponse answers MsgPreVote.
	MsgPreVoteResponse RaftMessageType = 6
	// MsgHeartbeat carries the leader's commit index (at most the
	// recipient's match index) and keeps followers from campaigning.
	MsgHeartbeat RaftMessageType = 7
	// MsgHeartbeatResponse answers MsgHeartbeat.
	MsgHeartbeatResponse RaftMessageType = 8
	// MsgTimeoutNow tells the recipient to campaign at once (leadership
	// transfer, thesis §3.10).
	MsgTimeoutNow RaftMessageType = 9
	// MsgReadIndex asks the leader for a read index (thesis §6.4); a
	// follower forwards its clients' linearizable reads with it. Context is
	// the requester's read id.
	MsgReadIndex RaftMessageType = 10
	// MsgReadIndexResponse answers MsgReadIndex with the same Context: Index
	// is the read index, confirmed by a heartbeat round after the request
	// arrived. Reject means the recipient is not (or no longer) the leader.
	MsgReadIndexResponse RaftMessageType = 11
	// MsgSnapshot is one chunk of InstallSnapshot (§7): Snapshot holds the
	// chunk in the encoding of package snapshot (snapshot.AppendChunk),
	// opaque here. Term is the leader's term.
	MsgSnapshot RaftMessageType = 12
	// MsgSnapshotAck answers MsgSnapshot: Snapshot holds the receiver's
	// progress (snapshot.AppendAck), the offset it wants next.
	MsgSnapshotAck RaftMessageType = 13

	maxRaftMessageType = MsgSnapshotAck
)

func (t RaftMessageType) String() string {
	switch t {
	case MsgAppend:
		return "MsgAppend"
	case MsgAppendResponse:
		return "MsgAppendResponse"
	case MsgVote:
		return "MsgVote"
	case MsgVoteResponse:
		return "MsgVoteResponse"
	case MsgPreVote:
		return "MsgPreVote"
	case MsgPreVoteResponse:
		return "MsgPreVoteResponse"
	case MsgHeartbeat:
		return "MsgHeartbeat"
	case MsgHeartbeatResponse:
		return "MsgHeartbeatResponse"
	case MsgTimeoutNow:
		return "MsgTimeoutNow"
	case MsgReadIndex:
		return "MsgReadIndex"
	case MsgReadIndexResponse:
		return "MsgReadIndexResponse"
	case MsgSnapshot:
		return "MsgSnapshot"
	case MsgSnapshotAck:
		return "MsgSnapshotAck"
	}
	return fmt.Sprintf("raft-message-type(%d)", uint8(t))
}

// Valid reports whether t is a message type this version knows.
func (t RaftMessageType) Valid() bool { return t >= MsgAppend && t <= maxRaftMessageType }

// RaftMessage is one Raft RPC between two replicas of a group. Field meaning
// depends on Type (see the type constants). Brokers multiplex the messages of
// all groups on one subject per destination broker, so every message names
// its GroupID.
type RaftMessage struct {
	GroupID uint64
	From    uint64 // sending broker (node) id
	To      uint64 // receiving broker (node) id
	Type    RaftMessageType
	Term    uint64
	// LogTerm is prevLogTerm (MsgAppend), lastLogTerm (votes) or the hint
	// term of a rejected MsgAppendResponse.
	LogTerm uint64
	// Index is prevLogIndex (MsgAppend), lastLogIndex (votes), the match
	// index (MsgAppendResponse), the rejected probe index, or the last
	// index the follower received matching the leader, durable or not
	// (MsgHeartbeatResponse).
	Index uint64
	// Commit is the leader's commit index (MsgAppend, MsgHeartbeat) or the
	// follower's durable match index (MsgHeartbeatResponse, the index a
	// MsgAppendResponse would acknowledge).
	Commit     uint64
	RejectHint uint64
	Reject     bool
	// Force marks a vote request sent because of MsgTimeoutNow: it
	// overrides the recipients' leader lease (thesis §3.10, §4.2.3).
	Force bool
	// Context is opaque to the transport: heartbeats and their responses
	// carry the leader's ReadIndex round, MsgReadIndex and its response the
	// requester's read id.
	Context uint64
	Entries []Entry
	// Snapshot is the opaque payload of MsgSnapshot and MsgSnapshotAck (a
	// snapshot chunk or ack, see package snapshot); empty otherwise.
	Snapshot []byte
}

// RaftMessageVersion is the newest encoding version: AppendRaftMessage
// writes version 2 for a message with a Snapshot payload and version 1,
// which every earlier reader decodes, for any other message.
// DecodeRaftMessage reads both.
const RaftMessageVersion = 2

const raftMessageVersion1 = 1

// ErrCorruptRaftMessage marks every Raft message that cannot be decoded.
var ErrCorruptRaftMessage = errors.New("protocol: corrupt raft message")

const (
	raftFlagReject = 1 << 0
	raftFlagForce  = 1 << 1
	raftKnownFlags = raftFlagReject | raftFlagForce
)

// AppendRaftMessage appends the encoding of m to dst and returns it.
//
// Encoding, version 1 (integers are unsigned varints unless noted):
//
//	version  byte (1; 2 when a Snapshot payload follows)
//	type     byte
//	flags    byte   bit 0 reject, bit 1 force; other bits must be zero
//	groupID from to term logTerm index commit rejectHint context
//	count    number of entries
//	entries  count times: index term type(byte) length data
//
// Version 2 is version 1 followed by the Snapshot payload: length data.
func AppendRaftMessage(dst []byte, m *RaftMessage) []byte {
	var flags byte
	if m.Reject {
		flags |= raftFlagReject
	}
	if m.Force {
		flags |= raftFlagForce
	}
	version := byte(raftMessageVersion1)
	if len(m.Snapshot) > 0 {
		version = 2
	}
	dst = append(dst, version, byte(m.Type), flags)
	dst = binary.AppendUvarint(dst, m.GroupID)
	dst = binary.AppendUvarint(dst, m.From)
	dst = binary.AppendUvarint(dst, m.To)
	dst = binary.AppendUvarint(dst, m.Term)
	dst = binary.AppendUvarint(dst, m.LogTerm)
	dst = binary.AppendUvarint(dst, m.Index)
	dst = binary.AppendUvarint(dst, m.Commit)
	dst = binary.AppendUvarint(dst, m.RejectHint)
	dst = binary.AppendUvarint(dst, m.Context)
	dst = binary.AppendUvarint(dst, uint64(len(m.Entries)))
	for i := range m.Entries {
		e := &m.Entries[i]
		dst = binary.AppendUvarint(dst, e.Index)
		dst = binary.AppendUvarint(dst, e.Term)
		dst = append(dst, byte(e.Type))
		dst = binary.AppendUvarint(dst, uint64(len(e.Data)))
		dst = append(dst, e.Data...)
	}
	if len(m.Snapshot) > 0 {
		dst = binary.AppendUvarint(dst, uint64(len(m.Snapshot)))
		dst = append(dst, m.Snapshot...)
	}
	return dst
}

// RaftMessageSize returns the encoded size of m without encoding it.
func RaftMessageSize(m *RaftMessage) int {
	n := 3 + uvarintLen(m.GroupID) + uvarintLen(m.From) + uvarintLen(m.To) +
		uvarintLen(m.Term) + uvarintLen(m.LogTerm) + uvarintLen(m.Index) +
		uvarintLen(m.Commit) + uvarintLen(m.RejectHint) + uvarintLen(m.Context) +
		uvarintLen(uint64(len(m.Entries)))
	for i := range m.Entries {
		n += RaftEntrySize(&m.Entries[i])
	}
	if len(m.Snapshot) > 0 {
		n += uvarintLen(uint64(len(m.Snapshot))) + len(m.Snapshot)
	}
	return n
}

// RaftEntrySize is what AppendRaftMessage spends on entry e: its Data and
// the 4 to 31 bytes of index, term, type and length before it (7 or 8 for
// an entry of a few hundred bytes at an index of a few million).
func RaftEntrySize(e *Entry) int {
	return uvarintLen(e.Index) + uvarintLen(e.Term) + 1 + uvarintLen(uint64(len(e.Data))) + len(e.Data)
}

// MaxRaftHeaderSize bounds what AppendRaftMessage spends on a message
// besides its entries (RaftEntrySize each) and its Snapshot payload's
// bytes: version, type and flags, then eleven varints (nine fields, the
// entry count, the payload's length). So RaftMessageSize(m) is at most
// MaxRaftHeaderSize plus the entries' RaftEntrySize plus len(m.Snapshot).
const MaxRaftHeaderSize = 3 + 11*binary.MaxVarintLen64

func uvarintLen(v uint64) int {
	return (bits.Len64(v|1) + 6) / 7
}

// DecodeRaftMessage decodes one message that fills b exactly. Entry Data
// slices alias b (no copy); the caller must not reuse b while the message is
// in use; so does the Snapshot payload. Errors wrap ErrCorruptRaftMessage.
func DecodeRaftMessage(b []byte) (RaftMessage, error) {
	var m RaftMessage
	if len(b) < 3 {
		return m, fmt.Errorf("%w: %d bytes is shorter than the header", ErrCorruptRaftMessage, len(b))
	}
	version := b[0]
	if version != raftMessageVersion1 && version != RaftMessageVersion {
		return m, fmt.Errorf("%w: unknown version %d (this version reads 1 to %d)", ErrCorruptRaftMessage, b[0], RaftMessageVersion)
	}
	m.Type = RaftMessageType(b[1])
	if !m.Type.Valid() {
		return m, fmt.Errorf("%w: unknown message type %d", ErrCorruptRaftMessage, b[1])
	}
	flags := b[2]
	if flags&^raftKnownFlags != 0 {
		return m, fmt.Errorf("%w: unknown flags %#x", ErrCorruptRaftMessage, flags)
	}
	m.Reject = flags&raftFlagReject != 0
	m.Force = flags&raftFlagForce != 0
	d := decoder{buf: b, pos: 3}
	m.GroupID = d.uvarint()
	m.From = d.uvarint()
	m.To = d.uvarint()
	m.Term = d.uvarint()
	m.LogTerm = d.uvarint()
	m.Index = d.uvarint()
	m.Commit = d.uvarint()
	m.RejectHint = d.uvarint()
	m.Context = d.uvarint()
	count := d.uvarint()
	if d.err != nil {
		return RaftMessage{}, d.err
	}
	// Every entry takes at least 4 bytes, which bounds the allocation.
	if count > uint64(len(b)-d.pos)/4 {
		return RaftMessage{}, fmt.Errorf("%w: %d entries cannot fit in %d bytes", ErrCorruptRaftMessage, count, len(b)-d.pos)
	}
	if count > 0 {
		m.Entries = make([]Entry, count)
	}
	for i := range m.Entries {
		e := &m.Entries[i]
		e.Index = d.uvarint()
		e.Term = d.uvarint()
		e.Type = EntryType(d.byte())
		size := d.uvarint()
		if d.err != nil {
			return RaftMessage{}, d.err
		}
		if !e.Type.Valid() {
			return RaftMessage{}, fmt.Errorf("%w: entry %d has unknown type %d", ErrCorruptRaftMessage, i, uint8(e.Type))
		}
		if size > uint64(len(b)-d.pos) {
			return RaftMessage{}, fmt.Errorf("%w: entry %d claims %d bytes, %d left", ErrCorruptRaftMessage, i, size, len(b)-d.pos)
		}
		e.Data = b[d.pos : d.pos+int(size) : d.pos+int(size)]
		d.pos += int(size)
	}
	if version == 2 {
		size := d.uvarint()
		if d.err != nil {
			return RaftMessage{}, d.err
		}
		if size == 0 || size > uint64(len(b)-d.pos) {
			return RaftMessage{}, fmt.Errorf("%w: snapshot payload of %d bytes, %d left", ErrCorruptRaftMessage, size, len(b)-d.pos)
		}
		m.Snapshot = b[d.pos : d.pos+int(size) : d.pos+int(size)]
		d.pos += int(size)
	}
	if d.pos != len(b) {
		return RaftMessage{}, fmt.Errorf("%w: %d trailing bytes", ErrCorruptRaftMessage, len(b)-d.pos)
	}
	return m, nil
}

type decoder struct {
	buf []byte
	pos int
	err error
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.buf[d.pos:])
	if n <= 0 {
		d.err = fmt.Errorf("%w: bad varint at byte %d", ErrCorruptRaftMessage, d.pos)
		return 0
	}
	d.pos += n
	return v
}

func (d *decoder) byte() byte {
	if d.err != nil {
		return 0
	}
	if d.pos >= len(d.buf) {
		d.err = fmt.Errorf("%w: truncated at byte %d", ErrCorruptRaftMessage, d.pos)
		return 0
	}
	v := d.buf[d.pos]
	d.pos++
	return v
}
