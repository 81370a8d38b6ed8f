package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/raftmq/raftmq/clients"
	"github.com/raftmq/raftmq/protocol"
)

// maxGeneratedRecord bounds --size: NATS's largest max payload (64 MiB),
// past which no cluster takes a record. The real bound is lower, the
// servers' max payload (1 MiB by default) and the brokers' batch limit,
// and depends on compression; a record over it fails on its own with
// record_too_large or batch_too_large, which say what the limit is.
const maxGeneratedRecord = 64 << 20

const produceUsage = `
Usage: raftmq produce TOPIC [--key K] [--partition P] [VALUE ...] [flags]
       raftmq produce TOPIC --count N [--size S] [flags]

Publishes one record per VALUE or, with no VALUE, one record per line of
standard input. With --count it sends N generated records of S bytes and
prints a throughput summary (with a progress bar on a terminal).

With --json it prints one line per acknowledged record:
  {"partition":P,"offset":O,"value":"..."}
(value omitted for generated records). Errors go to standard error; the exit
status is non-zero if any record was not acknowledged, and 130 when Ctrl-C
stopped it early (what it had read is sent first).

Examples:
  raftmq produce orders hello world
  seq 10 | raftmq produce orders --key customer-7 --json
  raftmq produce orders --count 1000000 --size 100
`

type produceFlags struct {
	clientFlags
	key         string
	partition   int
	count       int
	size        int
	acks        string
	compression string
	linger      time.Duration
}

func runProduce(ctx context.Context, c *cli, args []string) int {
	fs := c.newFlagSet("produce", produceUsage)
	var flags produceFlags
	flags.register(fs)
	fs.StringVar(&flags.key, "key", "", "record `key` (records with one key go to one partition)")
	partitionVar(fs, &flags.partition, "send to this `partition` (default: by key hash, round robin without a key)")
	fs.IntVar(&flags.count, "count", 0, "send `N` generated records instead of VALUEs or standard input")
	fs.IntVar(&flags.size, "size", 100, "`bytes` of each generated record (with --count)")
	fs.StringVar(&flags.acks, "acks", "quorum", "when a record is acknowledged: quorum, applied, or leader (unsafe: may lose acknowledged records)")
	fs.StringVar(&flags.compression, "compression", "none", "batch compression: none, s2 or zstd")
	fs.DurationVar(&flags.linger, "linger", 5*time.Millisecond, "how long a batch waits for more records")
	positional, status, ok := c.parse(fs, args)
	if !ok {
		return status
	}
	if len(positional) == 0 {
		return c.usageError(fs, "missing TOPIC")
	}
	topic, values := positional[0], positional[1:]
	sizeSet := false
	fs.Visit(func(f *flag.Flag) {
		if f.Name == "size" {
			sizeSet = true
		}
	})
	switch {
	case flags.count < 0:
		return c.usageError(fs, "--count %d is negative", flags.count)
	case flags.count > 0 && len(values) > 0:
		return c.usageError(fs, "--count generates records; give no VALUE with it")
	case sizeSet && flags.count == 0:
		return c.usageError(fs, "--size needs --count")
	case flags.size < 0:
		return c.usageError(fs, "--size %d is negative", flags.size)
	case flags.partition < -1:
		return c.usageError(fs, "--partition %d is negative", flags.partition)
	case flags.partition > math.MaxUint32:
		return c.usageError(fs, "--partition %d is out of range", flags.partition)
	case flags.size > maxGeneratedRecord:
		return c.usageError(fs, "--size %d is over NATS's largest max payload (%d bytes): no cluster takes such a record", flags.size, maxGeneratedRecord)
	case flags.linger < 0:
		return c.usageError(fs, "--linger %v is negative", flags.linger)
	}
	acks, err := protocol.ParseAcks(flags.acks)
	if err != nil {
		return c.usageError(fs, "--acks %q: want quorum, applied or leader", flags.acks)
	}
	codec, ok := parseCodec(flags.compression)
	if !ok {
		return c.usageError(fs, "--compression %q: want none, s2 or zstd", flags.compression)
	}
	if err := protocol.ValidateTopicName(topic); err != nil {
		return c.usageError(fs, "%v", err)
	}

	client, err := flags.connect(ctx, c.stderr)
	if err != nil {
		return c.fail(fs.Name(), err)
	}
	defer client.Close()
	opts := []clients.ProducerOption{clients.WithAcks(acks), clients.WithCompression(codec), clients.WithLinger(flags.linger)}
	if flags.partition >= 0 {
		opts = append(opts, clients.WithPartitioner(clients.ManualPartitioner()))
	}
	producer, err := client.NewProducer(opts...)
	if err != nil {
		return c.fail(fs.Name(), err)
	}
	run := &produceRun{cli: c, flags: &flags, topic: topic, producer: producer}
	run.output = bufio.NewWriter(c.stdout)
	run.flushEach = isTerminal(c.stdout) || isTerminal(c.stdin)
	switch {
	case flags.count > 0:
		return run.generated(ctx)
	case len(values) > 0:
		for _, v := range values {
			run.send(ctx, []byte(v), true)
		}
	default:
		if err := run.lines(ctx); err != nil {
			run.noteError(fmt.Errorf("reading standard input: %w", err))
		}
	}
	return run.finish(ctx)
}

func parseCodec(name string) (clients.Codec, bool) {
	switch name {
	case "none", "":
		return clients.CompressionNone, true
	case "s2":
		return clients.CompressionS2, true
	case "zstd":
		return clients.CompressionZstd, true
	}
	return 0, false
}

// produceRun is one produce command: it sends records and accounts for
// their acknowledgements.
type produceRun struct {
	cli      *cli
	flags    *produceFlags
	topic    string
	producer *clients.Producer

	mu     sync.Mutex
	output *bufio.Writer
	// flushEach writes every --json line at once (someone is watching).
	flushEach bool
	sent      int
	acked     int
	failed    int
	errors    []string
	firstErr  error
}

// producedLine is one --json line of produce.
type producedLine struct {
	Partition uint32  `json:"partition"`
	Offset    uint64  `json:"offset"`
	Value     *string `json:"value,omitempty"`
}

func (r *produceRun) send(ctx context.Context, value []byte, printValue bool) {
	rec := &clients.Record{Topic: r.topic, Value: value}
	if r.flags.key != "" {
		rec.Key = []byte(r.flags.key)
	}
	if r.flags.partition >= 0 {
		rec.Partition = uint32(r.flags.partition)
	}
	r.mu.Lock()
	r.sent++
	r.mu.Unlock()
	r.producer.Produce(ctx, rec, func(rec *clients.Record, err error) {
		r.mu.Lock()
		defer r.mu.Unlock()
		if err != nil {
			r.failed++
			r.noteErrorLocked(err)
			return
		}
		r.acked++
		if !r.flags.json {
			return
		}
		line := producedLine{Partition: rec.Partition, Offset: rec.Offset}
		if printValue {
			v := string(rec.Value)
			line.Value = &v
		}
		encoder := json.NewEncoder(r.output)
		encoder.SetEscapeHTML(false)
		_ = encoder.Encode(line)
		if r.flushEach {
			_ = r.output.Flush()
		}
	})
}

func (r *produceRun) noteError(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.noteErrorLocked(err)
}

// noteErrorLocked keeps the first few distinct errors for the report.
func (r *produceRun) noteErrorLocked(err error) {
	if r.firstErr == nil {
		r.firstErr = err
	}
	message := errorText(unknownTopicHint(err, r.topic))
	for _, seen := range r.errors {
		if seen == message {
			return
		}
	}
	if len(r.errors) < 5 {
		r.errors = append(r.errors, message)
	}
}

// lines sends one record per line of standard input, until its end or an
// interrupt. The reads run on a goroutine of their own, so that an
// interrupt stops the command while a read waits for a line (a terminal,
// a pipe from a quiet writer); that goroutine is left to the read.
func (r *produceRun) lines(ctx context.Context) error {
	lines := make(chan []byte)
	var readErr error
	go func() {
		defer close(lines)
		scanner := bufio.NewScanner(r.cli.stdin)
		scanner.Buffer(make([]byte, 64<<10), 16<<20)
		for scanner.Scan() {
			line := scanner.Bytes()
			if n := len(line); n > 0 && line[n-1] == '\r' {
				line = line[:n-1]
			}
			select {
			case lines <- append([]byte(nil), line...):
			case <-ctx.Done():
				return
			}
		}
		readErr = scanner.Err()
	}()
	for {
		select {
		case <-ctx.Done():
			return nil // finish reports the interrupt
		case line, ok := <-lines:
			if !ok {
				return readErr
			}
			r.send(ctx, line, true)
		}
	}
}

// finish flushes, reports errors and returns the exit status.
func (r *produceRun) finish(ctx context.Context) int {
	r.flushAndClose(ctx)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.output.Flush()
	if !r.flags.json && r.firstErr == nil {
		fmt.Fprintf(r.cli.stderr, "produced %s to %s\n", plural(r.acked, "record"), r.topic)
	}
	return r.interruptedLocked(ctx, r.reportLocked())
}

// interruptedLocked returns status, or exitInterrupted, saying so, when an
// interrupt ended the command early and nothing failed.
func (r *produceRun) interruptedLocked(ctx context.Context, status int) int {
	if status != exitOK || ctx.Err() == nil || r.flags.count > 0 && r.acked == r.flags.count {
		return status
	}
	fmt.Fprintf(r.cli.stderr, "raftmq produce: interrupted after %s\n", plural(r.acked, "record"))
	return exitInterrupted
}

func (r *produceRun) flushAndClose(ctx context.Context) {
	if err := r.producer.Flush(ctx); err != nil && !errors.Is(err, context.Canceled) {
		r.noteError(err)
	}
	// After an interrupt, give in-flight records a moment to be acknowledged.
	closeCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	_ = r.producer.Close(closeCtx)
}

func (r *produceRun) reportLocked() int {
	for _, message := range r.errors {
		fmt.Fprintf(r.cli.stderr, "raftmq produce: %s\n", message)
	}
	if unacked := r.sent - r.acked; unacked > 0 || r.firstErr != nil {
		fmt.Fprintf(r.cli.stderr, "raftmq produce: %d of %s not acknowledged\n", unacked, plural(r.sent, "record"))
		return exitError
	}
	return exitOK
}

// generated sends --count records of --size bytes and prints throughput.
func (r *produceRun) generated(ctx context.Context) int {
	value := make([]byte, r.flags.size)
	random := rand.New(rand.NewPCG(1, 2))
	const letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	for i := range value {
		value[i] = letters[random.IntN(len(letters))]
	}
	summaryOut := r.cli.stdout
	if r.flags.json {
		summaryOut = r.cli.stderr
	}
	var bar *progressBar
	if isTerminal(r.cli.stderr) {
		bar = startProgressBar(r.cli.stderr, r.flags.count, func() int {
			r.mu.Lock()
			defer r.mu.Unlock()
			return r.acked
		})
	}
	start := time.Now()
	for i := 0; i < r.flags.count && ctx.Err() == nil; i++ {
		r.send(ctx, value, false)
	}
	r.flushAndClose(ctx)
	elapsed := time.Since(start)
	bar.stop()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.output.Flush()
	writeThroughput(summaryOut, r.acked, r.flags.size, elapsed)
	return r.interruptedLocked(ctx, r.reportLocked())
}

// writeThroughput prints the summary line of produce --count.
func writeThroughput(w io.Writer, records, size int, elapsed time.Duration) {
	seconds := max(elapsed.Seconds(), 1e-9)
	megabytes := float64(records) * float64(size) / 1e6
	fmt.Fprintf(w, "%s of %s (%.1f MB) in %s: %.0f records/s, %.2f MB/s\n",
		plural(records, "record"), plural(size, "byte"), megabytes, elapsed.Round(time.Millisecond), float64(records)/seconds, megabytes/seconds)
}
