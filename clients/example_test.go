package clients_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/raftmq/raftmq/broker"
	"github.com/raftmq/raftmq/clients"
)

// serverURL is the NATS URL of a running cluster, such as
// "nats://127.0.0.1:4222" for `raftmq dev`. TestMain points it at a
// three-broker cluster in this process.
var serverURL string

// devCluster is the in-process cluster the examples and integration tests use.
var devCluster *broker.DevCluster

// connectDev connects a client to devCluster, closed when tb ends.
func connectDev(ctx context.Context, tb testing.TB, opts ...clients.ClientOption) *clients.Client {
	tb.Helper()
	client, err := clients.Connect(ctx, strings.Join(devCluster.ClientURLs(), ","), opts...)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { client.Close() })
	return client
}

func TestMain(m *testing.M) {
	dataDir, err := os.MkdirTemp("", "raftmq-clients-test-")
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	devCluster, err = broker.StartDev(ctx, broker.DevConfig{Nodes: 3, DataDir: dataDir, ClientListen: "127.0.0.1:0"})
	cancel()
	if err != nil {
		log.Fatal(err)
	}
	serverURL = devCluster.ClientURLs()[0]
	code := m.Run()
	ctx, cancel = context.WithTimeout(context.Background(), 30*time.Second)
	if err := devCluster.Close(ctx); err != nil {
		log.Print(err)
	}
	cancel()
	os.RemoveAll(dataDir)
	os.Exit(code)
}

func Example() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	client, err := clients.Connect(ctx, serverURL)
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()

	if _, err := client.CreateTopic(ctx, "example-orders", clients.WithPartitions(1)); err != nil {
		log.Fatal(err)
	}
	defer client.DeleteTopic(ctx, "example-orders") // leave the cluster as it was

	producer, err := client.NewProducer()
	if err != nil {
		log.Fatal(err)
	}
	defer producer.Close(ctx)
	records := []*clients.Record{
		{Topic: "example-orders", Key: []byte("alice"), Value: []byte("1 pizza")},
		{Topic: "example-orders", Key: []byte("bob"), Value: []byte("2 salads")},
	}
	if err := producer.ProduceSync(ctx, records...).FirstErr(); err != nil {
		log.Fatal(err)
	}

	consumer, err := client.NewConsumer()
	if err != nil {
		log.Fatal(err)
	}
	defer consumer.Close()
	if err := consumer.Assign(ctx, "example-orders", clients.Earliest()); err != nil {
		log.Fatal(err)
	}
	for seen := 0; seen < len(records); {
		polled, err := consumer.Poll(ctx)
		if err != nil {
			log.Fatal(err)
		}
		for _, r := range polled {
			fmt.Printf("offset %d: %s ordered %s\n", r.Offset, r.Key, r.Value)
		}
		seen += len(polled)
	}
	// Output:
	// offset 0: alice ordered 1 pizza
	// offset 1: bob ordered 2 salads
}

func ExampleProducer_Produce() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	client, err := clients.Connect(ctx, serverURL)
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	if _, err := client.CreateTopic(ctx, "example-events", clients.WithPartitions(3)); err != nil {
		log.Fatal(err)
	}
	defer client.DeleteTopic(ctx, "example-events") // leave the cluster as it was

	producer, err := client.NewProducer(
		clients.WithLinger(10*time.Millisecond),
		clients.WithCompression(clients.CompressionZstd),
	)
	if err != nil {
		log.Fatal(err)
	}
	defer producer.Close(ctx)
	failed := make(chan error, 100)
	for i := range 100 {
		rec := &clients.Record{Topic: "example-events", Value: fmt.Appendf(nil, "event %d", i)}
		producer.Produce(ctx, rec, func(rec *clients.Record, err error) {
			if err != nil {
				failed <- err
			}
		})
	}
	// Flush waits for every acknowledgement.
	if err := producer.Flush(ctx); err != nil {
		log.Fatal(err)
	}
	fmt.Println("failed:", len(failed))
	// Output:
	// failed: 0
}

func ExampleConsumer_Seek() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	client, err := clients.Connect(ctx, serverURL)
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	if _, err := client.CreateTopic(ctx, "example-seek"); err != nil {
		log.Fatal(err)
	}
	defer client.DeleteTopic(ctx, "example-seek") // leave the cluster as it was
	producer, err := client.NewProducer()
	if err != nil {
		log.Fatal(err)
	}
	defer producer.Close(ctx)
	for _, v := range []string{"a", "b", "c", "d"} {
		if err := producer.ProduceSync(ctx, &clients.Record{Topic: "example-seek", Value: []byte(v)}).FirstErr(); err != nil {
			log.Fatal(err)
		}
	}

	consumer, err := client.NewConsumer()
	if err != nil {
		log.Fatal(err)
	}
	defer consumer.Close()
	// Start at offset 2 of partition 0.
	if err := consumer.Seek(ctx, "example-seek", 0, clients.AtOffset(2)); err != nil {
		log.Fatal(err)
	}
	for seen := 0; seen < 2; {
		records, err := consumer.Poll(ctx)
		if err != nil {
			log.Fatal(err)
		}
		for _, r := range records {
			fmt.Println(r.Offset, string(r.Value))
		}
		seen += len(records)
	}
	// Output:
	// 2 c
	// 3 d
}

func ExampleClient_ClusterStatus() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	client, err := clients.Connect(ctx, serverURL)
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	// A broker counts as alive while its status reports, sent every
	// second, keep arriving; on a cluster that has just started (or on a
	// loaded machine) one may not have arrived yet, so ask until every
	// broker is alive and a controller leader is known (or ctx ends).
	var status clients.ClusterStatus
	alive := 0
	for ctx.Err() == nil {
		if status, err = client.ClusterStatus(ctx); err != nil {
			log.Fatal(err)
		}
		alive = 0
		for _, b := range status.Brokers {
			if b.Alive {
				alive++
			}
		}
		if alive == len(status.Brokers) && status.ControllerLeader != 0 {
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
	fmt.Printf("%d brokers, %d alive, controller elected: %v\n", len(status.Brokers), alive, status.ControllerLeader != 0)
	// Output:
	// 3 brokers, 3 alive, controller elected: true
}
