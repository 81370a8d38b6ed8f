package main

import (
	"context"
	"fmt"
	"strings"
	"text/tabwriter"
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
	cluster, err := client.ClusterStatus(callCtx)
	if err != nil {
		return c.fail(fs.Name(), err)
	}
	if flags.json {
		return c.printJSON(fs.Name(), cluster)
	}
	fmt.Fprintf(c.stdout, "controller leader: %s\n\n", leaderText(cluster.ControllerLeader))
	table := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
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
		fmt.Fprintln(c.stdout, "\nno topics")
		return exitOK
	}
	fmt.Fprintln(c.stdout)
	table = tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(table, "TOPIC\tPARTITION\tLEADER\tREPLICAS\tCOMMIT INDEX")
	for _, p := range cluster.Partitions {
		fmt.Fprintf(table, "%s\t%d\t%s\t%s\t%d\n", p.Topic, p.Partition, leaderText(p.Leader), idList(p.Replicas), p.CommitIndex)
	}
	table.Flush()
	return exitOK
}
