package protocol

import (
	"bytes"
	"fmt"
	"testing"
)

// benchmarkRecords are 1,000 records of 100-byte values with 8-byte keys,
// half repetitive text, so compression has something to do.
func benchmarkRecords() []Record {
	records := make([]Record, 1000)
	for i := range records {
		value := bytes.Repeat([]byte(fmt.Sprintf("%08d", i)), 13)[:100]
		records[i] = Record{Timestamp: 1_700_000_000_000 + int64(i), Key: fmt.Appendf(nil, "key%05d", i%1000), Value: value}
	}
	return records
}

func BenchmarkBatchBuild(b *testing.B) {
	records := benchmarkRecords()
	var raw int
	for i := range records {
		raw += len(records[i].Key) + len(records[i].Value)
	}
	for _, codec := range allCodecs {
		b.Run(codec.String(), func(b *testing.B) {
			var builder BatchBuilder
			b.SetBytes(int64(raw))
			b.ReportAllocs()
			var size int
			for b.Loop() {
				builder.Reset()
				for i := range records {
					builder.Add(records[i])
				}
				batch, err := builder.Build(codec)
				if err != nil {
					b.Fatal(err)
				}
				size = len(batch)
			}
			b.ReportMetric(float64(size), "batch-bytes")
		})
	}
}

func BenchmarkBatchDecode(b *testing.B) {
	records := benchmarkRecords()
	var raw int
	var builder BatchBuilder
	for i := range records {
		raw += len(records[i].Key) + len(records[i].Value)
		builder.Add(records[i])
	}
	for _, codec := range allCodecs {
		batch, _ := builder.AppendBatch(nil, codec)
		b.Run(codec.String()+"/iterator", func(b *testing.B) {
			var it RecordIterator
			b.SetBytes(int64(raw))
			b.ReportAllocs()
			for b.Loop() {
				if err := it.Reset(batch); err != nil {
					b.Fatal(err)
				}
				for it.Next() {
				}
				if it.Err() != nil {
					b.Fatal(it.Err())
				}
			}
		})
		b.Run(codec.String()+"/DecodeRecords", func(b *testing.B) {
			b.SetBytes(int64(raw))
			b.ReportAllocs()
			for b.Loop() {
				if err := DecodeRecords(batch, func(Record) error { return nil }); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	// Baseline in the same run: the CRC check alone, which every decode pays.
	batch, _ := builder.AppendBatch(nil, CodecNone)
	b.Run("baseline/VerifyBatch", func(b *testing.B) {
		b.SetBytes(int64(raw))
		b.ReportAllocs()
		for b.Loop() {
			if _, err := VerifyBatch(batch); err != nil {
				b.Fatal(err)
			}
		}
	})
}
