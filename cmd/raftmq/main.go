package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/raftmq/raftmq/clients"
	"github.com/raftmq/raftmq/protocol"
	"github.com/raftmq/raftmq/transport"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		// The first signal asks the command to stop (flushing, shutting
		// down); a second one ends the process as it would without raftmq's
		// handler.
		<-ctx.Done()
		stop()
	}()
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// Exit statuses.
const (
	exitOK    = 0
	exitError = 1 // the command ran and failed
	exitUsage = 2 // bad command line
	// exitInterrupted: an interrupt (SIGINT, SIGTERM) stopped a command
	// before it did all it was asked (128 + SIGINT, as shells report).
	exitInterrupted = 130
)

// cli carries a command's standard streams.
type cli struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	// help prints a flag set's usage (newFlagSet); parse calls it for
	// --help only.
	help map[*flag.FlagSet]func()
}

// command is one subcommand.
type command struct {
	name    string
	summary string
	run     func(ctx context.Context, c *cli, args []string) int
}

func commands() []command {
	return []command{
		{"serve", "run a broker", runServe},
		{"dev", "run a throwaway cluster of N brokers in this process", runDev},
		{"topic", "create, list, describe, delete and reassign topics", runTopic},
		{"produce", "publish records", runProduce},
		{"consume", "read records", runConsume},
		{"group", "list, describe, reset-offsets and delete consumer groups", runGroup},
		{"cluster", "show the cluster's brokers and partitions; replace brokers, change the controller's members", runCluster},
		{"bench", "throughput and latency benchmark, side by side with NATS JetStream", runBenchmark},
		{"version", "print the build's version and VCS revision (also --version)", runVersion},
	}
}

const mainUsage = `raftmq is a Raft-replicated message queue over NATS.

Usage:
  raftmq <command> [arguments]

Commands:
%s
Run 'raftmq <command> --help' for a command's flags and an example.

The topic, produce, consume, group and cluster commands (and bench with
--server) reach the cluster with --server (default nats://127.0.0.1:4222)
and, on a NATS system that requires them, --creds, --user and --password, or --token, and --tls-ca
(--tls-cert and --tls-key for a client certificate). $RAFTMQ_PASSWORD and
$RAFTMQ_TOKEN keep secrets off the command line; an open cluster (raftmq
dev's) refuses a token, so leave $RAFTMQ_TOKEN unset for it.

Example, a three-broker cluster in one process and a first topic:
  raftmq dev
  raftmq topic create orders --partitions 3
  echo hello | raftmq produce orders
  raftmq consume orders --from earliest --count 1
`

// run is main without the process: it returns the exit status.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	c := &cli{stdin: stdin, stdout: stdout, stderr: stderr}
	if len(args) == 0 {
		fmt.Fprint(stderr, mainHelp())
		return exitUsage
	}
	name := args[0]
	switch name {
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, mainHelp())
		return exitOK
	case "-version", "--version":
		name = "version"
	}
	for _, cmd := range commands() {
		if cmd.name == name {
			return cmd.run(ctx, c, args[1:])
		}
	}
	fmt.Fprintf(stderr, "raftmq: unknown command %q\nRun 'raftmq --help' for the commands.\n", name)
	return exitUsage
}

func mainHelp() string {
	var list strings.Builder
	for _, cmd := range commands() {
		fmt.Fprintf(&list, "  %-8s %s\n", cmd.name, cmd.summary)
	}
	return fmt.Sprintf(mainUsage, list.String())
}

// newFlagSet returns a flag set whose --help prints usage (text with an
// example) and the flags to stdout. A bad flag prints only its error, to
// stderr (parse): the flag package would print the whole usage for it
// too, to stdout, where a script reading --json output gets it.
func (c *cli) newFlagSet(name, usage string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	if c.help == nil {
		c.help = map[*flag.FlagSet]func(){}
	}
	c.help[fs] = func() {
		fmt.Fprint(c.stdout, strings.TrimLeft(usage, "\n"))
		fmt.Fprintln(c.stdout, "\nFlags:")
		fs.SetOutput(c.stdout)
		fs.PrintDefaults()
		fs.SetOutput(io.Discard)
	}
	return fs
}

// partitionFlag is an int flag for --partition whose unset value, -1,
// reads as empty, so flag.PrintDefaults leaves its default out (the
// usage says it: "(default: all)") instead of printing "(default -1)".
type partitionFlag struct{ p *int }

// partitionVar defines --partition on fs, stored in p, -1 when unset.
func partitionVar(fs *flag.FlagSet, p *int, usage string) {
	*p = -1
	fs.Var(partitionFlag{p}, "partition", usage)
}

func (f partitionFlag) String() string {
	if f.p == nil || *f.p == -1 {
		return ""
	}
	return strconv.Itoa(*f.p)
}

// Set parses as flag.IntVar does, with its error texts.
func (f partitionFlag) Set(s string) error {
	n, err := strconv.ParseInt(s, 0, strconv.IntSize)
	switch {
	case errors.Is(err, strconv.ErrRange):
		return errors.New("value out of range")
	case err != nil:
		return errors.New("parse error")
	}
	*f.p = int(n)
	return nil
}

// plural is "1 record" or "n records".
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// parse parses flags placed before, between or after positional arguments
// and returns the positional ones. ok is false when the command must stop
// with status (help was printed, or the command line is bad).
func (c *cli) parse(fs *flag.FlagSet, args []string) (positional []string, status int, ok bool) {
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				if help := c.help[fs]; help != nil {
					help()
				}
				return nil, exitOK, false
			}
			return nil, c.usageError(fs, "%v%s", err, durationHint(fs, err)), false
		}
		args = fs.Args()
		if len(args) == 0 {
			return positional, exitOK, true
		}
		if args[0] == "--" {
			return append(positional, args[1:]...), exitOK, true
		}
		positional = append(positional, args[0])
		args = args[1:]
	}
}

// durationHint explains a bad value of a duration flag: the flag package
// only says "parse error", and "5" needs a unit.
func durationHint(fs *flag.FlagSet, err error) string {
	_, rest, ok := strings.Cut(err.Error(), " for flag -")
	if !ok {
		return ""
	}
	name, _, _ := strings.Cut(rest, ":")
	if f := fs.Lookup(name); f != nil {
		if g, ok := f.Value.(flag.Getter); ok {
			if _, ok := g.Get().(time.Duration); ok {
				return " (a duration with its unit, such as 500ms, 5s or 2m)"
			}
		}
	}
	return ""
}

// usageError reports a bad command line and returns exitUsage.
func (c *cli) usageError(fs *flag.FlagSet, format string, args ...any) int {
	fmt.Fprintf(c.stderr, "raftmq %s: %s\nRun 'raftmq %s --help' for usage.\n", fs.Name(), withoutPackagePrefixes(fmt.Sprintf(format, args...)), fs.Name())
	return exitUsage
}

// fail reports a failed command and returns exitError.
func (c *cli) fail(name string, err error) int {
	if errors.Is(err, protocol.CodeGroupNotEmpty) {
		err = withHint(err, "stop its members first (a member that died leaves after its session timeout, 10 s by default)")
	}
	fmt.Fprintf(c.stderr, "raftmq %s: %s\n", name, errorText(err))
	return exitError
}

// packagePrefix is a Go package's prefix on an error's message, at its
// start or after an error it wraps ("clients: assign t: raftmq: ...").
// The protocol's own "raftmq: " stays: it introduces the error code.
var packagePrefix = regexp.MustCompile(`(^|: )(?:clients|protocol|broker|transport|bench): `)

// errorText is err's message as the CLI prints it: without the Go
// packages' prefixes, which say where the error came from in the code,
// not what went wrong.
func errorText(err error) string {
	return withoutPackagePrefixes(err.Error())
}

func withoutPackagePrefixes(text string) string {
	for {
		// A prefix right after another ("bench: bench: ") is found on
		// the next pass.
		stripped := packagePrefix.ReplaceAllString(text, "$1")
		if stripped == text {
			return text
		}
		text = stripped
	}
}

// hintedError is an error with advice on what to do about it after its
// message; errors.Is and errors.As see the error.
type hintedError struct {
	err  error
	hint string
}

func (e *hintedError) Error() string { return e.err.Error() + "; " + e.hint }
func (e *hintedError) Unwrap() error { return e.err }

// withHint adds hint to err's message.
func withHint(err error, hint string) error { return &hintedError{err: err, hint: hint} }

// unknownTopicHint adds how to create topic to an unknown_topic error.
func unknownTopicHint(err error, topic string) error {
	if errors.Is(err, protocol.CodeUnknownTopic) {
		return withHint(err, "create it with: raftmq topic create "+topic)
	}
	return err
}

// clientFlags are the flags of every client command.
type clientFlags struct {
	server      string
	json        bool
	clusterName string
	timeout     time.Duration
	// auth holds the NATS credentials and TLS files (URLs unused).
	auth transport.ConnectConfig
}

func (f *clientFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.server, "server", clients.DefaultServerURL, "NATS `URLs` of the cluster, comma-separated")
	fs.BoolVar(&f.json, "json", false, "print JSON")
	fs.StringVar(&f.clusterName, "cluster-name", "raftmq", "cluster `name` the brokers were started with (the subject prefix)")
	f.auth.RegisterClientFlags(fs)
}

// connect dials the cluster; ctx bounds the dial. A lost connection and
// each reconnect are reported on stderr: the client reconnects for ever,
// so a consume whose cluster went away would otherwise wait in silence.
func (f *clientFlags) connect(ctx context.Context, stderr io.Writer) (*clients.Client, error) {
	auth, err := f.auth.WithEnvSecrets()
	if err != nil {
		return nil, fmt.Errorf("connection flags: %w", err)
	}
	dialCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	natsOptions := append(auth.AuthOptions(),
		nats.DisconnectErrHandler(func(nc *nats.Conn, err error) {
			if err != nil && !nc.IsClosed() {
				fmt.Fprintf(stderr, "raftmq: lost the connection to NATS (%v); reconnecting\n", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			fmt.Fprintf(stderr, "raftmq: reconnected to %s\n", nc.ConnectedUrlRedacted())
		}))
	client, err := clients.Connect(dialCtx, f.server, clients.WithSubjectPrefix(f.clusterName), clients.WithName("raftmq-cli"),
		clients.WithNATSOptions(natsOptions...))
	if errors.Is(err, nats.ErrNoServers) {
		return nil, withHint(err, fmt.Sprintf("is 'raftmq dev' or 'raftmq serve' running at --server %s?", f.server))
	}
	if err != nil {
		return nil, err
	}
	if err := awaitBrokers(ctx, client, brokersWait); errors.Is(err, clients.ErrNoBrokers) {
		// Brokers may be starting or restarting: the command goes on
		// waiting as it does, but says what may be wrong.
		fmt.Fprintf(stderr, "raftmq: no broker answers at %s under cluster name %q yet; is raftmq running there, and is --cluster-name the name its brokers were started with? (waiting)\n", f.server, f.clusterName)
	}
	return client, nil
}

// brokersWait is how long a client command waits for a broker to listen
// under its cluster name before it warns that none does.
const brokersWait = 2 * time.Second

// awaitBrokers waits, up to wait, until some broker listens under the
// client's subject prefix (a metadata request gets anything but "no
// responders"); clients.ErrNoBrokers when none did. A wrong --cluster-name
// otherwise left produce waiting for its delivery timeout and group
// commands retrying for half a minute, in silence.
func awaitBrokers(ctx context.Context, client *clients.Client, wait time.Duration) error {
	subject := protocol.SubjectAdmin(client.SubjectPrefix(), protocol.AdminMetadata)
	deadline := time.Now().Add(wait)
	for {
		requestCtx, cancel := context.WithTimeout(ctx, time.Second)
		_, err := client.Conn().RequestWithContext(requestCtx, subject, []byte(`{"v":1}`))
		cancel()
		if !errors.Is(err, nats.ErrNoResponders) {
			return nil // a reply, or a broker slow to give one
		}
		if time.Now().After(deadline) {
			return clients.ErrNoBrokers
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}
