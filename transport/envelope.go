package transport

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// EnvelopeVersion is the version byte that opens every peer message this
// package writes and the only one it reads.
const EnvelopeVersion = 1

// ErrCorruptEnvelope marks an inbound peer message that cannot be decoded.
var ErrCorruptEnvelope = errors.New("transport: corrupt peer envelope")

// maxEnvelopeHeader is the largest envelope header: the version byte and a
// sender id as a 10-byte uvarint.
const maxEnvelopeHeader = 1 + binary.MaxVarintLen64

// appendEnvelopeHeader starts an envelope from sender in dst.
func appendEnvelopeHeader(dst []byte, from uint64) []byte {
	dst = append(dst, EnvelopeVersion)
	return binary.AppendUvarint(dst, from)
}

// appendFrame adds one length-prefixed frame to an envelope.
func appendFrame(dst []byte, frame []byte) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(frame)))
	return append(dst, frame...)
}

// uvarintLen is the encoded size of v as a uvarint.
func uvarintLen(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}

// decodeEnvelope checks a whole envelope and then calls fn for each frame in
// order. Frames alias b. It calls fn only when the entire envelope is valid, so
// a corrupt message delivers nothing.
func decodeEnvelope(b []byte, fn func(from uint64, frame []byte)) (frames int, err error) {
	from, body, err := readEnvelopeHeader(b)
	if err != nil {
		return 0, err
	}
	for rest := body; len(rest) > 0; frames++ {
		if _, rest, err = nextFrame(rest); err != nil {
			return 0, fmt.Errorf("%w: frame %d: %v", ErrCorruptEnvelope, frames, err)
		}
	}
	if frames == 0 {
		return 0, fmt.Errorf("%w: no frames", ErrCorruptEnvelope)
	}
	for rest := body; len(rest) > 0; {
		var frame []byte
		frame, rest, _ = nextFrame(rest)
		fn(from, frame)
	}
	return frames, nil
}

func readEnvelopeHeader(b []byte) (from uint64, body []byte, err error) {
	if len(b) == 0 {
		return 0, nil, fmt.Errorf("%w: empty message", ErrCorruptEnvelope)
	}
	if b[0] != EnvelopeVersion {
		return 0, nil, fmt.Errorf("%w: unknown version %d (this build reads %d)", ErrCorruptEnvelope, b[0], EnvelopeVersion)
	}
	from, n := binary.Uvarint(b[1:])
	if n <= 0 {
		return 0, nil, fmt.Errorf("%w: bad sender id", ErrCorruptEnvelope)
	}
	if from == 0 {
		return 0, nil, fmt.Errorf("%w: sender id 0", ErrCorruptEnvelope)
	}
	return from, b[1+n:], nil
}

func nextFrame(b []byte) (frame, rest []byte, err error) {
	length, n := binary.Uvarint(b)
	if n <= 0 {
		return nil, nil, errors.New("bad length prefix")
	}
	b = b[n:]
	if length > uint64(len(b)) {
		return nil, nil, fmt.Errorf("length %d exceeds the %d bytes left", length, len(b))
	}
	return b[:length:length], b[length:], nil
}
