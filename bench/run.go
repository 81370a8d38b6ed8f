package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"
)

// TargetSpec names a target and starts it in a data directory of its own.
type TargetSpec struct {
	Name  string
	Start func(ctx context.Context, dir string) (Target, error)
}

// Config is one benchmark invocation: a workload, the record sizes to sweep
// and the targets to run it against, one after another (never at once:
// they would compete for the same cores and disk).
type Config struct {
	Workload Workload
	// Sizes are record sizes to sweep; empty means Workload.RecordSize.
	Sizes []int
	// Targets run in order.
	Targets []TargetSpec
	// DataDir is the parent of the temporary data directories. Default
	// os.TempDir(); it should be on the disk being measured, not tmpfs.
	DataDir string
	// Progress shows progress; nil shows none.
	Progress Progress
	// Log receives a line per finished row; nil discards them.
	Log io.Writer
	// Command is the command line, recorded in the report.
	Command string
	// AfterStart, when set, runs after each target started. (Starting a
	// nats-server resets the process's block profile rate; the CLI turns it
	// back on here.)
	AfterStart func()
}

// Run starts each target, runs the workload for every record size (and, for
// consume and e2e, every consumer kind of the target), stops the target and
// returns the report. A failed run or check, and an interruption (ctx
// ending), is recorded in Report.Errors and returned joined; the report
// holds every row that was measured.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if err := cfg.Workload.Validate(); err != nil {
		return nil, err
	}
	if len(cfg.Targets) == 0 {
		return nil, errors.New("bench: no targets")
	}
	sizes := cfg.Sizes
	if len(sizes) == 0 {
		sizes = []int{cfg.Workload.RecordSize}
	}
	for _, size := range sizes {
		if size < MinRecordSize {
			return nil, fmt.Errorf("bench: record size %d, want at least %d", size, MinRecordSize)
		}
	}
	if cfg.Progress == nil {
		cfg.Progress = &NoProgress{}
	}
	if cfg.Log == nil {
		cfg.Log = io.Discard
	}
	parent := cfg.DataDir
	if parent == "" {
		parent = os.TempDir()
	}
	report := &Report{
		Started:  time.Now().UTC(),
		Command:  cfg.Command,
		Workload: cfg.Workload,
		Sizes:    sizes,
		Machine:  CurrentMachine(parent),
	}
	var errs []error
	fail := func(err error) {
		errs = append(errs, err)
		report.Errors = append(report.Errors, err.Error())
	}
	for _, spec := range cfg.Targets {
		if ctx.Err() != nil {
			break
		}
		if err := runTarget(ctx, cfg, spec, sizes, parent, report, fail); err != nil {
			fail(fmt.Errorf("%s: %w", spec.Name, err))
		}
	}
	// An interrupted run is a failed one: the report lacks the rows and
	// systems it did not get to, and says so (Summary.OK is false).
	if err := ctx.Err(); err != nil {
		fail(fmt.Errorf("bench: interrupted, the report is incomplete: %w", err))
	}
	return report, errors.Join(errs...)
}

func runTarget(ctx context.Context, cfg Config, spec TargetSpec, sizes []int, parent string, report *Report, fail func(error)) error {
	dir, err := os.MkdirTemp(parent, "raftmq-bench-"+sanitize(spec.Name)+"-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	target, err := spec.Start(ctx, dir)
	if err != nil {
		return fmt.Errorf("start: %w", err)
	}
	defer target.Close()
	if cfg.AfterStart != nil {
		cfg.AfterStart()
	}
	report.Targets = append(report.Targets, target.Info())
	kinds := []string{""}
	if cfg.Workload.Kind != KindProduce {
		kinds = target.ConsumerKinds()
	}
	for _, size := range sizes {
		for _, kind := range kinds {
			if ctx.Err() != nil {
				return nil
			}
			w := cfg.Workload
			w.RecordSize = size
			result, err := runOne(ctx, target, w, kind, cfg.Progress)
			if err != nil {
				fail(fmt.Errorf("%s %s size %d: %w", spec.Name, kind, size, err))
				continue
			}
			if err := result.Check.Err(); err != nil {
				fail(fmt.Errorf("%s %s size %d: check: %w", spec.Name, kind, size, err))
			}
			report.Results = append(report.Results, result)
			fmt.Fprintln(cfg.Log, result.oneLine())
		}
	}
	return nil
}

func sanitize(name string) string {
	out := []byte(name)
	for i, c := range out {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
			out[i] = '_'
		}
	}
	return string(out)
}

func (r Result) oneLine() string {
	name := r.System + " " + r.Setting
	if r.Consumer != "" {
		name += " " + r.Consumer
	}
	line := fmt.Sprintf("%-32s %6d B %12.0f rec/s %9.1f MB/s", name, r.RecordSize, r.RecordsPerSec, r.MBPerSec)
	if r.LatencyMeasures != "" {
		line += fmt.Sprintf("  p50 %.3f p99 %.3f p99.9 %.3f ms", r.Latency.P50, r.Latency.P99, r.Latency.P999)
	}
	return line
}
