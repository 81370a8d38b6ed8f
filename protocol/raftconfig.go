package protocol

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
)

// RaftConfiguration is a Raft group's membership, carried in the Data of an
// EntryConfig entry (every config entry holds the whole configuration, not a
// delta). Voters is the configuration in effect (C_new during a change);
// OutgoingVoters is non-empty only while a joint configuration C_old,new is
// in effect (Raft §6, thesis §4.3) and then holds C_old. Learners receive
// the log but never count toward a quorum. The lists are sorted, hold no 0
// and no duplicate, and a learner is never a voter.
//
// Encoding (little endian), version 1:
//
//	+---------+-------------+--------------+----------------+----------+------------------+----------+
//	| ver u8  | nVoters u32 | nOutgoing u32| nLearners u32  | voters   | outgoing voters  | learners |
//	|   = 1   |             |              |                | u64 each | u64 each         | u64 each |
//	+---------+-------------+--------------+----------------+----------+------------------+----------+
type RaftConfiguration struct {
	Voters         []uint64
	OutgoingVoters []uint64
	Learners       []uint64
}

const (
	raftConfigVersion = 1
	// MaxRaftConfigurationIDs bounds each list of a RaftConfiguration.
	MaxRaftConfigurationIDs = 1 << 12
	raftConfigHeaderSize    = 1 + 3*4
)

// ErrCorruptRaftConfiguration marks an EntryConfig payload that does not
// decode or breaks the rules of RaftConfiguration.
var ErrCorruptRaftConfiguration = errors.New("protocol: corrupt raft configuration")

// Joint reports whether c is a joint configuration (C_old,new).
func (c *RaftConfiguration) Joint() bool { return len(c.OutgoingVoters) > 0 }

// Validate reports whether c follows the rules of RaftConfiguration. An
// empty Voters list is allowed only for the zero configuration of a replica
// that has not learned one yet; encoding requires voters.
func (c *RaftConfiguration) Validate() error {
	lists := [...]struct {
		name string
		ids  []uint64
	}{{"voters", c.Voters}, {"outgoing voters", c.OutgoingVoters}, {"learners", c.Learners}}
	for _, l := range lists {
		if len(l.ids) > MaxRaftConfigurationIDs {
			return fmt.Errorf("%w: %d %s (max %d)", ErrCorruptRaftConfiguration, len(l.ids), l.name, MaxRaftConfigurationIDs)
		}
		for i, id := range l.ids {
			if id == 0 {
				return fmt.Errorf("%w: id 0 among %s", ErrCorruptRaftConfiguration, l.name)
			}
			if i > 0 && l.ids[i-1] >= id {
				return fmt.Errorf("%w: %s not sorted or duplicated", ErrCorruptRaftConfiguration, l.name)
			}
		}
	}
	for _, id := range c.Learners {
		if slices.Contains(c.Voters, id) || slices.Contains(c.OutgoingVoters, id) {
			return fmt.Errorf("%w: learner %d is also a voter", ErrCorruptRaftConfiguration, id)
		}
	}
	return nil
}

// AppendRaftConfiguration appends the encoding of c to dst. c must be
// valid (Validate) and have voters; an invalid c is a programming error.
func AppendRaftConfiguration(dst []byte, c *RaftConfiguration) []byte {
	if err := c.Validate(); err != nil || len(c.Voters) == 0 {
		panic(fmt.Sprintf("protocol: encoding an invalid raft configuration %+v: %v", *c, err))
	}
	dst = append(dst, raftConfigVersion)
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(c.Voters)))
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(c.OutgoingVoters)))
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(c.Learners)))
	for _, ids := range [...][]uint64{c.Voters, c.OutgoingVoters, c.Learners} {
		for _, id := range ids {
			dst = binary.LittleEndian.AppendUint64(dst, id)
		}
	}
	return dst
}

// DecodeRaftConfiguration decodes an EntryConfig payload. Errors wrap
// ErrCorruptRaftConfiguration. The result does not alias b.
func DecodeRaftConfiguration(b []byte) (RaftConfiguration, error) {
	if len(b) < raftConfigHeaderSize {
		return RaftConfiguration{}, fmt.Errorf("%w: %d bytes, header needs %d", ErrCorruptRaftConfiguration, len(b), raftConfigHeaderSize)
	}
	if b[0] != raftConfigVersion {
		return RaftConfiguration{}, fmt.Errorf("%w: unknown version %d", ErrCorruptRaftConfiguration, b[0])
	}
	var counts [3]uint64
	total := uint64(0)
	for i := range counts {
		counts[i] = uint64(binary.LittleEndian.Uint32(b[1+4*i:]))
		if counts[i] > MaxRaftConfigurationIDs {
			return RaftConfiguration{}, fmt.Errorf("%w: list of %d ids (max %d)", ErrCorruptRaftConfiguration, counts[i], MaxRaftConfigurationIDs)
		}
		total += counts[i]
	}
	if want := raftConfigHeaderSize + 8*total; uint64(len(b)) != want {
		return RaftConfiguration{}, fmt.Errorf("%w: %d bytes, want %d", ErrCorruptRaftConfiguration, len(b), want)
	}
	if counts[0] == 0 {
		return RaftConfiguration{}, fmt.Errorf("%w: no voters", ErrCorruptRaftConfiguration)
	}
	rest := b[raftConfigHeaderSize:]
	var lists [3][]uint64
	for i, n := range counts {
		if n == 0 {
			continue
		}
		ids := make([]uint64, n)
		for j := range ids {
			ids[j] = binary.LittleEndian.Uint64(rest)
			rest = rest[8:]
		}
		lists[i] = ids
	}
	c := RaftConfiguration{Voters: lists[0], OutgoingVoters: lists[1], Learners: lists[2]}
	if err := c.Validate(); err != nil {
		return RaftConfiguration{}, err
	}
	return c, nil
}
