package clients_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/raftmq/raftmq/clients"
)

// BenchmarkProduce measures asynchronous produce of 100-byte records with
// acks=quorum to a 3-partition, 3-replica topic on the in-process cluster.
func BenchmarkProduce(b *testing.B) {
	for _, codec := range []clients.Codec{clients.CompressionNone, clients.CompressionS2} {
		b.Run(codec.String(), func(b *testing.B) {
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
			producer, err := client.NewProducer(clients.WithCompression(codec))
			if err != nil {
				b.Fatal(err)
			}
			defer producer.Close(ctx)
			value := make([]byte, 100)
			failed := make(chan error, 1)
			b.SetBytes(int64(len(value)))
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				producer.Produce(ctx, &clients.Record{Topic: topic, Value: value}, func(_ *clients.Record, err error) {
					if err != nil {
						select {
						case failed <- err:
						default:
						}
					}
				})
			}
			if err := producer.Flush(ctx); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			select {
			case err := <-failed:
				b.Fatal(err)
			default:
			}
		})
	}
}
