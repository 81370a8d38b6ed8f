package clients

import (
	"testing"

	"github.com/raftmq/raftmq/protocol"
)

// BenchmarkDecodeFetchedBatches measures turning a 1 MiB fetch reply of
// 100-byte records into Records (what Poll returns), beside the same
// batches walked by a bare RecordIterator (the decoding floor) in the same run.
func BenchmarkDecodeFetchedBatches(b *testing.B) {
	value := make([]byte, 100)
	var data []byte
	records := 0
	for len(data) < 1<<20 {
		var builder protocol.BatchBuilder
		for range 1000 {
			if err := builder.Add(protocol.Record{Timestamp: 1_700_000_000_000, Value: value}); err != nil {
				b.Fatal(err)
			}
		}
		var err error
		if data, err = builder.AppendBatch(data, protocol.CodecNone); err != nil {
			b.Fatal(err)
		}
		records += 1000
	}
	tp := topicPartition{topic: "bench", partition: 0}
	b.Run("records", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		b.ReportAllocs()
		for range b.N {
			got, err := decodeBatches(tp, data, 0)
			if err != nil || len(got) != records {
				b.Fatalf("%d records, %v", len(got), err)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*records), "ns/record")
	})
	b.Run("iterator-baseline", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		b.ReportAllocs()
		var iterator protocol.RecordIterator
		for range b.N {
			n := 0
			if err := protocol.SplitBatches(data, func(batch []byte, _ protocol.BatchHeader) error {
				if err := iterator.Reset(batch); err != nil {
					return err
				}
				for iterator.Next() {
					n++
				}
				return iterator.Err()
			}); err != nil || n != records {
				b.Fatalf("%d records, %v", n, err)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*records), "ns/record")
	})
}
