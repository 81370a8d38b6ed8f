// Command benchmain runs the bench command without the rest of the raftmq
// CLI: go run ./bench/internal/benchmain produce --vs jetstream ...
// It takes the same arguments as "raftmq bench".
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/raftmq/raftmq/bench"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := bench.RunCommand(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "raftmq bench:", err)
		os.Exit(1)
	}
}
