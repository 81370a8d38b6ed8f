package snapshot

import (
	"fmt"

	"github.com/raftmq/raftmq/protocol"
)

// ChunkVersion is the version of the chunk and ack encodings.
const ChunkVersion = 1

// Message kinds (byte 1 of every chunk or ack).
const (
	kindChunk = 1
	kindAck   = 2
)

const flagDone = 1

// ChunkHeaderSize is the size of an encoded chunk without its data: a chunk
// with n data bytes encodes to ChunkHeaderSize+n bytes.
const ChunkHeaderSize = 44

// AckSize is the size of an encoded Ack.
const AckSize = 32

// Chunk is one piece of a snapshot file in flight (InstallSnapshot, §7).
//
// Encoding (little-endian), ChunkHeaderSize bytes then the data:
//
//	offset size field
//	     0    1 version (ChunkVersion)
//	     1    1 kind (1 = chunk)
//	     2    1 flags (bit 0: done, this chunk ends the file)
//	     3    1 reserved, 0
//	     4    8 snapshot index
//	    12    8 snapshot term
//	    20    8 offset of Data in the file
//	    28    8 total file size
//	    36    4 data length n
//	    40    4 CRC32C over bytes [0, 40) and the data
//	    44    n data
type Chunk struct {
	ID     ID
	Offset uint64
	Total  uint64
	// Done is set on the chunk that ends the file (Offset+len(Data) == Total).
	Done bool
	Data []byte
}

// AppendChunk appends c's encoding to dst.
func AppendChunk(dst []byte, c Chunk) []byte {
	start := len(dst)
	dst = appendChunkHeader(dst, c.ID, c.Offset, c.Total, c.Done, len(c.Data))
	dst = append(dst, c.Data...)
	return sealChunk(dst, start)
}

func appendChunkHeader(dst []byte, id ID, offset, total uint64, done bool, dataLen int) []byte {
	var flags byte
	if done {
		flags = flagDone
	}
	dst = append(dst, ChunkVersion, kindChunk, flags, 0)
	dst = le.AppendUint64(dst, id.Index)
	dst = le.AppendUint64(dst, id.Term)
	dst = le.AppendUint64(dst, offset)
	dst = le.AppendUint64(dst, total)
	dst = le.AppendUint32(dst, uint32(dataLen))
	return le.AppendUint32(dst, 0) // CRC, see sealChunk
}

// sealChunk writes the CRC of the chunk encoded at dst[start:].
func sealChunk(dst []byte, start int) []byte {
	msg := dst[start:]
	crc := protocol.UpdateCRC32C(protocol.CRC32C(msg[:40]), msg[ChunkHeaderSize:])
	le.PutUint32(msg[40:], crc)
	return dst
}

// DecodeChunk decodes one chunk, which must be all of b. The chunk's Data
// aliases b. Every error wraps ErrBadChunk (or ErrUnsupportedVersion).
func DecodeChunk(b []byte) (Chunk, error) {
	if len(b) < ChunkHeaderSize {
		return Chunk{}, fmt.Errorf("%w: %d bytes, shorter than a chunk header", ErrBadChunk, len(b))
	}
	if b[0] != ChunkVersion {
		return Chunk{}, fmt.Errorf("%w: chunk version %d (this build reads %d)", ErrUnsupportedVersion, b[0], ChunkVersion)
	}
	if b[1] != kindChunk {
		return Chunk{}, fmt.Errorf("%w: message kind %d is not a chunk", ErrBadChunk, b[1])
	}
	if b[2]&^flagDone != 0 || b[3] != 0 {
		return Chunk{}, fmt.Errorf("%w: unknown flags %#x/%#x", ErrBadChunk, b[2], b[3])
	}
	if n := le.Uint32(b[36:]); uint64(n) != uint64(len(b)-ChunkHeaderSize) {
		return Chunk{}, fmt.Errorf("%w: data length %d, %d bytes follow the header", ErrBadChunk, n, len(b)-ChunkHeaderSize)
	}
	if got, want := protocol.UpdateCRC32C(protocol.CRC32C(b[:40]), b[ChunkHeaderSize:]), le.Uint32(b[40:]); got != want {
		return Chunk{}, fmt.Errorf("%w: CRC %#08x, chunk says %#08x", ErrBadChunk, got, want)
	}
	c := Chunk{
		ID:     ID{Index: le.Uint64(b[4:]), Term: le.Uint64(b[12:])},
		Offset: le.Uint64(b[20:]),
		Total:  le.Uint64(b[28:]),
		Done:   b[2]&flagDone != 0,
		Data:   b[ChunkHeaderSize:len(b):len(b)],
	}
	end := c.Offset + uint64(len(c.Data))
	if end < c.Offset || end > c.Total {
		return Chunk{}, fmt.Errorf("%w: bytes [%d, %d) beyond the file size %d", ErrBadChunk, c.Offset, end, c.Total)
	}
	if c.Done != (end == c.Total) {
		return Chunk{}, fmt.Errorf("%w: done flag %t for bytes [%d, %d) of %d", ErrBadChunk, c.Done, c.Offset, end, c.Total)
	}
	if len(c.Data) == 0 {
		return Chunk{}, fmt.Errorf("%w: empty chunk at %d of %d", ErrBadChunk, c.Offset, c.Total)
	}
	return c, nil
}

// Ack is a receiver's answer to a chunk: the next byte offset it wants
// (after a gap or a duplicate, the offset it still waits for) and whether
// the snapshot is installed. A sender resumes from Next.
//
// Encoding (little-endian), AckSize bytes:
//
//	offset size field
//	     0    1 version (ChunkVersion)
//	     1    1 kind (2 = ack)
//	     2    1 flags (bit 0: done, the snapshot is installed)
//	     3    1 reserved, 0
//	     4    8 snapshot index
//	    12    8 snapshot term
//	    20    8 next offset wanted
//	    28    4 CRC32C over bytes [0, 28)
type Ack struct {
	ID   ID
	Next uint64
	Done bool
}

// AppendAck appends a's encoding to dst.
func AppendAck(dst []byte, a Ack) []byte {
	var flags byte
	if a.Done {
		flags = flagDone
	}
	start := len(dst)
	dst = append(dst, ChunkVersion, kindAck, flags, 0)
	dst = le.AppendUint64(dst, a.ID.Index)
	dst = le.AppendUint64(dst, a.ID.Term)
	dst = le.AppendUint64(dst, a.Next)
	return le.AppendUint32(dst, protocol.CRC32C(dst[start:]))
}

// DecodeAck decodes one ack, which must be all of b. Every error wraps
// ErrBadChunk (or ErrUnsupportedVersion).
func DecodeAck(b []byte) (Ack, error) {
	if len(b) != AckSize {
		return Ack{}, fmt.Errorf("%w: ack of %d bytes, want %d", ErrBadChunk, len(b), AckSize)
	}
	if b[0] != ChunkVersion {
		return Ack{}, fmt.Errorf("%w: ack version %d (this build reads %d)", ErrUnsupportedVersion, b[0], ChunkVersion)
	}
	if b[1] != kindAck {
		return Ack{}, fmt.Errorf("%w: message kind %d is not an ack", ErrBadChunk, b[1])
	}
	if b[2]&^flagDone != 0 || b[3] != 0 {
		return Ack{}, fmt.Errorf("%w: unknown flags %#x/%#x", ErrBadChunk, b[2], b[3])
	}
	if got, want := protocol.CRC32C(b[:28]), le.Uint32(b[28:]); got != want {
		return Ack{}, fmt.Errorf("%w: ack CRC %#08x, ack says %#08x", ErrBadChunk, got, want)
	}
	return Ack{
		ID:   ID{Index: le.Uint64(b[4:]), Term: le.Uint64(b[12:])},
		Next: le.Uint64(b[20:]),
		Done: b[2]&flagDone != 0,
	}, nil
}
