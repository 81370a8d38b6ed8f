package bench

import (
	"strings"
	"testing"
)

func TestAutoWindowBoundsRecordsAndBytes(t *testing.T) {
	for _, tc := range []struct{ size, producers, want int }{
		{100, 1, AutoWindowRecords},             // bounded by records
		{1024, 1, AutoWindowRecords},            // 16 MiB exactly
		{10240, 1, AutoWindowBytes / 10240},     // bounded by bytes
		{AutoWindowBytes, 1, 1},                 // one huge record
		{2 * AutoWindowBytes, 1, 1},             // still one
		{MinRecordSize, 1, AutoWindowRecords},   // smallest record
		{AutoWindowBytes / 1000, 1, 1000},       // exact division
		{AutoWindowBytes/1000 + 1, 1, 999},      // rounds down
		{100, 4, AutoWindowRecords / 4},         // shared by producers
		{10240, 4, AutoWindowBytes / 10240 / 4}, // bytes shared too
		{AutoWindowBytes / 2, 4, 1},             // never below one
		{100, AutoWindowRecords * 2, 1},         // many producers
	} {
		if got := AutoWindow(tc.size, tc.producers); got != tc.want {
			t.Errorf("AutoWindow(%d, %d) = %d, want %d", tc.size, tc.producers, got, tc.want)
		}
	}
}

func TestWorkloadWindowDefaultsToAuto(t *testing.T) {
	w := DefaultWorkload(KindProduce)
	if w.Window != 0 {
		t.Fatalf("default Window = %d, want 0 (auto)", w.Window)
	}
	if err := w.Validate(); err != nil {
		t.Fatalf("default workload: %v", err)
	}
	w.RecordSize, w.Producers = 10240, 2
	if got, want := w.window(), AutoWindow(10240, 2); got != want {
		t.Errorf("window() with Window 0 = %d, want AutoWindow = %d", got, want)
	}
	w.Window = 7
	if got := w.window(); got != 7 {
		t.Errorf("window() with Window 7 = %d, want 7", got)
	}
	w.Window = -1
	if err := w.Validate(); err == nil {
		t.Error("Validate accepted a negative window")
	}
}

func TestReportShowsEffectiveWindow(t *testing.T) {
	r := &Report{Workload: DefaultWorkload(KindProduce), Sizes: []int{100, 10240}}
	if got, want := r.firstWindow(), AutoWindowRecords; got != want {
		t.Errorf("firstWindow = %d, want %d", got, want)
	}
	text := r.windowText()
	for _, part := range []string{"16384 at 100 B", "1638 at 10240 B", "/ 1 producer:"} {
		if !strings.Contains(text, part) {
			t.Errorf("windowText %q lacks %q", text, part)
		}
	}
	r.Workload.Producers = 4
	if got, want := r.firstWindow(), AutoWindowRecords/4; got != want {
		t.Errorf("firstWindow with 4 producers = %d, want %d", got, want)
	}
	r.Workload.Window = 5
	if got := r.windowText(); got != "5" {
		t.Errorf("windowText with Window 5 = %q, want 5", got)
	}
}

// TestReportNamesConsumersOnlyWhenThereAre: a produce run's report does
// not count consumers (it starts none), and counts of one are singular;
// it said "1 consumer(s)" on every run.
func TestReportNamesConsumersOnlyWhenThereAre(t *testing.T) {
	for kind, want := range map[Kind]string{
		KindProduce: "1 broker, 1 partition, replicas 1, 1 producer, ",
		KindE2E:     "1 broker, 1 partition, replicas 1, 1 producer, 1 consumer, ",
	} {
		w := DefaultWorkload(kind)
		w.Brokers, w.Partitions, w.Replicas, w.Producers, w.Consumers = 1, 1, 1, 1, 1
		var out strings.Builder
		if err := (&Report{Workload: w}).WriteMarkdown(&out); err != nil {
			t.Fatal(err)
		}
		workload, _, _ := strings.Cut(out.String(), "\n")
		if !strings.Contains(workload, want) || kind == KindProduce && strings.Contains(workload, "consumer") {
			t.Errorf("%s report's workload line, want %q:\n%s", kind, want, workload)
		}
	}
}
