package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/raftmq/raftmq/clients"
	"github.com/raftmq/raftmq/protocol"
)

const consumeUsage = `
Usage: raftmq consume TOPIC [--partition P] [--from earliest|latest|OFFSET|TIME] [--count N] [--timeout D] [--group G] [flags]

Prints records' values, one per line; with --json one line per record:
  {"partition":P,"offset":O,"key":"...","value":"...","timestamp":"RFC3339"}
It exits after --count records, or when --timeout passes with nothing new
(status 1 if --count records did not arrive by then), or on Ctrl-C (status
130 if that came before --count records, else 0).
--from takes earliest, latest, an offset, or an RFC 3339 time.
With --group G it consumes as a member of consumer group G: the group's
partitions are shared with its other members, it starts after the group's
committed offsets (--from earliest|latest applies only without one), and it
commits as it goes and, before exiting, the offset after the last record
it printed, so the next run of the group starts exactly there; a partition
it printed nothing of is committed where it started (with --from latest,
the end as it was then), so the next run does not start at earliest.

Examples:
  raftmq consume orders --from earliest
  raftmq consume orders --partition 0 --from 42 --count 10 --json
  raftmq consume orders --from latest --timeout 5s
  raftmq consume orders --group billing --count 100
`

type consumeFlags struct {
	clientFlags
	partition int
	from      string
	count     int
	idle      time.Duration
	group     string
}

// consumedLine is one --json line of consume.
type consumedLine struct {
	Partition uint32 `json:"partition"`
	Offset    uint64 `json:"offset"`
	Key       string `json:"key"`
	Value     string `json:"value"`
	Timestamp string `json:"timestamp"`
}

// timestampLayout is RFC 3339 with milliseconds, the records' resolution.
const timestampLayout = "2006-01-02T15:04:05.000Z07:00"

func runConsume(ctx context.Context, c *cli, args []string) int {
	fs := c.newFlagSet("consume", consumeUsage)
	var flags consumeFlags
	flags.register(fs)
	partitionVar(fs, &flags.partition, "read only this `partition` (default: all)")
	fs.StringVar(&flags.from, "from", "earliest", "start `position`: earliest, latest, an offset or an RFC 3339 time")
	fs.IntVar(&flags.count, "count", 0, "exit after `N` records (0: no limit)")
	fs.DurationVar(&flags.idle, "timeout", 0, "exit when this `duration` passes with no new record (0: wait forever)")
	fs.StringVar(&flags.group, "group", "", "consume as a member of consumer `group` G, committing offsets")
	positional, status, ok := c.parse(fs, args)
	if !ok {
		return status
	}
	if len(positional) != 1 {
		return c.usageError(fs, "want exactly one TOPIC, got %d arguments", len(positional))
	}
	topic := positional[0]
	start, err := parsePosition(flags.from)
	if err != nil {
		return c.usageError(fs, "--from %q: %v", flags.from, err)
	}
	if err := protocol.ValidateTopicName(topic); err != nil {
		return c.usageError(fs, "%v", err)
	}
	switch {
	case flags.partition < -1:
		return c.usageError(fs, "--partition %d is negative", flags.partition)
	case flags.partition > math.MaxUint32:
		return c.usageError(fs, "--partition %d is out of range", flags.partition)
	case flags.count < 0:
		return c.usageError(fs, "--count %d is negative", flags.count)
	case flags.idle < 0:
		return c.usageError(fs, "--timeout %v is negative", flags.idle)
	}

	if flags.group != "" {
		if flags.partition >= 0 {
			return c.usageError(fs, "--partition and --group exclude each other (the group assigns partitions)")
		}
		if flags.from != "earliest" && flags.from != "latest" {
			return c.usageError(fs, "--from %s with --group: a group starts where it committed, else at earliest or latest; "+
				"move it with 'raftmq group reset-offsets'", flags.from)
		}
		return groupConsume(ctx, c, topic, &flags)
	}
	client, err := flags.connect(ctx, c.stderr)
	if err != nil {
		return c.fail(fs.Name(), err)
	}
	defer client.Close()
	consumer, err := client.NewConsumer()
	if err != nil {
		return c.fail(fs.Name(), err)
	}
	defer consumer.Close()
	var partitions []uint32
	if flags.partition >= 0 {
		partitions = append(partitions, uint32(flags.partition))
	}
	assignCtx, cancel := adminContext(ctx)
	err = consumer.Assign(assignCtx, topic, start, partitions...)
	cancel()
	if err != nil {
		return c.fail(fs.Name(), unknownTopicHint(err, topic))
	}
	return consumeLoop(ctx, c, consumer.Poll, &flags, nil, nil)
}

func parsePosition(text string) (clients.Position, error) {
	switch text {
	case "earliest":
		return clients.Earliest(), nil
	case "latest":
		return clients.Latest(), nil
	}
	if offset, err := strconv.ParseUint(text, 10, 64); err == nil {
		return clients.AtOffset(offset), nil
	}
	if t, err := time.Parse(time.RFC3339Nano, text); err == nil {
		return clients.AtTime(t), nil
	}
	return clients.Position{}, errors.New("want earliest, latest, an offset or an RFC 3339 time")
}

// consumeLoop prints the records poll returns (values, or --json lines)
// until --count records, --timeout without a new record, or ctx ends. With
// a group, printed is called for each record written and afterBatch (to
// commit) after each batch is flushed; both may be nil. It checks ctx
// before each poll and each record printed: a poll hands out the records
// it holds without looking at ctx, so with a backlog an interrupt would
// otherwise never be noticed until the backlog ran out. An interrupt
// ends it with exitOK, as a poll failing on it does, unless --count
// records were asked for and fewer printed: then with exitInterrupted, as
// produce stopped early.
func consumeLoop(ctx context.Context, c *cli, poll func(context.Context) ([]*clients.Record, error), flags *consumeFlags,
	printed func(*clients.Record), afterBatch func(context.Context) error) int {
	out := bufio.NewWriter(c.stdout)
	defer out.Flush()
	encoder := json.NewEncoder(out)
	encoder.SetEscapeHTML(false)
	count := 0
	interrupted := func() int {
		out.Flush()
		if flags.count == 0 || count >= flags.count {
			return exitOK // Ctrl-C is how a consume without --count ends
		}
		fmt.Fprintf(c.stderr, "raftmq consume: interrupted after %d of %s\n", count, plural(flags.count, "record"))
		return exitInterrupted
	}
	for flags.count == 0 || count < flags.count {
		if ctx.Err() != nil {
			return interrupted()
		}
		pollCtx, cancel := ctx, context.CancelFunc(func() {})
		if flags.idle > 0 {
			pollCtx, cancel = context.WithTimeout(ctx, flags.idle)
		}
		records, err := poll(pollCtx)
		cancel()
		if err != nil {
			switch {
			case ctx.Err() != nil:
				return interrupted()
			case errors.Is(err, context.DeadlineExceeded):
				out.Flush()
				if flags.count > 0 {
					fmt.Fprintf(c.stderr, "raftmq consume: %d of %s before nothing new came for %v\n", count, plural(flags.count, "record"), flags.idle)
					return exitError
				}
				return exitOK
			}
			out.Flush()
			if errors.Is(err, protocol.CodeOffsetOutOfRange) {
				err = withHint(err, "--from is past the partition's end (or before its start): try --from latest or --from earliest")
			}
			return c.fail("consume", err)
		}
		for _, r := range records {
			if flags.count > 0 && count == flags.count || ctx.Err() != nil {
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
			if printed != nil {
				printed(r)
			}
		}
		if err := out.Flush(); err != nil {
			return c.fail("consume", err)
		}
		if ctx.Err() != nil {
			return interrupted() // the caller commits what was printed
		}
		if afterBatch == nil {
			continue
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
