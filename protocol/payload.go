package protocol

import (
	"fmt"
)

// Large messages of the control plane. A broker's status report, the
// controller's metadata broadcast and some admin replies (cluster status,
// metadata) grow with the number of partitions: about 200 bytes of JSON
// per partition replica in a status report, so a broker holding 6,000
// replicas would pass NATS's default max payload (1 MiB), and NATS refuses
// a message over it. Such messages are compressed with zstd when they are
// larger than CompressAbove (or than the max payload), which takes that
// JSON down by a factor of about ten. The NATS header HeaderEncoding says so; a message without it
// is plain.
//
// Replies are compressed only for a requester that asks for it with
// HeaderAcceptEncoding (the SDK does, for admin and metadata requests);
// brokers send their broadcasts compressed to each other unasked, all
// brokers of a version that reads them.
const (
	// HeaderEncoding names the encoding of the message's payload.
	HeaderEncoding = "Raftmq-Encoding"
	// HeaderAcceptEncoding, on a request, names the encoding the requester
	// reads in the reply.
	HeaderAcceptEncoding = "Raftmq-Accept-Encoding"
	// EncodingZstd is a zstd frame holding the plain payload.
	EncodingZstd = "zstd"
	// CompressAbove is the payload size above which large messages are
	// compressed; smaller ones are not worth the CPU.
	CompressAbove = 64 << 10
	// MaxDecodedPayload bounds a compressed payload's decoded size.
	MaxDecodedPayload = 64 << 20
)

// EncodePayload returns data compressed with zstd and EncodingZstd when
// data is larger than CompressAbove or than maxPayload (the connection's
// max payload) and compressing makes it smaller, else data itself and "".
func EncodePayload(data []byte, maxPayload int64) ([]byte, string) {
	if n := int64(len(data)); n <= CompressAbove && n <= maxPayload {
		return data, ""
	}
	compressed := zstdEncoder().EncodeAll(data, make([]byte, 0, len(data)/4))
	if len(compressed) >= len(data) {
		return data, ""
	}
	return compressed, EncodingZstd
}

// DecodePayload returns the plain payload of data in encoding (a message's
// HeaderEncoding, "" for a plain one). A compressed payload that decodes
// to more than MaxDecodedPayload bytes, or an unknown encoding, is an
// error.
func DecodePayload(data []byte, encoding string) ([]byte, error) {
	switch encoding {
	case "":
		return data, nil
	case EncodingZstd:
		decoder, err := zstdDecoder(MaxDecodedPayload)
		if err != nil {
			return nil, err
		}
		plain, err := decoder.DecodeAll(data, nil)
		if err != nil {
			return nil, fmt.Errorf("protocol: decode %s payload: %w", encoding, err)
		}
		return plain, nil
	}
	return nil, fmt.Errorf("protocol: unknown payload encoding %q", encoding)
}
