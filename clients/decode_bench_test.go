package clients

import (
	"testing"

	"github.com/raftmq/raftmq/protocol"
)

// BenchmarkDecodeFetchedBatches measures handing out the records of a
// 1 MiB fetch reply of 100-byte records: as Records Poll allocates
// ("poll"), lent one at a time by PollEach ("poll-each"), and walked by a
// bare RecordIterator (the decoding floor, "iterator-baseline"), in the
// same run.
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
		start := len(data)
		var err error
		if data, err = builder.AppendBatch(data, protocol.CodecNone); err != nil {
			b.Fatal(err)
		}
		protocol.StampBatch(data[start:], uint64(records), 1_700_000_000_000) // as the log does
		records += 1000
	}
	consumer := &Consumer{config: consumerConfig{maxPollRecords: records}}
	handOutAll := func(b *testing.B, prepare func(int), emit func(*Record, uint64, bool) bool) {
		result, _, err := verifyFetched(data, 0, 0)
		if err != nil {
			b.Fatal(err)
		}
		result.tp = topicPartition{topic: "bench", partition: 0}
		if prepare != nil {
			prepare(result.pending)
		}
		if n, failed := consumer.handOut([]*fetchResult{result}, emit); failed != nil || n != records {
			b.Fatalf("%d records, %v", n, failed)
		}
	}
	b.Run("poll", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		b.ReportAllocs()
		for range b.N {
			var collector recordCollector
			handOutAll(b, collector.prepare, collector.add)
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*records), "ns/record")
	})
	b.Run("poll-each", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		b.ReportAllocs()
		total := 0
		for range b.N {
			handOutAll(b, nil, func(r *Record, _ uint64, _ bool) bool {
				total += len(r.Value)
				return true
			})
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
