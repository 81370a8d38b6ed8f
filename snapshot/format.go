package snapshot

import (
	"encoding/binary"
	"fmt"
	"time"

	"github.com/raftmq/raftmq/protocol"
)

// FormatVersion is the snapshot file format version this package writes.
// It reads exactly this version.
const FormatVersion = 1

// File layout constants; see the drawing in doc.go.
const (
	fileMagic      = "RAFTMQSN"
	trailerMagic   = uint32(0x444e4553) // "SEND" little-endian
	codecZstd      = 1
	headerSize     = 20
	trailerSize    = 24
	trailerCRCSpan = 8 // the CRC and the end magic are not covered by the CRC
)

// Limits on metadata, so a damaged length can not make a reader allocate
// without bound.
const (
	// MaxExtraBytes bounds Meta.Extra.
	MaxExtraBytes = 1 << 20
	// MaxConfigurationIDs bounds each list of a Configuration.
	MaxConfigurationIDs = 1 << 12
	maxMetaBytes        = 40 + 4*3 + 8*3*MaxConfigurationIDs + 4 + MaxExtraBytes
)

var le = binary.LittleEndian

// ID names a snapshot: the index and term of the last entry it includes.
type ID struct {
	Index uint64
	Term  uint64
}

func (id ID) String() string { return fmt.Sprintf("%d/%d", id.Index, id.Term) }

// Configuration is the Raft configuration as of the snapshot's index.
// OutgoingVoters is non-empty only while a joint configuration
// (C_old,new, §6) is in effect: Voters is then C_new and OutgoingVoters
// C_old. The package stores the lists as given and never interprets them.
type Configuration struct {
	Voters         []uint64
	OutgoingVoters []uint64
	Learners       []uint64
}

// Meta is a snapshot's metadata. It is written before the body and read
// without decompressing it.
type Meta struct {
	// Index and Term are the last Raft index the snapshot includes and its
	// term (§7: lastIncludedIndex, lastIncludedTerm). Index is never 0.
	Index uint64
	Term  uint64
	// Configuration is the Raft configuration as of Index.
	Configuration Configuration
	// NextOffset is the record offset that the first record batch after
	// Index gets (segmentlog's NextOffset as of Index): a replica that
	// installs the snapshot continues its record offsets there.
	NextOffset uint64
	// Created is when the snapshot was taken; Store.Create fills in the
	// current time when it is zero. Stored with nanosecond precision.
	Created time.Time
	// Extra is small opaque owner data (at most MaxExtraBytes), for example
	// the body's own schema version or the group id.
	Extra []byte
}

// ID returns the snapshot's id.
func (m Meta) ID() ID { return ID{Index: m.Index, Term: m.Term} }

func (m Meta) validate() error {
	if m.Index == 0 {
		return fmt.Errorf("%w: index 0", ErrInvalidMeta)
	}
	if len(m.Extra) > MaxExtraBytes {
		return fmt.Errorf("%w: %d bytes of extra data, at most %d", ErrInvalidMeta, len(m.Extra), MaxExtraBytes)
	}
	c := m.Configuration
	for _, ids := range [][]uint64{c.Voters, c.OutgoingVoters, c.Learners} {
		if len(ids) > MaxConfigurationIDs {
			return fmt.Errorf("%w: %d ids in a configuration list, at most %d", ErrInvalidMeta, len(ids), MaxConfigurationIDs)
		}
	}
	return nil
}

// appendMeta appends the metadata encoding:
//
//	u64 index, u64 term, u64 nextOffset, i64 created (Unix ns), u64 reserved (0)
//	u32 n, n × u64 voters; u32 n, n × u64 outgoing voters; u32 n, n × u64 learners
//	u32 n, n bytes extra
func appendMeta(dst []byte, m Meta) []byte {
	dst = le.AppendUint64(dst, m.Index)
	dst = le.AppendUint64(dst, m.Term)
	dst = le.AppendUint64(dst, m.NextOffset)
	dst = le.AppendUint64(dst, uint64(m.Created.UnixNano()))
	dst = le.AppendUint64(dst, 0)
	c := m.Configuration
	for _, ids := range [][]uint64{c.Voters, c.OutgoingVoters, c.Learners} {
		dst = le.AppendUint32(dst, uint32(len(ids)))
		for _, id := range ids {
			dst = le.AppendUint64(dst, id)
		}
	}
	dst = le.AppendUint32(dst, uint32(len(m.Extra)))
	return append(dst, m.Extra...)
}

// decodeMeta decodes appendMeta's encoding; b must be exactly one.
func decodeMeta(b []byte) (Meta, error) {
	var m Meta
	if len(b) < 40 {
		return m, fmt.Errorf("metadata of %d bytes is shorter than 40", len(b))
	}
	m.Index, m.Term, m.NextOffset = le.Uint64(b), le.Uint64(b[8:]), le.Uint64(b[16:])
	m.Created = time.Unix(0, int64(le.Uint64(b[24:])))
	b = b[40:]
	lists := [3][]uint64{}
	for i := range lists {
		if len(b) < 4 {
			return m, fmt.Errorf("metadata truncated in configuration list %d", i)
		}
		n := le.Uint32(b)
		b = b[4:]
		if n > MaxConfigurationIDs || uint64(len(b)) < 8*uint64(n) {
			return m, fmt.Errorf("configuration list %d of %d ids does not fit", i, n)
		}
		if n > 0 {
			lists[i] = make([]uint64, n)
			for j := range lists[i] {
				lists[i][j] = le.Uint64(b[8*j:])
			}
		}
		b = b[8*n:]
	}
	m.Configuration = Configuration{Voters: lists[0], OutgoingVoters: lists[1], Learners: lists[2]}
	if len(b) < 4 {
		return m, fmt.Errorf("metadata truncated before the extra data")
	}
	n := le.Uint32(b)
	b = b[4:]
	if n > MaxExtraBytes || uint64(len(b)) != uint64(n) {
		return m, fmt.Errorf("extra data of %d bytes, %d left", n, len(b))
	}
	if n > 0 {
		m.Extra = append([]byte(nil), b...)
	}
	if m.Index == 0 {
		return m, fmt.Errorf("index 0")
	}
	return m, nil
}

// appendHeader appends the fixed header and the metadata.
func appendHeader(dst []byte, m Meta) []byte {
	start := len(dst)
	dst = append(dst, fileMagic...)
	dst = le.AppendUint16(dst, FormatVersion)
	dst = le.AppendUint16(dst, codecZstd)
	dst = le.AppendUint32(dst, 0) // metadata length, patched below
	dst = le.AppendUint32(dst, 0) // metadata CRC, patched below
	dst = appendMeta(dst, m)
	metaLen := len(dst) - start - headerSize
	le.PutUint32(dst[start+12:], uint32(metaLen))
	crc := protocol.UpdateCRC32C(protocol.CRC32C(dst[start:start+16]), dst[start+headerSize:])
	le.PutUint32(dst[start+16:], crc)
	return dst
}

// fixedHeader is the decoded fixed header.
type fixedHeader struct {
	metaLen uint32
	metaCRC uint32
}

// decodeFixedHeader checks magic, version and codec of the first headerSize
// bytes. The returned error is a bare description (or wraps
// ErrUnsupportedVersion); callers add the path.
func decodeFixedHeader(b []byte) (fixedHeader, error) {
	if len(b) < headerSize {
		return fixedHeader{}, fmt.Errorf("header of %d bytes is shorter than %d", len(b), headerSize)
	}
	if string(b[:8]) != fileMagic {
		return fixedHeader{}, fmt.Errorf("bad magic %q", b[:8])
	}
	if v := le.Uint16(b[8:]); v != FormatVersion {
		return fixedHeader{}, fmt.Errorf("%w %d (this build reads %d)", ErrUnsupportedVersion, v, FormatVersion)
	}
	if c := le.Uint16(b[10:]); c != codecZstd {
		return fixedHeader{}, fmt.Errorf("unknown body codec %d", c)
	}
	h := fixedHeader{metaLen: le.Uint32(b[12:]), metaCRC: le.Uint32(b[16:])}
	if h.metaLen > maxMetaBytes {
		return fixedHeader{}, fmt.Errorf("metadata length %d exceeds %d", h.metaLen, maxMetaBytes)
	}
	return h, nil
}

// checkMeta verifies the metadata CRC of header+meta bytes and decodes it.
func checkMeta(header, meta []byte, h fixedHeader) (Meta, error) {
	if got := protocol.UpdateCRC32C(protocol.CRC32C(header[:16]), meta); got != h.metaCRC {
		return Meta{}, fmt.Errorf("metadata CRC %#08x, header says %#08x", got, h.metaCRC)
	}
	return decodeMeta(meta)
}

// trailer is the decoded fixed trailer.
type trailer struct {
	bodyLen, rawLen uint64
	crc             uint32
}

func appendTrailer(dst []byte, bodyLen, rawLen uint64) []byte {
	dst = le.AppendUint64(dst, bodyLen)
	return le.AppendUint64(dst, rawLen)
}

func decodeTrailer(b []byte) (trailer, error) {
	if len(b) != trailerSize {
		return trailer{}, fmt.Errorf("trailer of %d bytes", len(b))
	}
	if m := le.Uint32(b[20:]); m != trailerMagic {
		return trailer{}, fmt.Errorf("bad trailer magic %#08x", m)
	}
	return trailer{bodyLen: le.Uint64(b), rawLen: le.Uint64(b[8:]), crc: le.Uint32(b[16:])}, nil
}

// checkLayout checks that a file of size bytes holds exactly header,
// metadata, body and trailer.
func checkLayout(size uint64, h fixedHeader, t trailer) error {
	want := uint64(headerSize) + uint64(h.metaLen) + trailerSize
	if t.bodyLen > size || size-t.bodyLen != want {
		return fmt.Errorf("file of %d bytes does not hold a %d-byte header and metadata, a %d-byte body and a %d-byte trailer",
			size, headerSize+h.metaLen, t.bodyLen, trailerSize)
	}
	return nil
}
