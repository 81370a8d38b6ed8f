package main

import (
	"context"
	"fmt"
	"strings"
	"text/tabwriter"
)

const groupUsage = `
Usage: raftmq group <list|describe|reset-offsets|delete> [arguments]

  raftmq group list
  raftmq group describe GROUP [--topic T]
  raftmq group reset-offsets GROUP --topic T --to earliest|latest|OFFSET|TIME
  raftmq group delete GROUP

Consumer groups share a topic's partitions among their members and keep
committed offsets in the partitions' logs. Consume as a group with
'raftmq consume TOPIC --group GROUP'.

Example:
  raftmq group describe billing
`

func runGroup(ctx context.Context, c *cli, args []string) int {
	if len(args) == 0 {
		fmt.Fprint(c.stderr, strings.TrimLeft(groupUsage, "\n"))
		return exitUsage
	}
	switch args[0] {
	case "list":
		return runGroupList(ctx, c, args[1:])
	case "describe":
		return runGroupDescribe(ctx, c, args[1:])
	case "reset-offsets":
		return runGroupReset(ctx, c, args[1:])
	case "delete":
		return runGroupDelete(ctx, c, args[1:])
	case "-h", "-help", "--help", "help":
		fmt.Fprint(c.stdout, strings.TrimLeft(groupUsage, "\n"))
		return exitOK
	}
	fmt.Fprintf(c.stderr, "raftmq group: unknown subcommand %q (want list, describe, reset-offsets or delete)\nRun 'raftmq group --help' for usage.\n", args[0])
	return exitUsage
}

func runGroupList(ctx context.Context, c *cli, args []string) int {
	fs := c.newFlagSet("group list", `
Usage: raftmq group list [--server URLS] [--json]

Lists the consumer groups with their member counts and topics.

Example:
  raftmq group list --json
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
	groups, err := client.ListGroups(callCtx)
	if err != nil {
		return c.fail(fs.Name(), err)
	}
	if flags.json {
		return c.printJSON(fs.Name(), groups)
	}
	table := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(table, "GROUP\tMEMBERS\tTOPICS")
	for _, g := range groups {
		fmt.Fprintf(table, "%s\t%d\t%s\n", g.Group, g.Members, strings.Join(g.Topics, ","))
	}
	table.Flush()
	return exitOK
}

// topicList collects repeated --topic flags.
type topicList []string

func (t *topicList) String() string     { return strings.Join(*t, ",") }
func (t *topicList) Set(v string) error { *t = append(*t, v); return nil }

func runGroupDescribe(ctx context.Context, c *cli, args []string) int {
	fs := c.newFlagSet("group describe", `
Usage: raftmq group describe GROUP [--topic T]... [--server URLS] [--json]

Shows a group's members and, for every partition of its topics, the
committed offset, the end offset (high watermark), the lag in records and
in seconds (age of the oldest unconsumed record) and the owning member.
--topic adds topics to show (offsets outlive a group's members).

Example:
  raftmq group describe billing
`)
	var flags clientFlags
	flags.register(fs)
	var topics topicList
	fs.Var(&topics, "topic", "also show this `topic` (repeatable)")
	positional, status, ok := c.parse(fs, args)
	if !ok {
		return status
	}
	if len(positional) != 1 {
		return c.usageError(fs, "want exactly one GROUP, got %d arguments", len(positional))
	}
	client, err := flags.connect(ctx)
	if err != nil {
		return c.fail(fs.Name(), err)
	}
	defer client.Close()
	callCtx, cancel := adminContext(ctx)
	defer cancel()
	desc, err := client.DescribeGroup(callCtx, positional[0], topics...)
	if err != nil {
		return c.fail(fs.Name(), err)
	}
	if flags.json {
		return c.printJSON(fs.Name(), desc)
	}
	fmt.Fprintf(c.stdout, "group %s: %d members, topics %s\n", desc.Group, len(desc.Members), strings.Join(desc.Topics, ","))
	table := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(table, "TOPIC\tPARTITION\tCOMMITTED\tEND\tLAG\tLAG SECONDS\tOWNER")
	for _, p := range desc.Partitions {
		committed := "-"
		if p.Committed {
			committed = fmt.Sprint(p.Offset)
		}
		owner := p.Owner
		if owner == "" {
			owner = "-"
		}
		if p.Target != "" {
			owner += " -> " + p.Target
		}
		fmt.Fprintf(table, "%s\t%d\t%s\t%d\t%d\t%.1f\t%s\n", p.Topic, p.Partition, committed, p.HighWatermark, p.LagRecords, p.LagSeconds, owner)
	}
	table.Flush()
	if len(desc.Members) > 0 {
		members := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(members, "\nMEMBER\tPARTITIONS")
		for _, m := range desc.Members {
			var owned []string
			for _, p := range m.Owned {
				owned = append(owned, fmt.Sprintf("%s/%d", p.Topic, p.Partition))
			}
			fmt.Fprintf(members, "%s\t%s\n", m.Member, strings.Join(owned, ","))
		}
		members.Flush()
	}
	return exitOK
}

func runGroupReset(ctx context.Context, c *cli, args []string) int {
	fs := c.newFlagSet("group reset-offsets", `
Usage: raftmq group reset-offsets GROUP --topic T --to earliest|latest|OFFSET|TIME [--server URLS] [--json]

Sets the group's committed offset of every partition of topic T: to the
log start (earliest), the end (latest), an offset, or the first record at
or after an RFC 3339 time. Refused while the group has active members.

Example:
  raftmq group reset-offsets billing --topic orders --to earliest
`)
	var flags clientFlags
	flags.register(fs)
	topic := fs.String("topic", "", "the `topic` whose offsets to reset (required)")
	to := fs.String("to", "", "target: earliest, latest, an offset or an RFC 3339 `time` (required)")
	positional, status, ok := c.parse(fs, args)
	if !ok {
		return status
	}
	if len(positional) != 1 {
		return c.usageError(fs, "want exactly one GROUP, got %d arguments", len(positional))
	}
	if *topic == "" || *to == "" {
		return c.usageError(fs, "--topic and --to are required")
	}
	position, err := parsePosition(*to)
	if err != nil {
		return c.usageError(fs, "--to %q: %v", *to, err)
	}
	client, err := flags.connect(ctx)
	if err != nil {
		return c.fail(fs.Name(), err)
	}
	defer client.Close()
	callCtx, cancel := adminContext(ctx)
	defer cancel()
	results, err := client.ResetGroupOffsets(callCtx, positional[0], *topic, position)
	if err != nil {
		return c.fail(fs.Name(), err)
	}
	if flags.json {
		return c.printJSON(fs.Name(), results)
	}
	for _, r := range results {
		fmt.Fprintf(c.stdout, "%s/%d -> %d\n", r.Topic, r.Partition, r.Offset)
	}
	return exitOK
}

func runGroupDelete(ctx context.Context, c *cli, args []string) int {
	fs := c.newFlagSet("group delete", `
Usage: raftmq group delete GROUP [--server URLS] [--json]

Deletes a group without active members and its committed offsets.

Example:
  raftmq group delete billing
`)
	var flags clientFlags
	flags.register(fs)
	positional, status, ok := c.parse(fs, args)
	if !ok {
		return status
	}
	if len(positional) != 1 {
		return c.usageError(fs, "want exactly one GROUP, got %d arguments", len(positional))
	}
	client, err := flags.connect(ctx)
	if err != nil {
		return c.fail(fs.Name(), err)
	}
	defer client.Close()
	callCtx, cancel := adminContext(ctx)
	defer cancel()
	if err := client.DeleteGroup(callCtx, positional[0]); err != nil {
		return c.fail(fs.Name(), err)
	}
	if flags.json {
		return c.printJSON(fs.Name(), map[string]string{"deleted": positional[0]})
	}
	fmt.Fprintf(c.stdout, "deleted group %s\n", positional[0])
	return exitOK
}
