package main

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/raftmq/raftmq/clients"
)

const clusterUsage = `
Usage: raftmq cluster <status|replace-broker|add-controller|remove-controller> [arguments]

  raftmq cluster status
  raftmq cluster replace-broker OLD NEW [--no-wait] [--wait-timeout D]
  raftmq cluster add-controller ID
  raftmq cluster remove-controller ID

status shows the brokers, the controller group and every partition's
leader, replicas and Raft membership. replace-broker moves every replica
of broker OLD (which may be down) to broker NEW and waits until the moves
are done, showing progress. add-controller makes a running broker a voter
of the controller group (it joins as a learner and is promoted once caught
up); remove-controller takes one out. 'raftmq cluster SUBCOMMAND --help'
shows a subcommand's flags and its --json form.

Examples:
  raftmq cluster status
  raftmq cluster replace-broker 3 4
  raftmq cluster add-controller 4
`

const clusterStatusUsage = `
Usage: raftmq cluster status [--server URLS] [--json]

Shows the brokers and whether each is reachable, the controller leader and
the controller group's voters and learners, and per partition its leader,
replicas, Raft voters and learners, commit index, and the target of a
reassignment in progress. The --json form is one line:

  {"controller_leader":ID,"brokers":[{"id":ID,"alive":BOOL,"stopping":BOOL}],"partitions":[{"topic":T,"partition":P,"leader":ID,"replicas":[IDs],"commit_index":N,"voters":[IDs],"outgoing_voters":[IDs],"learners":[IDs],"target":[IDs],"failed":[IDs]}],"controller":{"voters":[IDs],"learners":[IDs]}}

(stopping, voters, outgoing_voters, learners, target, failed and controller
appear only when set.)

Example:
  raftmq cluster status --json
`

func runCluster(ctx context.Context, c *cli, args []string) int {
	if len(args) == 0 {
		fmt.Fprint(c.stderr, strings.TrimLeft(clusterUsage, "\n"))
		return exitUsage
	}
	switch args[0] {
	case "status":
		return runClusterStatus(ctx, c, args[1:])
	case "replace-broker":
		return runReplaceBroker(ctx, c, args[1:])
	case "add-controller":
		return runControllerChange(ctx, c, args[1:], true)
	case "remove-controller":
		return runControllerChange(ctx, c, args[1:], false)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(c.stdout, strings.TrimLeft(clusterUsage, "\n"))
		return exitOK
	}
	fmt.Fprintf(c.stderr, "raftmq cluster: unknown subcommand %q (want status, replace-broker, add-controller or remove-controller)\nRun 'raftmq cluster --help' for usage.\n", args[0])
	return exitUsage
}

func runClusterStatus(ctx context.Context, c *cli, args []string) int {
	fs := c.newFlagSet("cluster status", clusterStatusUsage)
	return c.runAdmin(ctx, args, adminCommand{fs: fs,
		call: func(ctx context.Context, client *clients.Client, _ []string) (any, func(io.Writer), error) {
			cluster, err := client.ClusterStatus(ctx)
			return cluster, func(w io.Writer) { writeClusterStatus(w, cluster) }, err
		}})
}

func writeClusterStatus(w io.Writer, cluster clients.ClusterStatus) {
	fmt.Fprintf(w, "controller leader: %s\n", leaderText(cluster.ControllerLeader))
	if cluster.Controller != nil {
		fmt.Fprintf(w, "controller voters: %s%s\n", idList(cluster.Controller.Voters), membershipNote(cluster.Controller.OutgoingVoters, cluster.Controller.Learners))
	}
	fmt.Fprintln(w)
	table := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(table, "BROKER\tSTATUS")
	for _, b := range cluster.Brokers {
		state := "down"
		switch {
		case b.Alive && b.Stopping:
			state = "stopping"
		case b.Alive:
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
	fmt.Fprintln(table, "TOPIC\tPARTITION\tLEADER\tREPLICAS\tVOTERS\tLEARNERS\tCOMMIT INDEX\tMOVING TO\tFAILED ON")
	for _, p := range cluster.Partitions {
		fmt.Fprintf(table, "%s\t%d\t%s\t%s\t%s\t%s\t%d\t%s\t%s\n", p.Topic, p.Partition, leaderText(p.Leader), idList(p.Replicas),
			orDash(idList(p.Voters)+membershipNote(p.OutgoingVoters, nil)), orDash(idList(p.Learners)), p.CommitIndex, orDash(idList(p.Target)),
			orDash(idList(p.Failed)))
	}
	table.Flush()
}

// membershipNote describes a joint configuration's outgoing voters and
// the learners, "" when there are neither.
func membershipNote(outgoing, learners []uint64) string {
	note := ""
	if len(outgoing) > 0 {
		note += " (joint with " + idList(outgoing) + ")"
	}
	if len(learners) > 0 {
		note += ", learners " + idList(learners)
	}
	return note
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// parseBrokerID parses a broker id argument.
func parseBrokerID(s string) (uint64, error) {
	id, err := strconv.ParseUint(s, 10, 64)
	if err != nil || id == 0 {
		return 0, fmt.Errorf("broker id %q: want a positive integer", s)
	}
	return id, nil
}

func runReplaceBroker(ctx context.Context, c *cli, args []string) int {
	fs := c.newFlagSet("cluster replace-broker", `
Usage: raftmq cluster replace-broker OLD NEW [--no-wait] [--wait-timeout D] [--server URLS] [--json]

Moves every partition replica held by broker OLD to broker NEW, which takes
OLD's place in each replica list (OLD may be down, NEW must be running).
NEW joins each partition as a learner, catches up (from a snapshot and the
retained log when retention deleted the start), is promoted, and OLD is
removed; producers keep publishing meanwhile. Waits until every move is
done, showing progress, unless --no-wait; fails naming the moves someone
cancelled meanwhile. --json prints the moves:

  {"reassignments":[{"topic":T,"partition":P,"from":[IDs],"to":[IDs]}],"done":BOOL}

Example:
  raftmq cluster replace-broker 3 4
`)
	wait := newWaitFlags(fs)
	var old, replacement uint64
	return c.runAdmin(ctx, args, adminCommand{fs: fs, argName: "OLD NEW broker ids", argCount: 2,
		validate: func(positional []string) (err error) {
			if err := wait.validate(); err != nil {
				return err
			}
			if old, err = parseBrokerID(positional[0]); err != nil {
				return err
			}
			if replacement, err = parseBrokerID(positional[1]); err != nil {
				return err
			}
			if old == replacement {
				return fmt.Errorf("OLD and NEW are both %d", old)
			}
			return nil
		},
		call: func(callCtx context.Context, client *clients.Client, _ []string) (any, func(io.Writer), error) {
			moves, err := client.ReplaceBroker(callCtx, old, replacement)
			if err != nil {
				return nil, nil, err
			}
			return wait.finish(ctx, c, client, moves)
		}})
}

// waitFlags are the flags of a command that starts reassignments.
type waitFlags struct {
	noWait  *bool
	timeout *time.Duration
}

func newWaitFlags(fs interface {
	Bool(string, bool, string) *bool
	Duration(string, time.Duration, string) *time.Duration
}) waitFlags {
	return waitFlags{
		noWait:  fs.Bool("no-wait", false, "return once the controller recorded the moves"),
		timeout: fs.Duration("wait-timeout", 30*time.Minute, "give up waiting after this `duration` (the moves continue)"),
	}
}

// validate refuses a wait that could not start: a zero or negative
// --wait-timeout would give up at once, after the moves began.
func (f waitFlags) validate() error {
	if *f.timeout <= 0 {
		return fmt.Errorf("--wait-timeout %v must be positive (--no-wait returns without waiting)", *f.timeout)
	}
	return nil
}

// reassignResult is what --json prints for a reassignment command.
type reassignResult struct {
	Reassignments []clients.Reassignment `json:"reassignments"`
	Done          bool                   `json:"done"`
}

// finish waits for moves (unless --no-wait), printing progress on stderr,
// and returns the command's result. ctx is the command's own context, not
// the admin call's, so the wait is bounded by --wait-timeout only.
func (f waitFlags) finish(ctx context.Context, c *cli, client *clients.Client, moves []clients.Reassignment) (any, func(io.Writer), error) {
	result := reassignResult{Reassignments: moves}
	if result.Reassignments == nil {
		result.Reassignments = []clients.Reassignment{}
	}
	human := func(w io.Writer) {
		if len(moves) == 0 {
			fmt.Fprintln(w, "nothing to move: the replicas already are the requested ones")
			return
		}
		for _, move := range moves {
			fmt.Fprintf(w, "%s/%d: %s -> %s\n", move.Topic, move.Partition, idList(move.From), idList(move.To))
		}
		if result.Done {
			fmt.Fprintf(w, "%s moved\n", plural(len(moves), "partition"))
		} else {
			fmt.Fprintf(w, "%s moving; follow with 'raftmq cluster status'\n", plural(len(moves), "partition"))
		}
	}
	if *f.noWait || len(moves) == 0 {
		result.Done = len(moves) == 0
		return result, human, nil
	}
	waitCtx, cancel := context.WithTimeout(ctx, *f.timeout)
	defer cancel()
	last := ""
	err := client.WaitReassignments(waitCtx, moves, func(pending []clients.PartitionStatus) {
		line := fmt.Sprintf("%d of %d moved", len(moves)-len(pending), len(moves))
		for _, p := range pending {
			line += fmt.Sprintf("; %s/%d voters %s learners %s", p.Topic, p.Partition, orDash(idList(p.Voters)), orDash(idList(p.Learners)))
		}
		if line != last {
			fmt.Fprintln(c.stderr, line)
			last = line
		}
	})
	if err != nil {
		return nil, nil, err
	}
	result.Done = true
	return result, human, nil
}

func runControllerChange(ctx context.Context, c *cli, args []string, add bool) int {
	name, verb := "cluster remove-controller", "removes broker ID from"
	if add {
		name, verb = "cluster add-controller", "adds broker ID to"
	}
	fs := c.newFlagSet(name, fmt.Sprintf(`
Usage: raftmq %s ID [--server URLS] [--json]

%s the controller group's voters (a broker added joins as a learner and
is promoted once it caught up with the controller log; it need not be in the
brokers' --bootstrap list, but it must be running). Removing the last voter
is refused, as is removing one when the voters left would not have a
majority running (remove the broker that is down, or start it first). --json prints the controller group after the change:

  {"voters":[IDs],"learners":[IDs]}

Example:
  raftmq %s 4
`, name, strings.ToUpper(verb[:1])+verb[1:], name))
	var id uint64
	return c.runAdmin(ctx, args, adminCommand{fs: fs, argName: "broker ID",
		validate: func(positional []string) (err error) {
			id, err = parseBrokerID(positional[0])
			return err
		},
		call: func(ctx context.Context, client *clients.Client, _ []string) (any, func(io.Writer), error) {
			var membership clients.GroupMembership
			var err error
			if add {
				membership, err = client.AddController(ctx, id)
			} else {
				membership, err = client.RemoveController(ctx, id)
			}
			return membership, func(w io.Writer) {
				fmt.Fprintf(w, "controller voters: %s%s\n", idList(membership.Voters), membershipNote(membership.OutgoingVoters, membership.Learners))
			}, err
		}})
}
