package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/raftmq/raftmq/clients"
)

const clusterUsage = `
Usage: raftmq cluster status [--server URLS] [--json]

Shows the brokers and whether each is reachable, the controller leader, and
per partition its leader, replicas and commit index. The --json form is one
line:

  {"controller_leader":ID,"brokers":[{"id":ID,"alive":BOOL}],"partitions":[{"topic":T,"partition":P,"leader":ID,"replicas":[IDs],"commit_index":N}]}

Example:
  raftmq cluster status
`

func runCluster(ctx context.Context, c *cli, args []string) int {
	if len(args) == 0 {
		fmt.Fprint(c.stderr, strings.TrimLeft(clusterUsage, "\n"))
		return exitUsage
	}
	switch args[0] {
	case "status":
		return runClusterStatus(ctx, c, args[1:])
	case "-h", "-help", "--help", "help":
		fmt.Fprint(c.stdout, strings.TrimLeft(clusterUsage, "\n"))
		return exitOK
	}
	fmt.Fprintf(c.stderr, "raftmq cluster: unknown subcommand %q (want status)\nRun 'raftmq cluster --help' for usage.\n", args[0])
	return exitUsage
}

func runClusterStatus(ctx context.Context, c *cli, args []string) int {
	fs := c.newFlagSet("cluster status", clusterUsage)
	return c.runAdmin(ctx, args, adminCommand{fs: fs,
		call: func(ctx context.Context, client *clients.Client, _ []string) (any, func(io.Writer), error) {
			cluster, err := client.ClusterStatus(ctx)
			return cluster, func(w io.Writer) { writeClusterStatus(w, cluster) }, err
		}})
}

func writeClusterStatus(w io.Writer, cluster clients.ClusterStatus) {
	fmt.Fprintf(w, "controller leader: %s\n\n", leaderText(cluster.ControllerLeader))
	table := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(table, "BROKER\tSTATUS")
	for _, b := range cluster.Brokers {
		state := "down"
		if b.Alive {
			state = "up"
		}
		fmt.Fprintf(table, "%d\t%s\n", b.ID, state)
	}
	table.Flush()
	if len(cluster.Partitions) == 0 {
		fmt.Fprintln(w, "\nno topics")
		return
	}
	fmt.Fprintln(w)
	table = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(table, "TOPIC\tPARTITION\tLEADER\tREPLICAS\tCOMMIT INDEX")
	for _, p := range cluster.Partitions {
		fmt.Fprintf(table, "%s\t%d\t%s\t%s\t%d\n", p.Topic, p.Partition, leaderText(p.Leader), idList(p.Replicas), p.CommitIndex)
	}
	table.Flush()
}
