package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/raftmq/raftmq/clients"
)

const topicUsage = `
Usage: raftmq topic <create|list|describe|delete> [arguments]

  raftmq topic create NAME [--partitions N] [--replicas R]
  raftmq topic list
  raftmq topic describe NAME
  raftmq topic delete NAME

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
	case "-h", "-help", "--help", "help":
		fmt.Fprint(c.stdout, strings.TrimLeft(topicUsage, "\n"))
		return exitOK
	}
	fmt.Fprintf(c.stderr, "raftmq topic: unknown subcommand %q (want create, list, describe or delete)\nRun 'raftmq topic --help' for usage.\n", args[0])
	return exitUsage
}

// adminContext bounds one admin call.
func adminContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, 30*time.Second)
}

func runTopicCreate(ctx context.Context, c *cli, args []string) int {
	fs := c.newFlagSet("topic create", `
Usage: raftmq topic create NAME [--partitions N] [--replicas R] [--server URLS] [--json]

Creates a topic with N partitions, each replicated on R brokers.

Example:
  raftmq topic create orders --partitions 3 --replicas 3
`)
	var flags clientFlags
	flags.register(fs)
	partitions := fs.Int("partitions", 1, "number of `partitions`")
	replicas := fs.Int("replicas", 0, "brokers holding each partition (0: min(3, brokers))")
	positional, status, ok := c.parse(fs, args)
	if !ok {
		return status
	}
	if len(positional) != 1 {
		return c.usageError(fs, "want exactly one topic NAME, got %d arguments", len(positional))
	}
	if *partitions < 1 {
		return c.usageError(fs, "--partitions %d: need at least 1", *partitions)
	}
	if *replicas < 0 {
		return c.usageError(fs, "--replicas %d: need at least 1 (or 0 for the default)", *replicas)
	}
	client, err := flags.connect(ctx)
	if err != nil {
		return c.fail(fs.Name(), err)
	}
	defer client.Close()
	opts := []clients.TopicOption{clients.WithPartitions(*partitions)}
	if *replicas > 0 {
		opts = append(opts, clients.WithReplicas(*replicas))
	}
	callCtx, cancel := adminContext(ctx)
	defer cancel()
	info, err := client.CreateTopic(callCtx, positional[0], opts...)
	if err != nil {
		return c.fail(fs.Name(), err)
	}
	if flags.json {
		return c.printJSON(fs.Name(), info)
	}
	fmt.Fprintf(c.stdout, "created topic %s with %d partitions, %d replicas each\n", info.Name, len(info.Partitions), info.Replicas)
	return exitOK
}

func runTopicList(ctx context.Context, c *cli, args []string) int {
	fs := c.newFlagSet("topic list", `
Usage: raftmq topic list [--server URLS] [--json]

Lists the cluster's topics.

Example:
  raftmq topic list --json
`)
	var flags clientFlags
	flags.register(fs)
	positional, status, ok := c.parse(fs, args)
	if !ok {
		return status
	}
	if len(positional) != 0 {
		return c.usageError(fs, "unexpected arguments %q", positional)
	}
	client, err := flags.connect(ctx)
	if err != nil {
		return c.fail(fs.Name(), err)
	}
	defer client.Close()
	callCtx, cancel := adminContext(ctx)
	defer cancel()
	topics, err := client.ListTopics(callCtx)
	if err != nil {
		return c.fail(fs.Name(), err)
	}
	slices.SortFunc(topics, func(a, b clients.TopicInfo) int { return strings.Compare(a.Name, b.Name) })
	if flags.json {
		if topics == nil {
			topics = []clients.TopicInfo{}
		}
		return c.printJSON(fs.Name(), topics)
	}
	table := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(table, "TOPIC\tPARTITIONS\tREPLICAS")
	for _, topic := range topics {
		fmt.Fprintf(table, "%s\t%d\t%d\n", topic.Name, len(topic.Partitions), topic.Replicas)
	}
	table.Flush()
	return exitOK
}

func runTopicDescribe(ctx context.Context, c *cli, args []string) int {
	fs := c.newFlagSet("topic describe", `
Usage: raftmq topic describe NAME [--server URLS] [--json]

Shows a topic's partitions: leader, replicas, commit index, high watermark.

Example:
  raftmq topic describe orders
`)
	var flags clientFlags
	flags.register(fs)
	positional, status, ok := c.parse(fs, args)
	if !ok {
		return status
	}
	if len(positional) != 1 {
		return c.usageError(fs, "want exactly one topic NAME, got %d arguments", len(positional))
	}
	client, err := flags.connect(ctx)
	if err != nil {
		return c.fail(fs.Name(), err)
	}
	defer client.Close()
	callCtx, cancel := adminContext(ctx)
	defer cancel()
	info, err := client.DescribeTopic(callCtx, positional[0])
	if err != nil {
		return c.fail(fs.Name(), err)
	}
	if flags.json {
		return c.printJSON(fs.Name(), info)
	}
	fmt.Fprintf(c.stdout, "topic %s: %d partitions, %d replicas each\n", info.Name, len(info.Partitions), info.Replicas)
	writePartitionTable(c.stdout, info.Partitions)
	return exitOK
}

func writePartitionTable(w io.Writer, partitions []clients.PartitionInfo) {
	table := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(table, "PARTITION\tLEADER\tREPLICAS\tCOMMIT INDEX\tHIGH WATERMARK")
	for _, p := range partitions {
		fmt.Fprintf(table, "%d\t%s\t%s\t%d\t%d\n", p.Partition, leaderText(p.Leader), idList(p.Replicas), p.CommitIndex, p.HighWatermark)
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
	var flags clientFlags
	flags.register(fs)
	positional, status, ok := c.parse(fs, args)
	if !ok {
		return status
	}
	if len(positional) != 1 {
		return c.usageError(fs, "want exactly one topic NAME, got %d arguments", len(positional))
	}
	client, err := flags.connect(ctx)
	if err != nil {
		return c.fail(fs.Name(), err)
	}
	defer client.Close()
	callCtx, cancel := adminContext(ctx)
	defer cancel()
	if err := client.DeleteTopic(callCtx, positional[0]); err != nil {
		return c.fail(fs.Name(), err)
	}
	if flags.json {
		return c.printJSON(fs.Name(), map[string]string{"deleted": positional[0]})
	}
	fmt.Fprintf(c.stdout, "deleted topic %s\n", positional[0])
	return exitOK
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
