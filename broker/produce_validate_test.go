package broker

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/raftmq/raftmq/protocol"
)

// TestProduceRefusesBatchesConsumersCannotDecode: a batch a consumer
// cannot decode is refused with corrupt_batch (or record_too_large): a
// compressed one whose header claims more records than it holds or that
// decompresses past a consumer's limit, an uncompressed one whose record
// lies outside the header's timestamps or has unknown attributes. Before,
// all four were acknowledged (found in review): once in the log
// they stop every consumer of the partition at that offset for good.
func TestProduceRefusesBatchesConsumersCannotDecode(t *testing.T) {
	_, client := startTestCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	build := func(codec protocol.Codec, recs ...protocol.Record) []byte {
		var b protocol.BatchBuilder
		for _, r := range recs {
			if err := b.Add(r); err != nil {
				t.Fatal(err)
			}
		}
		out, err := b.Build(codec)
		if err != nil {
			t.Fatal(err)
		}
		if h, _ := protocol.ReadBatchHeader(out); h.Codec != codec {
			t.Fatalf("built codec %v, want %v", h.Codec, codec)
		}
		return append([]byte(nil), out...)
	}
	compressible := bytes.Repeat([]byte("a"), 200)

	// 1: s2 batch of one record whose header claims 1000 records.
	lyingCount := build(protocol.CodecS2, protocol.Record{Timestamp: 1000, Value: compressible})
	binary.LittleEndian.PutUint32(lyingCount[28:], 1000)
	protocol.SealBatch(lyingCount)

	// 2: 109-byte s2 batch whose records section is 65 MiB (consumers
	// refuse over 64 MiB; also far over max record bytes, 16 KiB here).
	bomb := build(protocol.CodecS2, protocol.Record{Timestamp: 1000, Value: make([]byte, 65<<20)})

	// 3: uncompressed batch whose header max timestamp is below its
	// record's timestamp (valid framing and CRC).
	badMaxTS := build(protocol.CodecNone, protocol.Record{Timestamp: 5000, Value: []byte("v")})
	binary.LittleEndian.PutUint64(badMaxTS[40:], 10) // max timestamp < first timestamp
	protocol.SealBatch(badMaxTS)

	// 4: uncompressed batch whose record has non-zero attributes.
	badAttr := build(protocol.CodecNone, protocol.Record{Timestamp: 1000, Value: []byte("v")})
	badAttr[protocol.BatchHeaderSize+1] = 0x7 // byte after the length prefix
	protocol.SealBatch(badAttr)

	cases := []struct {
		name  string
		batch []byte
	}{{"s2-lying-record-count", lyingCount}, {"s2-65MiB-bomb", bomb}, {"maxts-below-record", badMaxTS}, {"record-attributes", badAttr}}
	client.createTopic("poison", len(cases), 3)
	var failures []string
	for i, c := range cases {
		if err := protocol.DecodeRecords(c.batch, func(protocol.Record) error { return nil }); err == nil {
			t.Fatalf("%s: test batch decodes fine", c.name)
		}
		producer := &leaderClient{testClient: client, leader: 1, nodes: 3}
		offset, err := producer.produce(ctx, "poison", uint32(i), c.batch)
		var apiErr *protocol.Error
		if errors.As(err, &apiErr) && (apiErr.Code == protocol.CodeCorruptBatch || apiErr.Code == protocol.CodeRecordTooLarge) {
			continue
		}
		if err != nil {
			t.Fatalf("%s: %v, want corrupt_batch or record_too_large", c.name, err)
		}
		reply, err := producer.fetch(ctx, protocol.FetchRequest{Topic: "poison", Partition: uint32(i), Offset: 0, MaxBytes: 1 << 20})
		if err != nil {
			t.Fatalf("%s: fetch: %v", c.name, err)
		}
		decodeErr := protocol.SplitBatches(reply.Batches, func(batch []byte, _ protocol.BatchHeader) error {
			return protocol.DecodeRecords(batch, func(protocol.Record) error { return nil })
		})
		failures = append(failures, fmt.Sprintf("%s: accepted at offset %d (high watermark now %d); consumer decode: %v",
			c.name, offset, reply.HighWatermark, decodeErr))
	}
	for _, f := range failures {
		t.Error(f)
	}
}
