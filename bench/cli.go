package bench

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"runtime/trace"
	"strconv"
	"strings"
	"time"

	"github.com/raftmq/raftmq/clients"
	"github.com/raftmq/raftmq/protocol"
	"github.com/raftmq/raftmq/transport"
)

// Usage is the help text of the bench command.
const Usage = `usage: raftmq bench produce|consume|e2e [flags]

Runs a workload against an in-process raftmq cluster (or --server) and, with
--vs jetstream, the same workload against an in-process NATS JetStream
cluster of the same size, with its default lazy sync and with
sync_interval: always. Prints a Markdown table; with --json the last line of
output is one JSON object with the figures.

Examples:
  raftmq bench produce --brokers 3 --replicas 3 --count 1000000 --size 100 --vs jetstream --json
  raftmq bench produce --window 1 --count 20000             # unloaded latency
  raftmq bench e2e --rate 100000 --duration 20s             # fixed rate, CO-corrected
  raftmq bench produce --sizes 100,1024,10240 --out results # JSON, Markdown and charts
`

// ErrUsage marks a command-line mistake (unknown workload, bad flag).
var ErrUsage = errors.New("bench: usage")

// cliOptions are the command-line settings beyond the Workload.
type cliOptions struct {
	systems       []string
	raftmqURLs    string
	raftmqAuth    transport.ConnectConfig // credentials and TLS for --server
	clusterName   string                  // --server's cluster name
	jetStreamURLs string
	jsonOutput    bool
	outDir        string
	chartFormat   string
	dataDir       string
	sizes         []int
	cpuProfile    string
	blockProfile  string
	mutexProfile  string
	traceFile     string
	versusSystems string
	keepTopics    bool
	// log receives the targets' notes (stderr, or nothing).
	log io.Writer
}

// RunCommand runs "raftmq bench" with args (after "bench"): it parses flags,
// runs the benchmark and prints the table (and the JSON line) to stdout;
// progress goes to stderr when it is a terminal. --help prints the usage
// and the flags to stdout; a command line without a workload is an
// ErrUsage.
func RunCommand(ctx context.Context, args []string, stdout io.Writer, stderr *os.File) error {
	if len(args) == 0 {
		return fmt.Errorf("%w: name a workload: produce, consume or e2e\n%s", ErrUsage, Usage)
	}
	if args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stdout, Usage)
		return nil
	}
	kind, err := ParseKind(args[0])
	if err != nil {
		return fmt.Errorf("%w: %w\n%s", ErrUsage, err, Usage)
	}
	w, opts, err := parseFlags(kind, args[1:], stdout)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("%w: %w", ErrUsage, err)
	}
	if opts.cpuProfile != "" {
		f, err := os.Create(opts.cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	if opts.traceFile != "" {
		f, err := os.Create(opts.traceFile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := trace.Start(f); err != nil {
			return err
		}
		defer trace.Stop()
	}
	stopProfiles, enableProfiles := waitProfiles(opts.blockProfile, opts.mutexProfile)
	enableProfiles()
	defer stopProfiles()
	var log io.Writer = io.Discard
	if stderr != nil {
		log = stderr
	}
	opts.log = log
	cfg := Config{
		Workload:   w,
		Sizes:      opts.sizes,
		DataDir:    opts.dataDir,
		Progress:   NewProgress(stderr),
		Log:        log,
		Command:    "raftmq bench " + strings.Join(args, " "),
		AfterStart: enableProfiles,
	}
	for _, system := range opts.systems {
		spec, err := targetSpec(system, w, opts)
		if err != nil {
			return fmt.Errorf("%w: %w", ErrUsage, err)
		}
		cfg.Targets = append(cfg.Targets, spec)
	}
	report, runErr := Run(ctx, cfg)
	if report == nil {
		return runErr
	}
	if err := report.WriteMarkdown(stdout); err != nil {
		return err
	}
	if opts.outDir != "" {
		if err := writeOutputs(report, opts, stdout); err != nil {
			return errors.Join(runErr, err)
		}
	}
	if opts.jsonOutput {
		line, err := json.Marshal(report.Summary())
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s\n", line)
	}
	return runErr
}

func writeOutputs(report *Report, opts cliOptions, stdout io.Writer) error {
	if err := os.MkdirAll(opts.outDir, 0o755); err != nil {
		return err
	}
	base := filepath.Join(opts.outDir, string(report.Workload.Kind))
	if err := report.WriteJSON(base + ".json"); err != nil {
		return err
	}
	md, err := os.Create(base + ".md")
	if err != nil {
		return err
	}
	if err := report.WriteMarkdown(md); err != nil {
		md.Close()
		return err
	}
	if err := md.Close(); err != nil {
		return err
	}
	files, err := report.WriteCharts(opts.outDir, opts.chartFormat)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "\nWrote %s.json, %s.md and %s\n", base, base, strings.Join(files, ", "))
	return nil
}

// parseFlags parses a workload's flags. On --help it writes the usage and
// the flags to help and returns flag.ErrHelp; a bad flag is only
// returned.
func parseFlags(kind Kind, args []string, help io.Writer) (Workload, cliOptions, error) {
	w := DefaultWorkload(kind)
	var opts cliOptions
	fs := flag.NewFlagSet("raftmq bench "+string(kind), flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	fs.IntVar(&w.Brokers, "brokers", w.Brokers, "brokers (and JetStream servers) in the in-process clusters")
	fs.IntVar(&w.Partitions, "partitions", w.Partitions, "partitions (JetStream: one stream each)")
	replicas := fs.Int("replicas", 0, "replicas per partition (0: min(3, brokers))")
	fs.IntVar(&w.Producers, "producers", w.Producers, "producer clients")
	fs.IntVar(&w.Consumers, "consumers", w.Consumers, "consumer clients")
	fs.IntVar(&w.RecordSize, "size", w.RecordSize, "record size in bytes")
	sizes := fs.String("sizes", "", "comma-separated record sizes to sweep (overrides --size)")
	fs.Int64Var(&w.Count, "count", w.Count, "records to publish in total")
	fs.DurationVar(&w.Duration, "duration", 0, "publish for this long instead of --count (with --rate: every record due in that time)")
	fs.Float64Var(&w.Rate, "rate", 0, "fixed publish rate, records/s over all producers (0: as fast as possible); latencies are corrected for coordinated omission")
	fs.IntVar(&w.Window, "window", w.Window, "records in flight per producer (JetStream: async publish max pending); 1 = unloaded latency; 0 = auto: min(16384, 16 MiB / record size) shared by the producers")
	fs.DurationVar(&w.Linger, "linger", w.Linger, "raftmq producer linger")
	fs.IntVar(&w.BatchBytes, "batch-bytes", w.BatchBytes, "raftmq producer max batch bytes")
	fs.IntVar(&w.MaxInFlight, "max-in-flight", 0, "raftmq producer batches in flight per partition (0: SDK default)")
	fs.StringVar(&w.Compression, "compression", w.Compression, "raftmq batch compression: none, s2, zstd")
	fs.StringVar(&w.Acks, "acks", w.Acks, "raftmq acks: quorum, leader, applied")
	fs.StringVar(&w.Fsync, "fsync", w.Fsync, "raftmq fsync policy: always (raftmq has no other; named in every result)")
	fs.Int64Var(&w.Warmup, "warmup", w.Warmup, "records each system first publishes, unmeasured, to partitions dropped before the measured run (0: no warm-up)")
	fs.DurationVar(&w.DrainTimeout, "drain-timeout", w.DrainTimeout, "how long consumers may lag after the last acknowledgement")
	fs.StringVar(&opts.versusSystems, "vs", "", "also run against: jetstream (both sync settings), jetstream-lazy, jetstream-sync-always, "+SystemFabric+" (NATS alone carrying the same batches on the same path, no Raft or storage: a ceiling, produce only) and "+SystemDisk+" (the same batches appended to --replicas files per partition with fdatasync, acknowledged at a majority, no Raft or NATS: the disk's ceiling, produce only)")
	only := fs.String("systems", "", "run exactly these, comma-separated: raftmq, jetstream-lazy, jetstream-sync-always, "+SystemFabric+", "+SystemDisk)
	fs.StringVar(&opts.raftmqURLs, "server", "", "NATS URL(s) of an existing raftmq cluster (default: start one in-process)")
	opts.raftmqAuth.RegisterClientFlags(fs)
	fs.StringVar(&opts.clusterName, "cluster-name", protocol.DefaultSubjectPrefix, "with --server, the cluster `name` its brokers were started with (the subject prefix)")
	fs.BoolVar(&opts.keepTopics, "keep-topics", false, "with --server, keep the topic of the last run (default: delete it at the end)")
	fs.StringVar(&opts.jetStreamURLs, "jetstream-server", "", "NATS URL(s) of an existing JetStream system (default: start one in-process)")
	fs.BoolVar(&opts.jsonOutput, "json", false, "print one JSON object with the figures as the last line")
	fs.StringVar(&opts.outDir, "out", "", "write <kind>.json, <kind>.md and charts into this directory")
	fs.StringVar(&opts.chartFormat, "chart-format", "svg", "chart format: svg or png")
	fs.StringVar(&opts.dataDir, "data-dir", "", "parent of the clusters' temporary data directories (must be a real disk; default the system temp dir)")
	fs.StringVar(&opts.cpuProfile, "cpuprofile", "", "write a CPU profile of the whole run (clients and in-process servers) to this file")
	fs.StringVar(&opts.traceFile, "trace", "", "write an execution trace of the whole run to this file (go tool trace; -pprof=sched shows time spent waiting for a CPU)")
	fs.StringVar(&opts.blockProfile, "blockprofile", "", "write a goroutine blocking profile (where time is spent waiting) to this file")
	fs.StringVar(&opts.mutexProfile, "mutexprofile", "", "write a mutex contention profile to this file")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(help, Usage)
			fmt.Fprintln(help, "\nFlags:")
			fs.SetOutput(help)
			fs.PrintDefaults()
		}
		return w, opts, err
	}
	if fs.NArg() > 0 {
		return w, opts, fmt.Errorf("bench: unexpected arguments %q", fs.Args())
	}
	switch {
	case *replicas > 0:
		w.Replicas = *replicas
	case *replicas == 0:
		w.Replicas = min(3, w.Brokers)
	default:
		return w, opts, fmt.Errorf("bench: --replicas %d, want at least 1 (0: min(3, brokers))", *replicas)
	}
	// Refused now, not after the run, when the charts are drawn.
	if err := checkChartFormat(opts.chartFormat); err != nil {
		return w, opts, fmt.Errorf("bench: --chart-format %q: %w", opts.chartFormat, err)
	}
	if w.Duration > 0 {
		countSet := false
		fs.Visit(func(f *flag.Flag) { countSet = countSet || f.Name == "count" })
		if countSet {
			return w, opts, errors.New("bench: set --count or --duration, not both")
		}
		w.Count = 0
	}
	if *sizes != "" {
		for field := range strings.SplitSeq(*sizes, ",") {
			size, err := strconv.Atoi(strings.TrimSpace(field))
			if err != nil {
				return w, opts, fmt.Errorf("bench: --sizes: %q is not a number", field)
			}
			opts.sizes = append(opts.sizes, size)
		}
		w.RecordSize = opts.sizes[0]
	}
	if *only != "" {
		opts.systems = splitList(*only)
	} else {
		opts.systems = []string{"raftmq"}
		for _, vs := range splitList(opts.versusSystems) {
			if vs == "jetstream" {
				opts.systems = append(opts.systems, "jetstream-lazy", "jetstream-sync-always")
			} else {
				opts.systems = append(opts.systems, vs)
			}
		}
	}
	return w, opts, w.Validate()
}

func splitList(s string) []string {
	var out []string
	for field := range strings.SplitSeq(s, ",") {
		if field = strings.TrimSpace(field); field != "" {
			out = append(out, field)
		}
	}
	return out
}

func targetSpec(system string, w Workload, opts cliOptions) (TargetSpec, error) {
	var jsURLs []string
	if opts.jetStreamURLs != "" {
		jsURLs = splitList(opts.jetStreamURLs)
	}
	switch system {
	case "raftmq":
		if opts.raftmqURLs == "" {
			if len(opts.raftmqAuth.AuthOptions()) > 0 {
				return TargetSpec{}, fmt.Errorf("bench: --creds, --user, --token and --tls-* are for --server; the in-process cluster needs none")
			}
			if opts.clusterName != protocol.DefaultSubjectPrefix {
				return TargetSpec{}, fmt.Errorf("bench: --cluster-name is for --server; the in-process cluster is named raftmq")
			}
			return RaftmqSpec(RaftmqConfig{Workload: w}), nil
		}
		auth, err := opts.raftmqAuth.WithEnvSecrets()
		if err != nil {
			return TargetSpec{}, fmt.Errorf("bench: connection flags: %w", err)
		}
		connect := []clients.ClientOption{clients.WithNATSOptions(auth.AuthOptions()...), clients.WithSubjectPrefix(opts.clusterName)}
		return RaftmqSpec(RaftmqConfig{URLs: splitList(opts.raftmqURLs), Workload: w, Connect: connect, KeepTopics: opts.keepTopics, Log: opts.log}), nil
	case SystemFabric, SystemDisk:
		if w.Kind != KindProduce {
			return TargetSpec{}, fmt.Errorf("bench: %s measures publishing only (bench produce)", system)
		}
		if opts.raftmqURLs != "" {
			return TargetSpec{}, fmt.Errorf("bench: %s runs in-process only; drop it or --server", system)
		}
		if system == SystemDisk {
			return TargetSpec{Name: system, Start: func(ctx context.Context, dir string) (Target, error) {
				return StartDisk(ctx, DiskConfig{Workload: w, Dir: dir, Log: os.Stderr})
			}}, nil
		}
		return TargetSpec{Name: system, Start: func(ctx context.Context, dir string) (Target, error) {
			return StartFabric(ctx, FabricConfig{Workload: w})
		}}, nil
	case "jetstream-lazy", "jetstream-sync-always":
		setting := JetStreamLazy
		if system == "jetstream-sync-always" {
			setting = JetStreamSyncAlways
		}
		return TargetSpec{Name: system, Start: func(ctx context.Context, dir string) (Target, error) {
			return StartJetStream(ctx, JetStreamConfig{Servers: w.Brokers, Setting: setting, Dir: dir, URLs: jsURLs})
		}}, nil
	}
	return TargetSpec{}, fmt.Errorf("bench: unknown system %q (want raftmq, jetstream, jetstream-lazy, jetstream-sync-always, %s or %s)", system, SystemFabric, SystemDisk)
}

// waitProfiles returns a function that writes the block and mutex
// profiles asked for and one that (re-)enables their collection.
func waitProfiles(blockPath, mutexPath string) (write func(), enable func()) {
	enable = func() {
		if blockPath != "" {
			runtime.SetBlockProfileRate(int(100 * time.Microsecond))
		}
		if mutexPath != "" {
			runtime.SetMutexProfileFraction(10)
		}
	}
	writeOne := func(name, path string) {
		if path == "" {
			return
		}
		f, err := os.Create(path)
		if err != nil {
			fmt.Fprintln(os.Stderr, "raftmq bench:", err)
			return
		}
		defer f.Close()
		if err := pprof.Lookup(name).WriteTo(f, 0); err != nil {
			fmt.Fprintln(os.Stderr, "raftmq bench:", err)
		}
	}
	write = func() {
		writeOne("block", blockPath)
		writeOne("mutex", mutexPath)
	}
	return write, enable
}
