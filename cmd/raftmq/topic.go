package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/raftmq/raftmq/clients"
)

const topicUsage = `
Usage: raftmq topic <create|list|describe|delete|reassign> [arguments]

  raftmq topic create NAME [--partitions N] [--replicas R] [--retention D] [--retention-bytes N]
  raftmq topic list
  raftmq topic describe NAME
  raftmq topic delete NAME
  raftmq topic reassign NAME --partition P --replicas IDS

Example:
  raftmq topic create orders --partitions 3 --replicas 3
`

func runTopic(ctx context.Context, c *cli, args []string) int {
	if len(args) == 0 {
		fmt.Fprint(c.stderr, strings.TrimLeft(topicUsage, "\n"))
		return exitUsage
	}
	switch args[0] {
	case "create":
		return runTopicCreate(ctx, c, args[1:])
	case "list":
		return runTopicList(ctx, c, args[1:])
	case "describe":
		return runTopicDescribe(ctx, c, args[1:])
	case "delete":
		return runTopicDelete(ctx, c, args[1:])
	case "reassign":
		return runTopicReassign(ctx, c, args[1:])
	case "-h", "-help", "--help", "help":
		fmt.Fprint(c.stdout, strings.TrimLeft(topicUsage, "\n"))
		return exitOK
	}
	fmt.Fprintf(c.stderr, "raftmq topic: unknown subcommand %q (want create, list, describe, delete or reassign)\nRun 'raftmq topic --help' for usage.\n", args[0])
	return exitUsage
}

// adminContext bounds one admin call.
func adminContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, 30*time.Second)
}

func runTopicCreate(ctx context.Context, c *cli, args []string) int {
	fs := c.newFlagSet("topic create", `
Usage: raftmq topic create NAME [--partitions N] [--replicas R] [--retention D] [--retention-bytes N] [--server URLS] [--json]

Creates a topic with N partitions, each replicated on R brokers.
--retention and --retention-bytes override the brokers' retention of the
topic: sealed segments older than D, and the oldest while a partition's
log is larger than N bytes, are deleted. 0 or absent keeps the brokers'
default (7 days, no size limit); none means no limit.

Example:
  raftmq topic create orders --partitions 3 --replicas 3 --retention 24h
`)
	partitions := fs.Int("partitions", 1, "number of `partitions`")
	replicas := fs.Int("replicas", 0, "brokers holding each partition (0: min(3, brokers))")
	retentionAge := fs.String("retention", "", "delete records older than this `duration` (24h; 0: the brokers' default; none: no limit)")
	retentionBytes := fs.String("retention-bytes", "", "delete the oldest records while a partition holds more than this many `bytes` (0: the brokers' default; none: no limit)")
	var retention *topicRetention
	return c.runAdmin(ctx, args, adminCommand{fs: fs, argName: topicNameArg,
		validate: func([]string) (err error) {
			if *partitions < 1 {
				return fmt.Errorf("--partitions %d: need at least 1", *partitions)
			}
			if *replicas < 0 {
				return fmt.Errorf("--replicas %d: need at least 1 (or 0 for the default)", *replicas)
			}
			retention, err = parseTopicRetention(*retentionAge, *retentionBytes)
			return err
		},
		call: func(ctx context.Context, client *clients.Client, positional []string) (any, func(io.Writer), error) {
			opts := []clients.TopicOption{clients.WithPartitions(*partitions)}
			if *replicas > 0 {
				opts = append(opts, clients.WithReplicas(*replicas))
			}
			if retention != nil {
				opts = append(opts, clients.WithRetention(retention.age, retention.bytes))
			}
			info, err := client.CreateTopic(ctx, positional[0], opts...)
			return info, func(w io.Writer) {
				fmt.Fprintf(w, "created topic %s with %s, %s each\n", info.Name, plural(len(info.Partitions), "partition"), plural(info.Replicas, "replica"))
				if info.RetentionMs != 0 || info.RetentionBytes != 0 {
					fmt.Fprintln(w, retentionText(info))
				}
			}, err
		}})
}

// topicRetention is a topic's retention override as clients.WithRetention
// takes it: 0 keeps the brokers' default, a negative value means no limit.
type topicRetention struct {
	age   time.Duration
	bytes int64
}

// parseTopicRetention reads --retention and --retention-bytes; nil when
// neither overrides the brokers' defaults. It refuses what the broker
// would (a negative limit other than "no limit") and what WithRetention
// would (an age below a millisecond), with the flag named.
func parseTopicRetention(ageText, bytesText string) (*topicRetention, error) {
	const choices = "want a positive %s, 0 (the brokers' default) or none (no limit)"
	var retention topicRetention
	switch ageText {
	case "", "0":
	case "none":
		retention.age = -1
	default:
		age, err := time.ParseDuration(ageText)
		switch {
		case err != nil:
			return nil, fmt.Errorf("--retention %q: "+choices, ageText, "duration with its unit, such as 24h or 30m")
		case age < 0:
			return nil, fmt.Errorf("--retention %s is negative: "+choices, ageText, "duration")
		case age > 0 && age < time.Millisecond:
			return nil, fmt.Errorf("--retention %s is below a millisecond: "+choices, ageText, "duration")
		}
		retention.age = age
	}
	switch bytesText {
	case "", "0":
	case "none":
		retention.bytes = -1
	default:
		bytes, err := strconv.ParseInt(bytesText, 10, 64)
		switch {
		case err != nil:
			return nil, fmt.Errorf("--retention-bytes %q: "+choices, bytesText, "whole number of bytes")
		case bytes < 0:
			return nil, fmt.Errorf("--retention-bytes %d is negative: "+choices, bytes, "number of bytes")
		}
		retention.bytes = bytes
	}
	if retention == (topicRetention{}) {
		return nil, nil
	}
	return &retention, nil
}

// retentionText describes a topic's retention as the brokers apply it:
// 0 is the brokers' default, a negative value (or an age longer than a
// time.Duration holds) no limit.
func retentionText(info clients.TopicInfo) string {
	age := "brokers' default"
	switch {
	case info.RetentionMs < 0, info.RetentionMs > math.MaxInt64/int64(time.Millisecond):
		age = "no limit"
	case info.RetentionMs > 0:
		age = shortDuration(time.Duration(info.RetentionMs) * time.Millisecond)
	}
	size := "brokers' default"
	switch {
	case info.RetentionBytes < 0:
		size = "no limit"
	case info.RetentionBytes > 0:
		size = fmt.Sprintf("%d bytes", info.RetentionBytes)
	}
	return fmt.Sprintf("retention: age %s, size %s", age, size)
}

// shortDuration writes 24h for 24h0m0s and 1h30m for 1h30m0s.
func shortDuration(d time.Duration) string {
	text := d.String()
	if strings.HasSuffix(text, "m0s") {
		text = strings.TrimSuffix(text, "0s")
	}
	if strings.HasSuffix(text, "h0m") {
		text = strings.TrimSuffix(text, "0m")
	}
	return text
}

func runTopicList(ctx context.Context, c *cli, args []string) int {
	fs := c.newFlagSet("topic list", `
Usage: raftmq topic list [--server URLS] [--json]

Lists the cluster's topics.

Example:
  raftmq topic list --json
`)
	return c.runAdmin(ctx, args, adminCommand{fs: fs,
		call: func(ctx context.Context, client *clients.Client, _ []string) (any, func(io.Writer), error) {
			topics, err := client.ListTopics(ctx)
			slices.SortFunc(topics, func(a, b clients.TopicInfo) int { return strings.Compare(a.Name, b.Name) })
			if topics == nil {
				topics = []clients.TopicInfo{}
			}
			return topics, func(w io.Writer) {
				table := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
				fmt.Fprintln(table, "TOPIC\tPARTITIONS\tREPLICAS")
				for _, topic := range topics {
					replicas, _, _ := strings.Cut(replicaCountText(topic), " ")
					fmt.Fprintf(table, "%s\t%d\t%s\n", topic.Name, len(topic.Partitions), replicas)
				}
				table.Flush()
			}, err
		}})
}

func runTopicDescribe(ctx context.Context, c *cli, args []string) int {
	fs := c.newFlagSet("topic describe", `
Usage: raftmq topic describe NAME [--server URLS] [--json]

Shows a topic's retention and its partitions: leader, replicas, commit
index, high watermark. The commit index and high watermark are the
leader's as of its last status report, up to a status interval (a second
by default) old: right after a produce they may not count it yet. --json
prints the topic with retention_ms and retention_bytes when it overrides
the brokers' retention (-1: no limit).

Example:
  raftmq topic describe orders
`)
	return c.runAdmin(ctx, args, adminCommand{fs: fs, argName: topicNameArg,
		call: func(ctx context.Context, client *clients.Client, positional []string) (any, func(io.Writer), error) {
			info, err := client.DescribeTopic(ctx, positional[0])
			return info, func(w io.Writer) {
				fmt.Fprintln(w, topicSummary(info))
				fmt.Fprintln(w, retentionText(info))
				writePartitionTable(w, info.Partitions)
			}, err
		}})
}

// topicSummary is describe's first line: the topic's partitions and how
// many replicas each has now, which a reassignment may have made differ
// from the count the topic was created with (info.Replicas).
func topicSummary(info clients.TopicInfo) string {
	return fmt.Sprintf("topic %s: %s, %s", info.Name, plural(len(info.Partitions), "partition"), replicaCountText(info))
}

// replicaCountText is "3 replicas each", or "2-3 replicas per partition"
// when the partitions' counts differ.
func replicaCountText(info clients.TopicInfo) string {
	if len(info.Partitions) == 0 {
		return plural(info.Replicas, "replica") + " each"
	}
	fewest, most := len(info.Partitions[0].Replicas), len(info.Partitions[0].Replicas)
	for _, p := range info.Partitions[1:] {
		fewest, most = min(fewest, len(p.Replicas)), max(most, len(p.Replicas))
	}
	if fewest == most {
		return plural(most, "replica") + " each"
	}
	return fmt.Sprintf("%d-%d replicas per partition", fewest, most)
}

func writePartitionTable(w io.Writer, partitions []clients.PartitionInfo) {
	table := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(table, "PARTITION\tLEADER\tREPLICAS\tCOMMIT INDEX\tHIGH WATERMARK\tFAILED ON")
	for _, p := range partitions {
		fmt.Fprintf(table, "%d\t%s\t%s\t%d\t%d\t%s\n", p.Partition, leaderText(p.Leader), idList(p.Replicas), p.CommitIndex, p.HighWatermark,
			orDash(idList(p.Failed)))
	}
	table.Flush()
}

func leaderText(id uint64) string {
	if id == 0 {
		return "none"
	}
	return fmt.Sprint(id)
}

func idList(ids []uint64) string {
	parts := make([]string, len(ids))
	for i, id := range ids {
		parts[i] = fmt.Sprint(id)
	}
	return strings.Join(parts, ",")
}

func runTopicDelete(ctx context.Context, c *cli, args []string) int {
	fs := c.newFlagSet("topic delete", `
Usage: raftmq topic delete NAME [--server URLS] [--json]

Deletes a topic and all its records.

Example:
  raftmq topic delete orders
`)
	return c.runAdmin(ctx, args, adminCommand{fs: fs, argName: topicNameArg,
		call: func(ctx context.Context, client *clients.Client, positional []string) (any, func(io.Writer), error) {
			err := client.DeleteTopic(ctx, positional[0])
			return map[string]string{"deleted": positional[0]}, func(w io.Writer) {
				fmt.Fprintf(w, "deleted topic %s\n", positional[0])
			}, err
		}})
}

// printJSON writes v as one line of JSON.
func (c *cli) printJSON(name string, v any) int {
	encoder := json.NewEncoder(c.stdout)
	encoder.SetEscapeHTML(false)
	if err := encoder.Encode(v); err != nil {
		return c.fail(name, err)
	}
	return exitOK
}

func runTopicReassign(ctx context.Context, c *cli, args []string) int {
	fs := c.newFlagSet("topic reassign", `
Usage: raftmq topic reassign NAME --partition P --replicas IDS [--no-wait] [--wait-timeout D] [--server URLS] [--json]
       raftmq topic reassign NAME --partition P --cancel

Moves partition P of topic NAME to the brokers IDS (comma-separated, the
first is the preferred leader). New brokers join as learners, catch up
(from a snapshot and the retained log when retention deleted the start)
and are promoted; brokers not in IDS are then removed and delete their copy.
Producers keep publishing meanwhile. Waits until the move is done, showing
progress, unless --no-wait (and fails if the move is cancelled meanwhile).
--cancel turns a move in progress back to the
partition's replicas (say, when a target broker died); brokers only the
cancelled target named drop their copy. --json prints the move:

  {"reassignments":[{"topic":T,"partition":P,"from":[IDs],"to":[IDs]}],"done":BOOL}

Examples:
  raftmq topic reassign orders --partition 0 --replicas 1,2,4
  raftmq topic reassign orders --partition 0 --cancel
`)
	partition := fs.Int("partition", -1, "the `partition` to move")
	replicaList := fs.String("replicas", "", "the new replica set: broker `IDS`, comma-separated")
	cancel := fs.Bool("cancel", false, "turn the move in progress back to the current replicas")
	wait := newWaitFlags(fs)
	var replicas []uint64
	return c.runAdmin(ctx, args, adminCommand{fs: fs, argName: topicNameArg,
		validate: func([]string) error {
			if *partition < 0 {
				return errors.New("--partition is required")
			}
			if *partition > math.MaxUint32 {
				return fmt.Errorf("--partition %d is out of range", *partition)
			}
			if err := wait.validate(); err != nil {
				return err
			}
			if *cancel {
				if *replicaList != "" {
					return errors.New("--cancel takes no --replicas")
				}
				return nil
			}
			if *replicaList == "" {
				return errors.New("--replicas is required")
			}
			replicas = nil
			for _, field := range strings.Split(*replicaList, ",") {
				id, err := parseBrokerID(strings.TrimSpace(field))
				if err != nil {
					return fmt.Errorf("--replicas: %v", err)
				}
				if slices.Contains(replicas, id) {
					return fmt.Errorf("--replicas: broker %d named twice", id)
				}
				replicas = append(replicas, id)
			}
			return nil
		},
		call: func(callCtx context.Context, client *clients.Client, positional []string) (any, func(io.Writer), error) {
			var moves []clients.Reassignment
			var err error
			if *cancel {
				moves, err = client.CancelReassignment(callCtx, positional[0], uint32(*partition))
			} else {
				moves, err = client.ReassignPartition(callCtx, positional[0], uint32(*partition), replicas)
			}
			if err != nil {
				return nil, nil, err
			}
			return wait.finish(ctx, c, client, moves)
		}})
}
