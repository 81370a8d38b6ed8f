package clients_test

import (
	"context"
	"flag"
	"fmt"
	"os"
	"runtime/pprof"
	"testing"
	"time"

	"github.com/raftmq/raftmq/clients"
)

// replayCPUProfile names a file for a CPU profile of BenchmarkReplay's
// timed part only (the replay, not the producing before it).
var replayCPUProfile = flag.String("replay.cpuprofile", "", "write a CPU profile of BenchmarkReplay's replay (not its setup) to this file")

// replayFetchReplies sets WithFetchReplies for BenchmarkReplay's consumer,
// to compare streams of replies with one reply per request in one build.
var replayFetchReplies = flag.Int("replay.fetchreplies", 0, "WithFetchReplies for BenchmarkReplay's consumer (0: the SDK default)")

// BenchmarkReplay measures one consumer replaying a 3-replica partition of
// 100-byte records from the start, through the in-process cluster: broker
// fetch path, NATS and the SDK's decoding. One op is one record consumed;
// the partition is replayed again from the start as often as b.N needs,
// with Poll ("poll") and with PollEach ("poll-each").
// The records are produced before the timer starts, so a CPU profile of a
// long run (-benchtime=5000000x) is dominated by the replay.
func BenchmarkReplay(b *testing.B) {
	const records = 500_000
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	client, err := clients.Connect(ctx, serverURL)
	if err != nil {
		b.Fatal(err)
	}
	defer client.Close()
	topic := fmt.Sprintf("bench-replay-%d", time.Now().UnixNano())
	if _, err := client.CreateTopic(ctx, topic, clients.WithPartitions(1), clients.WithReplicas(3)); err != nil {
		b.Fatal(err)
	}
	defer client.DeleteTopic(ctx, topic)
	producer, err := client.NewProducer()
	if err != nil {
		b.Fatal(err)
	}
	// Batches of at most 2,000 records (about 200 KiB), the size the bench
	// harness's producer makes with its window of 4,096 records.
	value := make([]byte, 100)
	for i := range records {
		producer.Produce(ctx, &clients.Record{Topic: topic, Value: value}, nil)
		if (i+1)%2000 == 0 {
			if err := producer.Flush(ctx); err != nil {
				b.Fatal(err)
			}
		}
	}
	if err := producer.Flush(ctx); err != nil {
		b.Fatal(err)
	}
	producer.Close(ctx)

	b.Run("poll", func(b *testing.B) {
		benchmarkReplay(b, client, topic, records, func(ctx context.Context, consumer *clients.Consumer, fn func(*clients.Record)) (int, error) {
			polled, err := consumer.Poll(ctx)
			for _, record := range polled {
				fn(record)
			}
			return len(polled), err
		})
	})
	b.Run("poll-each", func(b *testing.B) {
		benchmarkReplay(b, client, topic, records, func(ctx context.Context, consumer *clients.Consumer, fn func(*clients.Record)) (int, error) {
			return consumer.PollEach(ctx, func(record *clients.Record) bool {
				fn(record)
				return true
			})
		})
	})
}

// benchmarkReplay replays topic's partition 0 of records 100-byte records
// with poll (Poll or PollEach) until b.N records were consumed.
func benchmarkReplay(b *testing.B, client *clients.Client, topic string, records int,
	poll func(ctx context.Context, consumer *clients.Consumer, fn func(*clients.Record)) (int, error)) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var options []clients.ConsumerOption
	if *replayFetchReplies > 0 {
		options = append(options, clients.WithFetchReplies(*replayFetchReplies))
	}
	consumer, err := client.NewConsumer(options...)
	if err != nil {
		b.Fatal(err)
	}
	defer consumer.Close()
	b.SetBytes(100)
	b.ReportAllocs()
	stopProfile := startReplayProfile(b)
	inBefore := client.Conn().Stats().InBytes
	cpuBefore := processCPU(b)
	b.ResetTimer()
	for consumed := 0; consumed < b.N; {
		if err := consumer.Seek(ctx, topic, 0, clients.Earliest()); err != nil {
			b.Fatal(err)
		}
		for seen := 0; seen < records && consumed < b.N; {
			n, err := poll(ctx, consumer, func(record *clients.Record) {
				if len(record.Value) != 100 {
					b.Fatalf("record %d has %d bytes, want 100", record.Offset, len(record.Value))
				}
			})
			if err != nil {
				b.Fatal(err)
			}
			seen += n
			consumed += n
		}
	}
	b.StopTimer()
	stopProfile()
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/record")
	// CPU time of the whole process (brokers, NATS server, client) per
	// record: steadier than wall time on a machine shared with other work.
	b.ReportMetric(float64((processCPU(b)-cpuBefore).Nanoseconds())/float64(b.N), "cpu-ns/record")
	// Bytes the client's connection received per record consumed: the
	// records' bytes, plus what was prefetched and dropped at each Seek.
	b.ReportMetric(float64(client.Conn().Stats().InBytes-inBefore)/float64(b.N), "in-B/record")
}

// startReplayProfile starts the -replay.cpuprofile profile, if asked for,
// and returns what stops it.
func startReplayProfile(b *testing.B) (stop func()) {
	if *replayCPUProfile == "" {
		return func() {}
	}
	f, err := os.Create(*replayCPUProfile)
	if err != nil {
		b.Fatal(err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		b.Fatal(err)
	}
	return func() {
		pprof.StopCPUProfile()
		if err := f.Close(); err != nil {
			b.Error(err)
		}
	}
}
