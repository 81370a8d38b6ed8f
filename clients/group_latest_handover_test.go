package clients_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/raftmq/raftmq/clients"
)

// TestLatestResetHandsOverItsPosition: a member with the Latest reset
// policy that owned a partition but was closed before it polled any of
// its records commits the position it resolved at assignment, so the next
// owner gets the records produced in between. Before, it committed
// nothing, the next owner resolved Latest again, and those records were
// delivered to no one (found in review; Kafka commits the position too).
func TestLatestResetHandsOverItsPosition(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	client, err := clients.Connect(ctx, serverURL)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	topic := fmt.Sprintf("latest-handover-%d", time.Now().UnixNano())
	if _, err := client.CreateTopic(ctx, topic, clients.WithPartitions(1)); err != nil {
		t.Fatal(err)
	}
	defer client.DeleteTopic(ctx, topic)
	group := "g-" + topic
	waitAssigned := func(g *clients.GroupConsumer) {
		for len(g.Assigned()) == 0 {
			if ctx.Err() != nil {
				t.Fatal("not assigned")
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	a, err := client.NewGroupConsumer(ctx, group, []string{topic}, clients.WithResetPolicy(clients.Latest()),
		clients.WithAutoCommitInterval(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	waitAssigned(a)
	producer, err := client.NewProducer()
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Close(ctx)
	for i := range 5 {
		if err := producer.ProduceSync(ctx, &clients.Record{Topic: topic, Value: []byte(fmt.Sprintf("during-A-%d", i))}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	// A owned the partition while these were produced; it is shut down
	// (rolling deploy) before its application polled them.
	if err := a.Close(ctx); err != nil {
		t.Fatal(err)
	}
	b, err := client.NewGroupConsumer(ctx, group, []string{topic}, clients.WithResetPolicy(clients.Latest()))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close(ctx)
	waitAssigned(b)
	time.Sleep(200 * time.Millisecond)
	if err := producer.ProduceSync(ctx, &clients.Record{Topic: topic, Value: []byte("after")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	var got []string
	for !slices.Contains(got, "after") {
		recs, err := b.Poll(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range recs {
			got = append(got, string(r.Value))
		}
	}
	desc, _ := client.FetchCommitted(ctx, group, []clients.TopicPartition{{Topic: topic, Partition: 0}})
	t.Logf("B received %v; committed before B: %+v", got, desc)
	n := 0
	for _, v := range got {
		if strings.HasPrefix(v, "during-A-") {
			n++
		}
	}
	if n != 5 {
		t.Fatalf("records produced while A owned the partition were never delivered: got %d of 5 (%v)", n, got)
	}
}
