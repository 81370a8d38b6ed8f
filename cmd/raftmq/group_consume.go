package main

import (
	"context"
	"fmt"
	"time"

	"github.com/raftmq/raftmq/clients"
)

// groupConsume is 'raftmq consume TOPIC --group G': it prints like consume
// and commits the offset after each printed record as it goes, and once
// more before it exits, so the next run of the group starts right after
// the last record printed.
func groupConsume(ctx context.Context, c *cli, topic string, flags *consumeFlags) int {
	client, err := flags.connect(ctx, c.stderr)
	if err != nil {
		return c.fail("consume", err)
	}
	defer client.Close()
	reset := clients.Earliest()
	if flags.from == "latest" {
		reset = clients.Latest()
	}
	joinCtx, cancel := adminContext(ctx)
	consumer, err := client.NewGroupConsumer(joinCtx, flags.group, []string{topic},
		clients.WithAutoCommitInterval(0), clients.WithCommitOnClose(false), clients.WithResetPolicy(reset))
	cancel()
	if err != nil {
		return c.fail("consume", err)
	}
	printed := map[clients.TopicPartition]uint64{}
	commit := func(commitCtx context.Context) error {
		if len(printed) == 0 {
			return nil
		}
		return consumer.CommitOffsets(commitCtx, printed)
	}
	status := consumeLoop(ctx, c, consumer.Poll, flags, func(r *clients.Record) {
		printed[clients.TopicPartition{Topic: r.Topic, Partition: r.Partition}] = r.Offset + 1
	}, commit)
	closeCtx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := commit(closeCtx); err != nil && status == exitOK {
		status = c.fail("consume", fmt.Errorf("final commit: %w", err))
	}
	if err := consumer.Close(closeCtx); err != nil && status == exitOK {
		status = c.fail("consume", err)
	}
	return status
}
