package clients_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/raftmq/raftmq/clients"
)

// BenchmarkProduce measures asynchronous produce of 100-byte records with
// acks=quorum to a 3-partition, 3-replica topic on the in-process cluster,
// one callback per record. Besides ns/op it reports cpu-ns/record: the
// whole process's CPU time (the in-process brokers' too) per record, the
// figure that holds up on a loaded machine.
func BenchmarkProduce(b *testing.B) {
	for _, codec := range []clients.Codec{clients.CompressionNone, clients.CompressionS2} {
		b.Run(codec.String(), func(b *testing.B) {
			benchmarkProduce(b, codec, false)
		})
	}
}

// benchmarkProduce runs BenchmarkProduce's load; with batchCallback the
// records report through WithBatchCallback instead of one callback each.
func benchmarkProduce(b *testing.B, codec clients.Codec, batchCallback bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	client, err := clients.Connect(ctx, serverURL)
	if err != nil {
		b.Fatal(err)
	}
	defer client.Close()
	topic := fmt.Sprintf("bench-produce-%d", time.Now().UnixNano())
	if _, err := client.CreateTopic(ctx, topic, clients.WithPartitions(3), clients.WithReplicas(3)); err != nil {
		b.Fatal(err)
	}
	defer client.DeleteTopic(ctx, topic)
	failed := make(chan error, 1)
	fail := func(err error) {
		select {
		case failed <- err:
		default:
		}
	}
	var done clients.ProduceCallback = func(_ *clients.Record, err error) {
		if err != nil {
			fail(err)
		}
	}
	opts := []clients.ProducerOption{clients.WithCompression(codec)}
	if batchCallback {
		done = nil
		opts = append(opts, clients.WithBatchCallback(func(_ []*clients.Record, err error) {
			if err != nil {
				fail(err)
			}
		}))
	}
	producer, err := client.NewProducer(opts...)
	if err != nil {
		b.Fatal(err)
	}
	defer producer.Close(ctx)
	value := make([]byte, 100)
	b.SetBytes(int64(len(value)))
	b.ReportAllocs()
	b.ResetTimer()
	cpu := processCPU(b)
	for range b.N {
		producer.Produce(ctx, &clients.Record{Topic: topic, Value: value}, done)
	}
	if err := producer.Flush(ctx); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	b.ReportMetric(float64(processCPU(b)-cpu)/float64(b.N), "cpu-ns/record")
	select {
	case err := <-failed:
		b.Fatal(err)
	default:
	}
}
