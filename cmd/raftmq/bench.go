package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/nats-io/nats.go"

	"github.com/raftmq/raftmq/bench"
)

// runBenchmark is "raftmq bench produce|consume|e2e": the bench package
// parses the flags, runs the workload (and, with --vs jetstream, the same
// workload against NATS JetStream) and prints the table and JSON line. A
// progress bar goes to stderr when it is a terminal.
func runBenchmark(ctx context.Context, c *cli, args []string) int {
	stderr, _ := c.stderr.(*os.File)
	err := bench.RunCommand(ctx, args, c.stdout, stderr)
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, bench.ErrUsage):
		fmt.Fprintln(c.stderr, "raftmq bench:", strings.TrimPrefix(errorText(err), "usage: "))
		return exitUsage
	case errors.Is(err, nats.ErrNoServers):
		err = withHint(err, "is 'raftmq dev' or 'raftmq serve' running at --server?")
	}
	return c.fail("bench", err)
}
