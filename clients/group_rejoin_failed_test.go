package clients

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/raftmq/raftmq/protocol"
)

// TestARejoinRefusedForGoodIsReportedByPoll: a member that expired and
// whose rejoin the coordinator refuses with a non-retriable error (here
// invalid_argument) has Poll return that refusal. Before, the error was
// dropped without a log line and Poll only timed out, so the application
// could not tell "no traffic" from "not a member" (found in review).
func TestARejoinRefusedForGoodIsReportedByPoll(t *testing.T) {
	const prefix = "rejoin"
	fake := startFakeCluster(t)
	fake.serveQuietPartition(prefix)
	var joins atomic.Int32
	ok := protocol.HeartbeatReply{Version: protocol.APIVersion, Assigned: []protocol.GroupPartition{}, Revoke: []protocol.GroupPartition{}, HeartbeatIntervalMs: 50}
	fake.subscribe(protocol.SubjectAdmin(prefix, protocol.AdminGroupJoin), func(m *nats.Msg) {
		if joins.Add(1) == 1 {
			fake.respondJSON(m, ok)
			return
		}
		fake.respondJSON(m, protocol.HeartbeatReply{Version: protocol.APIVersion,
			Error: protocol.Errorf(protocol.CodeInvalidArgument, "group topics differ")})
	})
	fake.subscribe(protocol.SubjectAdmin(prefix, protocol.AdminGroupHeartbeat), func(m *nats.Msg) {
		var req protocol.HeartbeatRequest
		_ = json.Unmarshal(m.Data, &req)
		fake.respondJSON(m, protocol.HeartbeatReply{Version: protocol.APIVersion, Error: protocol.Errorf(protocol.CodeUnknownMember, "expired")})
	})
	fake.subscribe(protocol.SubjectAdmin(prefix, protocol.AdminGroupLeave), func(m *nats.Msg) {
		fake.respondJSON(m, protocol.DeleteGroupReply{Version: protocol.APIVersion})
	})
	ctx, client := connectUnderPrefix(t, fake, prefix, WithRequestTimeout(2*time.Second))
	g, err := client.NewGroupConsumer(ctx, "g", []string{"t"}, WithCommitOnClose(false))
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close(ctx)
	pollCtx, pollCancel := context.WithTimeout(ctx, 2*time.Second)
	defer pollCancel()
	_, err = g.Poll(pollCtx)
	if !errors.Is(err, protocol.CodeInvalidArgument) || !strings.Contains(err.Error(), "cannot rejoin") {
		t.Fatalf("rejoin refused %d times (non-retriable): Poll returned %v, want the refusal", joins.Load()-1, err)
	}
}
