package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/raftmq/raftmq/clients"
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
	return c.runAdmin(ctx, args, adminCommand{fs: fs,
		call: func(ctx context.Context, client *clients.Client, _ []string) (any, func(io.Writer), error) {
			groups, err := client.ListGroups(ctx)
			return groups, func(w io.Writer) {
				table := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
				fmt.Fprintln(table, "GROUP\tMEMBERS\tTOPICS")
				for _, g := range groups {
					fmt.Fprintf(table, "%s\t%d\t%s\n", g.Group, g.Members, strings.Join(g.Topics, ","))
				}
				table.Flush()
			}, err
		}})
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
	var topics topicList
	fs.Var(&topics, "topic", "also show this `topic` (repeatable)")
	return c.runAdmin(ctx, args, adminCommand{fs: fs, argName: "GROUP",
		call: func(ctx context.Context, client *clients.Client, positional []string) (any, func(io.Writer), error) {
			desc, err := client.DescribeGroup(ctx, positional[0], topics...)
			return desc, func(w io.Writer) { writeGroupDescription(w, desc) }, err
		}})
}

func writeGroupDescription(w io.Writer, desc clients.GroupDescription) {
	fmt.Fprintf(w, "group %s: %s, topics %s\n", desc.Group, plural(len(desc.Members), "member"), strings.Join(desc.Topics, ","))
	table := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
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
		members := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
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
}

func runGroupReset(ctx context.Context, c *cli, args []string) int {
	fs := c.newFlagSet("group reset-offsets", `
Usage: raftmq group reset-offsets GROUP --topic T --to earliest|latest|OFFSET|TIME [--server URLS] [--json]

Sets the group's committed offset of every partition of topic T: to the
log start (earliest), the end (latest), an offset, or the first record at
or after an RFC 3339 time. Refused while the group has active members;
a partition a member claimed while the reset was under way keeps its
offset and is reported as failed (group_not_empty).

Example:
  raftmq group reset-offsets billing --topic orders --to earliest
`)
	topic := fs.String("topic", "", "the `topic` whose offsets to reset (required)")
	to := fs.String("to", "", "target `position`: earliest, latest, an offset or an RFC 3339 time (required)")
	var position clients.Position
	return c.runAdmin(ctx, args, adminCommand{fs: fs, argName: "GROUP",
		validate: func([]string) error {
			if *topic == "" || *to == "" {
				return errors.New("--topic and --to are required")
			}
			var err error
			if position, err = parsePosition(*to); err != nil {
				return fmt.Errorf("--to %q: %v", *to, err)
			}
			return nil
		},
		call: func(ctx context.Context, client *clients.Client, positional []string) (any, func(io.Writer), error) {
			results, err := client.ResetGroupOffsets(ctx, positional[0], *topic, position)
			return results, func(w io.Writer) {
				for _, r := range results {
					fmt.Fprintf(w, "%s/%d -> %d\n", r.Topic, r.Partition, r.Offset)
				}
			}, err
		}})
}

func runGroupDelete(ctx context.Context, c *cli, args []string) int {
	fs := c.newFlagSet("group delete", `
Usage: raftmq group delete GROUP [--server URLS] [--json]

Deletes a group without active members and its committed offsets.

Example:
  raftmq group delete billing
`)
	return c.runAdmin(ctx, args, adminCommand{fs: fs, argName: "GROUP",
		call: func(ctx context.Context, client *clients.Client, positional []string) (any, func(io.Writer), error) {
			err := client.DeleteGroup(ctx, positional[0])
			return map[string]string{"deleted": positional[0]}, func(w io.Writer) {
				fmt.Fprintf(w, "deleted group %s\n", positional[0])
			}, err
		}})
}
