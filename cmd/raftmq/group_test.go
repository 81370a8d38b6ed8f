package main

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
)

func TestConsumeGroupResumesWhereTheLastRunStopped(t *testing.T) {
	topic := uniqueTopic("cli-group")
	group := "cli-" + topic
	runOK(t, "", "topic", "create", topic, "--partitions", "1")
	runOK(t, "", "produce", topic, "a", "b", "c", "d", "e")

	first := runOK(t, "", "consume", topic, "--group", group, "--count", "3")
	if got := lines(first.stdout); !slices.Equal(got, []string{"a", "b", "c"}) {
		t.Fatalf("first run printed %q", got)
	}
	second := runOK(t, "", "consume", topic, "--group", group, "--count", "2")
	if got := lines(second.stdout); !slices.Equal(got, []string{"d", "e"}) {
		t.Fatalf("second run printed %q, want d and e", got)
	}

	var desc struct {
		Members    []any `json:"members"`
		Partitions []struct {
			Offset     uint64 `json:"offset"`
			Committed  bool   `json:"committed"`
			End        uint64 `json:"high_watermark"`
			LagRecords uint64 `json:"lag_records"`
		} `json:"partitions"`
	}
	out := runOK(t, "", "group", "describe", group, "--topic", topic, "--json")
	if err := json.Unmarshal([]byte(out.stdout), &desc); err != nil {
		t.Fatalf("describe --json: %v\n%s", err, out.stdout)
	}
	if len(desc.Members) != 0 || len(desc.Partitions) != 1 || !desc.Partitions[0].Committed || desc.Partitions[0].Offset != 5 ||
		desc.Partitions[0].End != 5 || desc.Partitions[0].LagRecords != 0 {
		t.Fatalf("describe: %s", out.stdout)
	}
	table := runOK(t, "", "group", "describe", group)
	if !strings.Contains(table.stdout, "LAG SECONDS") {
		t.Fatalf("describe table: %s", table.stdout)
	}

	runOK(t, "", "group", "reset-offsets", group, "--topic", topic, "--to", "1")
	again := runOK(t, "", "consume", topic, "--group", group, "--count", "1")
	if got := lines(again.stdout); !slices.Equal(got, []string{"b"}) {
		t.Fatalf("after reset to 1 printed %q", got)
	}
	list := runOK(t, "", "group", "list", "--json")
	if !strings.Contains(list.stdout, `"group":"`+group+`"`) {
		t.Fatalf("group list: %s", list.stdout)
	}
	runOK(t, "", "group", "delete", group)
	list = runOK(t, "", "group", "list")
	if strings.Contains(list.stdout, group) {
		t.Fatalf("deleted group still listed: %s", list.stdout)
	}
	// Deleting it again, or a group that never was, fails as describing
	// one does (it printed "deleted" with status 0).
	for _, name := range []string{group, "cli-never-" + topic} {
		gone := runCLI(t, "", "group", "delete", name, "--server", serverURL)
		if gone.status != exitError || !strings.Contains(gone.stderr, "does not exist") {
			t.Fatalf("group delete %s: status %d, stdout %q, stderr %q", name, gone.status, gone.stdout, gone.stderr)
		}
	}
	bad := runCLI(t, "", "group", "reset-offsets", group, "--server", serverURL)
	if bad.status != exitUsage {
		t.Fatalf("reset-offsets without --topic: status %d", bad.status)
	}
	help := runCLI(t, "", "group", "describe", "--help")
	if help.status != 0 || !strings.Contains(help.stdout, "Example:") {
		t.Fatalf("help: %+v", help)
	}
}

// TestConsumeGroupFromLatestCommitsTheEndWithNothingPrinted: a group
// consume --from latest that prints nothing before its --timeout commits
// the end it started at, for every partition, so the next run starts
// there and not at earliest; before, it committed only what it printed,
// which was nothing.
func TestConsumeGroupFromLatestCommitsTheEndWithNothingPrinted(t *testing.T) {
	topic := uniqueTopic("cli-group-latest")
	group := "cli-" + topic
	runOK(t, "", "topic", "create", topic, "--partitions", "2")
	runOK(t, "", "produce", topic, "--partition", "0", "a", "b", "c")
	runOK(t, "", "produce", topic, "--partition", "1", "d")

	idle := runOK(t, "", "consume", topic, "--group", group, "--from", "latest", "--timeout", "2s")
	if idle.stdout != "" {
		t.Fatalf("--from latest printed %q", idle.stdout)
	}
	var desc struct {
		Partitions []struct {
			Partition uint32 `json:"partition"`
			Offset    uint64 `json:"offset"`
			Committed bool   `json:"committed"`
		} `json:"partitions"`
	}
	out := runOK(t, "", "group", "describe", group, "--topic", topic, "--json")
	if err := json.Unmarshal([]byte(out.stdout), &desc); err != nil {
		t.Fatalf("describe --json: %v\n%s", err, out.stdout)
	}
	ends := map[uint32]uint64{0: 3, 1: 1}
	if len(desc.Partitions) != len(ends) {
		t.Fatalf("describe shows %d partitions, want %d: %s", len(desc.Partitions), len(ends), out.stdout)
	}
	for _, p := range desc.Partitions {
		if !p.Committed || p.Offset != ends[p.Partition] {
			t.Errorf("partition %d: committed %v at %d, want the end, %d: %s", p.Partition, p.Committed, p.Offset, ends[p.Partition], out.stdout)
		}
	}

	runOK(t, "", "produce", topic, "--partition", "1", "e")
	next := runOK(t, "", "consume", topic, "--group", group, "--count", "1", "--timeout", "10s")
	if got := lines(next.stdout); !slices.Equal(got, []string{"e"}) {
		t.Fatalf("the next run printed %q, want only the record produced since", got)
	}
}
