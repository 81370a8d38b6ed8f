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
// the last record printed. When it printed every record its polls
// returned, the final commit is the member's Commit, which also commits
// the partitions it printed nothing of at the position it started them
// at (with --from latest, the end as it was then); when it stopped in the
// middle of a batch (--count, Ctrl-C), it commits the printed records'
// offsets only, never a record it did not print.
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
		return c.fail("consume", unknownTopicHint(err, topic))
	}
	printed := map[clients.TopicPartition]uint64{}
	commit := func(commitCtx context.Context) error {
		if len(printed) == 0 {
			return nil
		}
		return consumer.CommitOffsets(commitCtx, printed)
	}
	returnedCount, printedCount := 0, 0
	poll := func(pollCtx context.Context) ([]*clients.Record, error) {
		records, err := consumer.Poll(pollCtx)
		returnedCount += len(records)
		return records, err
	}
	status := consumeLoop(ctx, c, poll, flags, func(r *clients.Record) {
		printedCount++
		printed[clients.TopicPartition{Topic: r.Topic, Partition: r.Partition}] = r.Offset + 1
	}, commit)
	closeCtx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	finalCommit := commit
	if printedCount == returnedCount {
		finalCommit = consumer.Commit
	}
	// A failed commit outranks an interrupt: the next run would repeat
	// records.
	if err := finalCommit(closeCtx); err != nil && (status == exitOK || status == exitInterrupted) {
		status = c.fail("consume", fmt.Errorf("final commit: %w", err))
	}
	if err := consumer.Close(closeCtx); err != nil && (status == exitOK || status == exitInterrupted) {
		status = c.fail("consume", err)
	}
	return status
}
