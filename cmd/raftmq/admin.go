package main

import (
	"context"
	"flag"
	"io"

	"github.com/raftmq/raftmq/clients"
	"github.com/raftmq/raftmq/protocol"
)

// adminCommand is what the admin commands (topic, group, cluster) share:
// their flag set, how many positional arguments they take, an optional
// check of the command line, and the one call they make to the cluster.
type adminCommand struct {
	fs *flag.FlagSet
	// argName names the one positional argument (topicNameArg, "GROUP");
	// empty for a command that takes none. A topicNameArg that is no
	// topic name is a usage error.
	argName string
	// argCount is how many positional arguments argName names, when more
	// than one ("OLD NEW"); 0 means one.
	argCount int
	// validate checks the parsed command line; its error is a usage error.
	validate func(positional []string) error
	// call asks the cluster; it returns what --json prints and a function
	// that prints it for people.
	call func(ctx context.Context, client *clients.Client, positional []string) (result any, human func(w io.Writer), err error)
}

// topicNameArg is the argName of the commands that take a topic's name.
const topicNameArg = "topic NAME"

// runAdmin parses the command line (adding the client flags to cmd.fs),
// connects, makes the call with a bounded context, and prints the result.
func (c *cli) runAdmin(ctx context.Context, args []string, cmd adminCommand) int {
	var flags clientFlags
	flags.register(cmd.fs)
	positional, status, ok := c.parse(cmd.fs, args)
	if !ok {
		return status
	}
	switch {
	case cmd.argName == "" && len(positional) != 0:
		return c.usageError(cmd.fs, "unexpected arguments %q", positional)
	case cmd.argName != "" && cmd.argCount <= 1 && len(positional) != 1:
		return c.usageError(cmd.fs, "want exactly one %s, got %d arguments", cmd.argName, len(positional))
	case cmd.argCount > 1 && len(positional) != cmd.argCount:
		return c.usageError(cmd.fs, "want %s, got %d arguments", cmd.argName, len(positional))
	}
	if cmd.argName == topicNameArg {
		if err := protocol.ValidateTopicName(positional[0]); err != nil {
			return c.usageError(cmd.fs, "%v", err)
		}
	}
	if cmd.validate != nil {
		if err := cmd.validate(positional); err != nil {
			return c.usageError(cmd.fs, "%v", err)
		}
	}
	client, err := flags.connect(ctx, c.stderr)
	if err != nil {
		return c.fail(cmd.fs.Name(), err)
	}
	defer client.Close()
	callCtx, cancel := adminContext(ctx)
	defer cancel()
	result, human, err := cmd.call(callCtx, client, positional)
	if err != nil {
		return c.fail(cmd.fs.Name(), err)
	}
	if flags.json {
		return c.printJSON(cmd.fs.Name(), result)
	}
	human(c.stdout)
	return exitOK
}
