package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/raftmq/raftmq/clients"
)

// backlogPoll returns a poll that hands out batches of batchSize records
// whatever its context says, as Poll does while it holds fetched records,
// and calls interrupt at its interruptAt-th call (1-based) before
// returning that call's batch. It gives up after maxCalls calls.
func backlogPoll(batchSize, interruptAt, maxCalls int, interrupt func()) (poll func(context.Context) ([]*clients.Record, error), calls *int) {
	calls = new(int)
	value := bytes.Repeat([]byte("v"), 100)
	poll = func(context.Context) ([]*clients.Record, error) {
		*calls++
		if *calls > maxCalls {
			return nil, errors.New("the backlog ran out")
		}
		if *calls == interruptAt {
			interrupt()
		}
		records := make([]*clients.Record, batchSize)
		for i := range records {
			records[i] = &clients.Record{Topic: "t", Offset: uint64((*calls-1)*batchSize + i), Value: value}
		}
		return records, nil
	}
	return poll, calls
}

// writerFunc is an io.Writer made of a function.
type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// TestConsumeInterruptedBeforeItsCountExits130: an interrupt before
// --count records arrived is reported and exits 130, as produce does when
// stopped early; without --count an interrupt is the normal end (0).
func TestConsumeInterruptedBeforeItsCountExits130(t *testing.T) {
	for _, tc := range []struct {
		name       string
		count      int
		wantStatus int
		wantStderr string
	}{
		{"short of the count", 1000, exitInterrupted, "raftmq consume: interrupted after 200 of 1000 records\n"},
		{"no count", 0, exitOK, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			// The third poll interrupts; the two before it return 100 each.
			poll, _ := backlogPoll(100, 3, 100, cancel)
			var stdout, stderr bytes.Buffer
			c := &cli{stdin: strings.NewReader(""), stdout: &stdout, stderr: &stderr}
			status := consumeLoop(ctx, c, poll, &consumeFlags{count: tc.count}, nil, nil)
			if status != tc.wantStatus || stderr.String() != tc.wantStderr || len(lines(stdout.String())) != 200 {
				t.Fatalf("status %d, stderr %q, %d records printed; want %d, %q, 200",
					status, stderr.String(), len(lines(stdout.String())), tc.wantStatus, tc.wantStderr)
			}
		})
	}
}

// TestConsumeLoopStopsOnInterruptWithABacklog: an interrupt stops the
// consume loop at once even when every poll returns records: no poll after
// it and no record of the batch being printed after it. Before, the loop
// noticed an interrupt only through a poll's error, so a group consume
// with a backlog went on printing until the backlog ran out.
func TestConsumeLoopStopsOnInterruptWithABacklog(t *testing.T) {
	t.Run("between polls", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		poll, calls := backlogPoll(100, 3, 100, cancel)
		var stdout bytes.Buffer
		c := &cli{stdin: strings.NewReader(""), stdout: &stdout, stderr: io.Discard}
		status := consumeLoop(ctx, c, poll, &consumeFlags{}, nil, nil)
		if printed := len(lines(stdout.String())); status != exitOK || *calls != 3 || printed != 200 {
			t.Fatalf("status %d after %d polls and %d records printed; want %d after 3 polls and the 200 records of the 2 before the interrupt",
				status, *calls, printed, exitOK)
		}
	})
	t.Run("while printing a batch", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		poll, calls := backlogPoll(10000, 0, 100, func() {})
		written := 0
		// The interrupt comes as the first buffer of the batch reaches
		// stdout.
		stdout := writerFunc(func(p []byte) (int, error) {
			cancel()
			written += bytes.Count(p, []byte("\n"))
			return len(p), nil
		})
		c := &cli{stdin: strings.NewReader(""), stdout: stdout, stderr: io.Discard}
		status := consumeLoop(ctx, c, poll, &consumeFlags{}, nil, nil)
		if status != exitOK || *calls != 1 || written >= 100 {
			t.Fatalf("status %d after %d polls and %d records printed; want %d after 1 poll and fewer than 100 of its 10000 records",
				status, *calls, written, exitOK)
		}
	})
}
