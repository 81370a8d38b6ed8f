package segmentlog

import (
	"encoding/binary"
	"fmt"
	"io"

	"github.com/raftmq/raftmq/protocol"
)

// Segment file header (see doc.go for the drawing).
const (
	segmentMagic      = "raftmqSG"
	segmentVersion    = 1
	segmentHeaderSize = 64
)

// Entry frame header.
const frameHeaderSize = 32

// Index file layout.
const (
	indexMagic      = "raftmqIX"
	indexVersion    = 1
	indexHeaderSize = 96
	indexPointSize  = 32
)

const (
	segmentSuffix = ".log"
	indexSuffix   = ".idx"
	tempSuffix    = ".tmp"
	lockFileName  = "LOCK"
)

var le = binary.LittleEndian

// segmentHeader is the decoded fixed header at the start of a segment file.
type segmentHeader struct {
	firstIndex  uint64 // Raft index of the segment's first entry
	prevTerm    uint64 // term of firstIndex-1
	firstOffset uint64 // record offset the segment's first record batch gets
	generation  uint64 // bumped by Reset; lower generations are leftovers
	createdMs   int64  // wall clock at creation, unix milliseconds
}

func encodeSegmentHeader(b []byte, h *segmentHeader) {
	_ = b[segmentHeaderSize-1]
	clear(b[:segmentHeaderSize])
	copy(b[0:8], segmentMagic)
	le.PutUint16(b[8:], segmentVersion)
	le.PutUint64(b[16:], h.firstIndex)
	le.PutUint64(b[24:], h.prevTerm)
	le.PutUint64(b[32:], h.firstOffset)
	le.PutUint64(b[40:], h.generation)
	le.PutUint64(b[48:], uint64(h.createdMs))
	le.PutUint32(b[60:], protocol.CRC32C(b[:60]))
}

// decodeSegmentHeader checks and decodes a segment header. The returned
// string is a reason for corruption, empty when the header is valid.
func decodeSegmentHeader(b []byte) (segmentHeader, string) {
	var h segmentHeader
	if len(b) < segmentHeaderSize {
		return h, fmt.Sprintf("file of %d bytes is shorter than the segment header", len(b))
	}
	if string(b[0:8]) != segmentMagic {
		return h, "bad segment magic"
	}
	if got, want := protocol.CRC32C(b[:60]), le.Uint32(b[60:]); got != want {
		return h, fmt.Sprintf("segment header CRC mismatch (stored %#08x, computed %#08x)", want, got)
	}
	if v := le.Uint16(b[8:]); v != segmentVersion {
		return h, fmt.Sprintf("unknown segment format version %d", v)
	}
	h.firstIndex = le.Uint64(b[16:])
	h.prevTerm = le.Uint64(b[24:])
	h.firstOffset = le.Uint64(b[32:])
	h.generation = le.Uint64(b[40:])
	h.createdMs = int64(le.Uint64(b[48:]))
	if h.firstIndex == 0 {
		return h, "segment first index is zero"
	}
	return h, ""
}

// frameHeader is the decoded header of one entry frame.
type frameHeader struct {
	crc    uint32
	length uint32
	index  uint64
	term   uint64
	typ    protocol.EntryType
}

// putFrameHeader writes every header field except the CRC.
func putFrameHeader(b []byte, length int, index, term uint64, typ protocol.EntryType) {
	_ = b[frameHeaderSize-1]
	le.PutUint32(b[4:], uint32(length))
	le.PutUint64(b[8:], index)
	le.PutUint64(b[16:], term)
	le.PutUint64(b[24:], uint64(typ)) // type, then 7 zero bytes
}

// sealFrame computes and stores the CRC of a complete frame.
func sealFrame(frame []byte) {
	le.PutUint32(frame[0:], crc32c(0, frame[4:]))
}

func readFrameHeader(b []byte) frameHeader {
	return frameHeader{
		crc:    le.Uint32(b[0:]),
		length: le.Uint32(b[4:]),
		index:  le.Uint64(b[8:]),
		term:   le.Uint64(b[16:]),
		typ:    protocol.EntryType(b[24]),
	}
}

// isZero reports whether every byte of b is zero.
func isZero(b []byte) bool {
	for len(b) >= 8 {
		if le.Uint64(b) != 0 {
			return false
		}
		b = b[8:]
	}
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// checkFrameHeader validates the fields of a frame header that can be
// checked before the payload is read. maxEntryBytes bounds the length.
func checkFrameHeader(h *frameHeader, maxEntryBytes int) string {
	switch {
	case int64(h.length) > int64(maxEntryBytes):
		return fmt.Sprintf("entry length %d exceeds the limit %d", h.length, maxEntryBytes)
	case !h.typ.Valid():
		return fmt.Sprintf("unknown entry type %d", uint8(h.typ))
	case h.index == 0:
		return "entry index is zero"
	}
	return ""
}

// DecodeFrame decodes the entry frame at the start of b. It returns the
// entry (Data aliases b), the frame size, and an error wrapping ErrCorrupt
// when b does not start with a complete, valid frame. It is exported for
// tools that inspect segment files.
func DecodeFrame(b []byte, maxEntryBytes int) (protocol.Entry, int, error) {
	if len(b) < frameHeaderSize {
		return protocol.Entry{}, 0, fmt.Errorf("%w: %d bytes is shorter than a frame header", ErrCorrupt, len(b))
	}
	h := readFrameHeader(b)
	if reason := checkFrameHeader(&h, maxEntryBytes); reason != "" {
		return protocol.Entry{}, 0, fmt.Errorf("%w: %s", ErrCorrupt, reason)
	}
	size := frameHeaderSize + int(h.length)
	if len(b) < size {
		return protocol.Entry{}, 0, fmt.Errorf("%w: frame of %d bytes, %d available", ErrCorrupt, size, len(b))
	}
	if reason := checkFrameBody(&h, b[:size]); reason != "" {
		return protocol.Entry{}, 0, fmt.Errorf("%w: %s", ErrCorrupt, reason)
	}
	return protocol.Entry{Index: h.index, Term: h.term, Type: h.typ, Data: b[frameHeaderSize:size]}, size, nil
}

// checkFrameBody verifies the CRC of a complete frame and, for record
// batches, the batch header.
func checkFrameBody(h *frameHeader, frame []byte) string {
	if got := crc32c(0, frame[4:]); got != h.crc {
		return fmt.Sprintf("entry CRC mismatch (stored %#08x, computed %#08x)", h.crc, got)
	}
	if h.typ == protocol.EntryRecordBatch {
		if _, err := protocol.ReadBatchHeader(frame[frameHeaderSize:]); err != nil {
			return err.Error()
		}
	}
	return ""
}

// indexPoint is one entry of a sparse index: the frame of entry index
// starts at pos; offset is the log's next record offset before that entry
// (its base offset when it is a record batch); maxTime is the largest batch
// max timestamp in the segment up to and including that entry.
type indexPoint struct {
	index   uint64
	pos     int64
	offset  uint64
	maxTime int64
}

// indexSummary is what an index file records about its segment, used to
// check that the index still describes the segment (not stale).
type indexSummary struct {
	firstIndex   uint64
	lastIndex    uint64
	lastTerm     uint64
	dataEnd      int64
	nextOffset   uint64
	lastFramePos int64
	lastFrameCRC uint32
	maxTime      int64
}

// indexPieceBytes is the size of the pieces writeIndexFileTo encodes index
// points into: a sealed segment of small entries has thousands of points
// (512 KiB of index for 256 MiB at the default interval, 2 MiB at 4 KiB),
// and encoding them
// whole into a new buffer at every roll cost more in page faults on the
// fresh memory (about 5 ms a roll on the benchmark VM) than the encoding.
const indexPieceBytes = 64 << 10

// writeIndexFileTo writes the index file of a segment to w, encoding it in
// pieces into buf (at least indexPieceBytes long): the header, the points,
// and the CRC of the points.
func writeIndexFileTo(w io.Writer, buf []byte, sum *indexSummary, points []indexPoint) error {
	b := buf[:indexHeaderSize]
	clear(b)
	copy(b[0:8], indexMagic)
	le.PutUint16(b[8:], indexVersion)
	le.PutUint32(b[12:], uint32(len(points)))
	le.PutUint64(b[16:], sum.firstIndex)
	le.PutUint64(b[24:], sum.lastIndex)
	le.PutUint64(b[32:], sum.lastTerm)
	le.PutUint64(b[40:], uint64(sum.dataEnd))
	le.PutUint64(b[48:], sum.nextOffset)
	le.PutUint64(b[56:], uint64(sum.lastFramePos))
	le.PutUint32(b[64:], sum.lastFrameCRC)
	le.PutUint64(b[72:], uint64(sum.maxTime))
	le.PutUint32(b[92:], protocol.CRC32C(b[:92]))
	crc := uint32(0)
	for {
		n := min(len(points), (len(buf)-len(b))/indexPointSize)
		body := buf[len(b) : len(b)+n*indexPointSize]
		for i, pt := range points[:n] {
			p := body[i*indexPointSize:]
			le.PutUint64(p[0:], pt.index)
			le.PutUint64(p[8:], uint64(pt.pos))
			le.PutUint64(p[16:], pt.offset)
			le.PutUint64(p[24:], uint64(pt.maxTime))
		}
		crc = protocol.UpdateCRC32C(crc, body)
		points = points[n:]
		b = buf[:len(b)+len(body)]
		if len(points) == 0 && len(buf)-len(b) >= 4 {
			b = le.AppendUint32(b, crc)
			_, err := w.Write(b)
			return err
		}
		if _, err := w.Write(b); err != nil {
			return err
		}
		b = buf[:0]
	}
}

// decodeIndexFile decodes an index file; the string is the reason it is
// unusable, empty on success. An unusable index is rebuilt, never trusted.
func decodeIndexFile(b []byte) (indexSummary, []indexPoint, string) {
	var sum indexSummary
	if len(b) < indexHeaderSize+4 {
		return sum, nil, "index file too short"
	}
	if string(b[0:8]) != indexMagic || le.Uint16(b[8:]) != indexVersion {
		return sum, nil, "bad index magic or version"
	}
	if protocol.CRC32C(b[:92]) != le.Uint32(b[92:]) {
		return sum, nil, "index header CRC mismatch"
	}
	count := int(le.Uint32(b[12:]))
	if len(b) != indexHeaderSize+count*indexPointSize+4 {
		return sum, nil, "index file length does not match its point count"
	}
	body := b[indexHeaderSize : len(b)-4]
	if protocol.CRC32C(body) != le.Uint32(b[len(b)-4:]) {
		return sum, nil, "index points CRC mismatch"
	}
	sum = indexSummary{
		firstIndex:   le.Uint64(b[16:]),
		lastIndex:    le.Uint64(b[24:]),
		lastTerm:     le.Uint64(b[32:]),
		dataEnd:      int64(le.Uint64(b[40:])),
		nextOffset:   le.Uint64(b[48:]),
		lastFramePos: int64(le.Uint64(b[56:])),
		lastFrameCRC: le.Uint32(b[64:]),
		maxTime:      int64(le.Uint64(b[72:])),
	}
	points := make([]indexPoint, count)
	for i := range points {
		p := body[i*indexPointSize:]
		points[i] = indexPoint{
			index:   le.Uint64(p[0:]),
			pos:     int64(le.Uint64(p[8:])),
			offset:  le.Uint64(p[16:]),
			maxTime: int64(le.Uint64(p[24:])),
		}
	}
	for i := 1; i < len(points); i++ {
		if points[i].index <= points[i-1].index || points[i].pos <= points[i-1].pos {
			return sum, nil, "index points out of order"
		}
	}
	return sum, points, ""
}

func segmentFileName(firstIndex uint64) string {
	return fmt.Sprintf("%020d%s", firstIndex, segmentSuffix)
}

func indexFileName(firstIndex uint64) string {
	return fmt.Sprintf("%020d%s", firstIndex, indexSuffix)
}

// parseSegmentName returns the first index encoded in a file name of the
// form <20 digits><suffix>.
func parseSegmentName(name, suffix string) (uint64, bool) {
	if len(name) != 20+len(suffix) || name[20:] != suffix {
		return 0, false
	}
	var v uint64
	for _, c := range name[:20] {
		if c < '0' || c > '9' {
			return 0, false
		}
		d := uint64(c - '0')
		if v > (^uint64(0)-d)/10 {
			return 0, false
		}
		v = v*10 + d
	}
	return v, true
}
