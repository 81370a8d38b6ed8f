package main

import (
	"bytes"
	"context"
	"net"
	"regexp"
	"strings"
	"testing"
	"time"
)

// goPackagePrefix matches a Go package's prefix in a printed error.
var goPackagePrefix = regexp.MustCompile(`(^|: )(clients|protocol|broker|transport|bench): `)

// TestErrorsSayWhatToDo: the errors the CLI prints carry no Go package
// prefixes ("clients: ", "bench: bench: ") and, where the fix is known,
// say it: start a cluster or check --server, pick another --nats-listen,
// create the topic, start at --from latest, stop the group's members.
func TestErrorsSayWhatToDo(t *testing.T) {
	topic := uniqueTopic("cli-hints")
	runOK(t, "", "topic", "create", topic, "--partitions", "1")
	runOK(t, "", "produce", topic, "a")
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	missing := uniqueTopic("cli-hints-missing")

	for _, tc := range []struct {
		args   []string
		status int
		hint   string
	}{
		{[]string{"topic", "list", "--server", "nats://127.0.0.1:1"}, exitError,
			"is 'raftmq dev' or 'raftmq serve' running at --server nats://127.0.0.1:1?"},
		{[]string{"dev", "--nodes", "1", "--nats-listen", taken.Addr().String()}, exitError, "--nats-listen"},
		{[]string{"consume", missing, "--server", serverURL}, exitError, "create it with: raftmq topic create " + missing},
		{[]string{"produce", missing, "x", "--server", serverURL}, exitError, "create it with: raftmq topic create " + missing},
		{[]string{"consume", topic, "--partition", "0", "--from", "50", "--server", serverURL}, exitError, "--from latest"},
		{[]string{"bench", "produce", "--sizes", "x"}, exitUsage, `raftmq bench: --sizes: "x" is not a number`},
	} {
		r := runCLI(t, "", tc.args...)
		if r.status != tc.status || !strings.Contains(r.stderr, tc.hint) || goPackagePrefix.MatchString(r.stderr) {
			t.Errorf("raftmq %q: status %d, stderr %q; want %d, %q and no package prefix", tc.args, r.status, r.stderr, tc.status, tc.hint)
		}
	}
}

// TestGroupDeleteWithLiveMembersSaysToStopThem: deleting a group a
// member is in fails with group_not_empty and says to stop the members,
// and how long a dead one stays.
func TestGroupDeleteWithLiveMembersSaysToStopThem(t *testing.T) {
	topic := uniqueTopic("cli-hints-group")
	group := "cli-" + topic
	runOK(t, "", "topic", "create", topic, "--partitions", "1")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	memberCtx, stopMember := context.WithCancel(ctx)
	done := make(chan int, 1)
	go func() {
		var stdout, stderr bytes.Buffer
		done <- run(memberCtx, []string{"consume", topic, "--group", group, "--server", serverURL}, strings.NewReader(""), &stdout, &stderr)
	}()
	defer func() {
		stopMember()
		<-done
	}()
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(runOK(t, "", "group", "describe", group, "--topic", topic).stdout, ": 1 member,") {
		if time.Now().After(deadline) {
			t.Fatal("the member did not join in 20s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	r := runCLI(t, "", "group", "delete", group, "--server", serverURL)
	if r.status != exitError || !strings.Contains(r.stderr, "group_not_empty") ||
		!strings.Contains(r.stderr, "stop its members first (a member that died leaves after its session timeout, 10 s by default)") {
		t.Fatalf("status %d, stderr %q", r.status, r.stderr)
	}
}
