package clients

import (
	"context"
	"testing"
	"time"
)

// TestAdminRequestsReadCompressedReplies: admin and metadata requests ask
// for compressed replies, which a broker sends when a reply is large (a
// big cluster's status or metadata, over the NATS max payload plain), and
// the client decodes them.
func TestAdminRequestsReadCompressedReplies(t *testing.T) {
	fake := startFakeCluster(t)
	fake.createTopic("wide", 2000)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	client, err := Connect(ctx, fake.url())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	info, err := client.DescribeTopic(ctx, "wide")
	if err != nil {
		t.Fatal(err)
	}
	if len(info.Partitions) != 2000 {
		t.Fatalf("described %d partitions, want 2000", len(info.Partitions))
	}
	status, err := client.ClusterStatus(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(status.Partitions) != 2000 {
		t.Fatalf("cluster status holds %d partitions, want 2000", len(status.Partitions))
	}
	if n := fake.compressedReplies.Load(); n < 2 {
		t.Fatalf("%d replies came compressed, want both: the requests do not accept compression", n)
	}
}
