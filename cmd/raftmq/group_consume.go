package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/raftmq/raftmq/clients"
)

// groupConsume is 'raftmq consume TOPIC --group G': it prints like consume
// and commits the offset after each printed record as it goes, and once
// more before it exits, so the next run of the group starts right after
// the last record printed.
func groupConsume(ctx context.Context, c *cli, topic string, flags *consumeFlags) int {
	client, err := flags.connect(ctx)
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
	status := consumeRecords(ctx, c, consumer.Poll, flags, func(r *clients.Record) {
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

// consumeRecords prints records from poll like consume does, calls printed
// for each record written and afterBatch (to commit) after each flush.
func consumeRecords(ctx context.Context, c *cli, poll func(context.Context) ([]*clients.Record, error), flags *consumeFlags,
	printed func(*clients.Record), afterBatch func(context.Context) error) int {
	out := bufio.NewWriter(c.stdout)
	defer out.Flush()
	encoder := json.NewEncoder(out)
	encoder.SetEscapeHTML(false)
	count := 0
	for flags.count == 0 || count < flags.count {
		pollCtx, cancel := ctx, context.CancelFunc(func() {})
		if flags.idle > 0 {
			pollCtx, cancel = context.WithTimeout(ctx, flags.idle)
		}
		records, err := poll(pollCtx)
		cancel()
		if err != nil {
			switch {
			case ctx.Err() != nil:
				return exitOK // interrupted
			case errors.Is(err, context.DeadlineExceeded):
				out.Flush()
				if flags.count > 0 {
					fmt.Fprintf(c.stderr, "raftmq consume: %d of %d records before nothing new came for %v\n", count, flags.count, flags.idle)
					return exitError
				}
				return exitOK
			}
			out.Flush()
			return c.fail("consume", err)
		}
		for _, r := range records {
			if flags.count > 0 && count == flags.count {
				break
			}
			count++
			if flags.json {
				_ = encoder.Encode(consumedLine{
					Partition: r.Partition, Offset: r.Offset, Key: string(r.Key), Value: string(r.Value),
					Timestamp: r.Timestamp.UTC().Format(timestampLayout),
				})
			} else {
				out.Write(r.Value)
				out.WriteByte('\n')
			}
			printed(r)
		}
		if err := out.Flush(); err != nil {
			return c.fail("consume", err)
		}
		commitCtx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		err = afterBatch(commitCtx)
		cancel()
		if err != nil {
			return c.fail("consume", fmt.Errorf("commit: %w", err))
		}
	}
	return exitOK
}
