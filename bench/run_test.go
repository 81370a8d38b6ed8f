package bench

import (
	"context"
	"errors"
	"strings"
	"testing"
)

// TestInterruptedRunReportsFailure: a run interrupted between two systems
// (Ctrl-C as the first one shuts down) returns the interruption and
// records it in the report: the JSON summary says ok false and the
// Markdown shows the error. Before, the summary said ok with no error
// although the second system never ran.
func TestInterruptedRunReportsFailure(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w := DefaultWorkload(KindProduce)
	w.Warmup, w.Count = 0, 100
	var started []string
	spec := func(name string) TargetSpec {
		return TargetSpec{Name: name, Start: func(context.Context, string) (Target, error) {
			started = append(started, name)
			return &fakeTarget{onClose: cancel}, nil
		}}
	}
	report, err := Run(ctx, Config{Workload: w, Targets: []TargetSpec{spec("first"), spec("second")}, DataDir: t.TempDir()})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Run returned %v, want the interruption", err)
	}
	if len(started) != 1 || len(report.Results) != 1 {
		t.Fatalf("targets started %v, rows %d; want the first only", started, len(report.Results))
	}
	if s := report.Summary(); s.OK || len(s.Errors) != 1 || !strings.Contains(s.Errors[0], "interrupted") {
		t.Fatalf("summary ok %v, errors %q; want not ok with the interruption", s.OK, s.Errors)
	}
	var md strings.Builder
	if err := report.WriteMarkdown(&md); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(md.String(), "Error: bench: interrupted") {
		t.Fatalf("the Markdown does not show the interruption:\n%s", md.String())
	}
}
