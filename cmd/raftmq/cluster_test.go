package main

import (
	"bytes"
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/raftmq/raftmq/clients"
)

// TestTopicReassignMovesAReplica moves a partition of a two-replica topic
// to a set that includes the third broker, through the CLI, and checks the
// --json result, the progress on stderr and the replicas afterwards.
func TestTopicReassignMovesAReplica(t *testing.T) {
	topic := uniqueTopic("cli-reassign")
	created := runOK(t, "", "topic", "create", topic, "--partitions", "1", "--replicas", "2", "--json")
	var info clients.TopicInfo
	if err := json.Unmarshal([]byte(created.stdout), &info); err != nil {
		t.Fatal(err)
	}
	before := info.Partitions[0].Replicas
	var outside uint64
	for id := uint64(1); id <= 3; id++ {
		if !slices.Contains(before, id) {
			outside = id
		}
	}
	target := []uint64{outside, before[0]}
	r := runOK(t, "", "topic", "reassign", topic, "--partition", "0", "--replicas", idList(target), "--json")
	var result reassignResult
	if err := json.Unmarshal([]byte(r.stdout), &result); err != nil || !result.Done || len(result.Reassignments) != 1 ||
		!slices.Equal(result.Reassignments[0].To, target) || !slices.Equal(result.Reassignments[0].From, before) {
		t.Fatalf("reassign --json %q: %+v %v", r.stdout, result, err)
	}
	if !strings.Contains(r.stderr, "1 of 1 moved") {
		t.Errorf("progress %q", r.stderr)
	}
	described := runOK(t, "", "topic", "describe", topic, "--json")
	if err := json.Unmarshal([]byte(described.stdout), &info); err != nil || !slices.Equal(info.Partitions[0].Replicas, target) {
		t.Fatalf("after the move: %+v %v", info, err)
	}
	status := runOK(t, "", "cluster", "status")
	if !strings.Contains(status.stdout, "VOTERS") || !strings.Contains(status.stdout, "controller voters: 1,2,3") {
		t.Errorf("status %q", status.stdout)
	}
	// Same brokers again: nothing to move.
	again := runOK(t, "", "topic", "reassign", topic, "--partition", "0", "--replicas", idList(target))
	if !strings.Contains(again.stdout, "nothing to move") {
		t.Errorf("second reassign %q", again.stdout)
	}
}

// TestMembershipCommandsRefuseBadInput checks usage errors (exit 2) and the
// cluster's refusals (exit 1) with their messages.
func TestMembershipCommandsRefuseBadInput(t *testing.T) {
	topic := uniqueTopic("cli-refuse")
	runOK(t, "", "topic", "create", topic)
	usage := []struct {
		args []string
		want string
	}{
		{[]string{"topic", "reassign", topic, "--replicas", "1,2"}, "--partition is required"},
		{[]string{"topic", "reassign", topic, "--partition", "0"}, "--replicas is required"},
		{[]string{"topic", "reassign", topic, "--partition", "0", "--replicas", "1,x"}, `broker id "x"`},
		{[]string{"topic", "reassign", topic, "--partition", "0", "--replicas", "1,1"}, "named twice"},
		{[]string{"topic", "reassign", topic, "--partition", "0", "--replicas", "1", "--cancel"}, "--cancel takes no --replicas"},
		{[]string{"cluster", "replace-broker", "3"}, "want OLD NEW broker ids"},
		{[]string{"cluster", "replace-broker", "3", "3"}, "OLD and NEW are both 3"},
		{[]string{"cluster", "add-controller", "0"}, "positive integer"},
		{[]string{"cluster", "remove-controller"}, "want exactly one broker ID"},
		{[]string{"cluster", "grow"}, "unknown subcommand"},
	}
	for _, u := range usage {
		r := runCLI(t, "", append(u.args, "--server", serverURL)...)
		if r.status != exitUsage || !strings.Contains(r.stderr, u.want) {
			t.Errorf("raftmq %s: status %d, stderr %q (want %q)", strings.Join(u.args, " "), r.status, r.stderr, u.want)
		}
	}
	refused := []struct {
		args []string
		want string
	}{
		{[]string{"topic", "reassign", topic, "--partition", "0", "--replicas", "1,9"}, "unknown broker 9"},
		{[]string{"topic", "reassign", topic, "--partition", "4", "--replicas", "1"}, "not 4"},
		{[]string{"cluster", "replace-broker", "2", "9"}, "unknown broker 9"},
		{[]string{"topic", "reassign", topic, "--partition", "0", "--cancel"}, "no reassignment of " + topic + "/0 is in progress"},
		{[]string{"cluster", "add-controller", "9"}, "unknown broker 9"},
		{[]string{"cluster", "add-controller", "1"}, "already a controller voter"},
	}
	for _, u := range refused {
		r := runCLI(t, "", append(u.args, "--server", serverURL)...)
		if r.status != exitError || !strings.Contains(r.stderr, u.want) {
			t.Errorf("raftmq %s: status %d, stderr %q (want %q)", strings.Join(u.args, " "), r.status, r.stderr, u.want)
		}
	}
	help := runCLI(t, "", "cluster", "replace-broker", "--help")
	if help.status != exitOK || !strings.Contains(help.stdout+help.stderr, "raftmq cluster replace-broker 3 4") {
		t.Errorf("help: %d %q %q", help.status, help.stdout, help.stderr)
	}
}

// TestClusterStatusShowsStoppingBrokers: a broker that is shutting down is
// listed as stopping, not up; a silent one as down.
func TestClusterStatusShowsStoppingBrokers(t *testing.T) {
	var out bytes.Buffer
	writeClusterStatus(&out, clients.ClusterStatus{ControllerLeader: 1, Brokers: []clients.BrokerInfo{
		{ID: 1, Alive: true}, {ID: 2, Alive: true, Stopping: true}, {ID: 3},
	}})
	rows := tableRows(out.String())
	for _, want := range []string{"1 up", "2 stopping", "3 down"} {
		if !rows[want] {
			t.Errorf("cluster status has no row %q:\n%s", want, out.String())
		}
	}
}

// TestClusterStatusShowsFailedReplicas: a partition whose replica on a
// broker an error stopped names that broker in the FAILED ON column; the
// others show a dash.
func TestClusterStatusShowsFailedReplicas(t *testing.T) {
	var out bytes.Buffer
	writeClusterStatus(&out, clients.ClusterStatus{ControllerLeader: 1, Brokers: []clients.BrokerInfo{{ID: 1, Alive: true}}, Partitions: []clients.PartitionStatus{
		{Topic: "a", Partition: 0, Leader: 1, Replicas: []uint64{1, 2, 3}, CommitIndex: 7, Failed: []uint64{2}},
		{Topic: "a", Partition: 1, Leader: 3, Replicas: []uint64{1, 2, 3}, CommitIndex: 9},
	}})
	rows := tableRows(out.String())
	for _, want := range []string{
		"TOPIC PARTITION LEADER REPLICAS VOTERS LEARNERS COMMIT INDEX MOVING TO FAILED ON",
		"a 0 1 1,2,3 - - 7 - 2",
		"a 1 3 1,2,3 - - 9 - -",
	} {
		if !rows[want] {
			t.Errorf("cluster status has no row %q:\n%s", want, out.String())
		}
	}
}

// TestTopicDescribeShowsFailedReplicas: topic describe names the brokers
// whose replica of a partition an error stopped, as cluster status does.
func TestTopicDescribeShowsFailedReplicas(t *testing.T) {
	var out bytes.Buffer
	writePartitionTable(&out, []clients.PartitionInfo{
		{Partition: 0, Leader: 1, Replicas: []uint64{1, 2, 3}, CommitIndex: 7, HighWatermark: 5, Failed: []uint64{3}},
		{Partition: 1, Leader: 2, Replicas: []uint64{2, 3, 1}, CommitIndex: 4, HighWatermark: 2},
	})
	rows := tableRows(out.String())
	for _, want := range []string{"PARTITION LEADER REPLICAS COMMIT INDEX HIGH WATERMARK FAILED ON", "0 1 1,2,3 7 5 3", "1 2 2,3,1 4 2 -"} {
		if !rows[want] {
			t.Errorf("topic describe has no row %q:\n%s", want, out.String())
		}
	}
}

// tableRows returns the lines of a table with their columns joined by one
// space, as a set.
func tableRows(text string) map[string]bool {
	rows := map[string]bool{}
	for line := range strings.Lines(text) {
		rows[strings.Join(strings.Fields(line), " ")] = true
	}
	return rows
}
