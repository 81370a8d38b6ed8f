package clients

// Consumer groups
//
//	group, err := client.NewGroupConsumer(ctx, "billing", []string{"orders"},
//		clients.WithAutoCommitInterval(5*time.Second),  // or 0 and Commit(ctx) / CommitAsync(cb)
//		clients.WithResetPolicy(clients.Earliest()),     // where to start without a committed offset
//		clients.WithOnAssigned(func(ctx context.Context, ps []clients.TopicPartition) { ... }),
//		clients.WithOnRevoked(func(ctx context.Context, ps []clients.TopicPartition) { ... }))
//	for {
//		records, err := group.Poll(ctx)
//		...
//	}
//	err = group.Close(ctx) // after the loop: commits what Poll returned (WithCommitOnClose) and leaves
//
// A GroupConsumer joins a group at the coordinator (the controller leader;
// any broker forwards), heartbeats at a third of its session timeout, and
// heartbeats at once when the coordinator announces a change. A heartbeat
// unanswered within one interval (one lost when the coordinator fails over)
// is sent again after a quarter interval. Each reply
// lists the partitions it owns and those it must revoke. Revoking: stop
// fetching, OnRevoked, auto-commit (when on), then report the release in the
// next heartbeat; only then does the partition move. A new partition is
// claimed at its leader with its assignment epoch (fencing the previous
// owner's commits) and starts at the committed offset read after the claim,
// or the reset policy without one; a partition whose fetch offset goes out
// of range (retention deleted the records a lagging member had yet to
// read) continues at the reset policy's offset, as Kafka's
// auto.offset.reset; one whose fetcher stopped on another error (which
// Poll returns) is fetched again from the member's position at its next
// heartbeat. A partition granted again with a new epoch (the coordinator
// freed it meanwhile) is reported lost and claimed anew. A member that
// misses its session is
// removed, and its partitions move without a revoke; its next heartbeat
// says so and it drops everything (OnLost, or OnRevoked without it) and
// joins again. It also drops everything itself when no heartbeat was
// answered for a whole session timeout, as the coordinator may have
// removed it. Commits (auto-commit, Commit, the commit before a revoke)
// run one at a time, so a partition's offsets reach its leader in order,
// and auto-commit runs apart from the heartbeats, so a slow commit never
// makes the member miss its session. Delivery is at least once, in order
// within a partition.
//
// Offsets and groups without a GroupConsumer: Client.CommitOffsets,
// FetchCommitted (committed offset, end offset, lag in records and
// seconds), ListGroups, DescribeGroup, ResetGroupOffsets (refused while the
// group has members), DeleteGroup.
