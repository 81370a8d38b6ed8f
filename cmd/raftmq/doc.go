// Command raftmq is the raftmq broker and its command-line client, in one
// binary.
//
//	raftmq serve [--id N] [--data DIR] [--bootstrap 1,2,3] [--nats-listen HOST:PORT]
//	             [--nats-cluster-listen HOST:PORT] [--nats-routes URL,...] [--nats-url URL]
//	             [--metrics-addr HOST:PORT] [--config FILE]
//	raftmq dev [--nodes 3] [--data DIR]
//	raftmq topic create NAME [--partitions N] [--replicas R] [--retention D] [--retention-bytes N]
//	raftmq topic list | describe NAME | delete NAME
//	raftmq topic reassign NAME --partition P --replicas 1,2,4 | --cancel
//	raftmq produce TOPIC [--key K] [--partition P] [VALUE ...]
//	raftmq produce TOPIC --count N --size S
//	raftmq consume TOPIC [--partition P] [--from earliest|latest|OFFSET|TIME] [--count N] [--timeout D]
//	raftmq consume TOPIC --group G [--count N] [--timeout D]
//	raftmq group list | describe GROUP [--topic T] | delete GROUP
//	raftmq group reset-offsets GROUP --topic T --to earliest|latest|OFFSET|TIME
//	raftmq cluster status
//	raftmq cluster replace-broker OLD NEW
//	raftmq cluster add-controller ID | remove-controller ID
//	raftmq bench produce|consume|e2e ...
//
// Client commands take --server URLS (default nats://127.0.0.1:4222, a
// comma-separated list) and --json. `raftmq <command> --help` shows every
// flag with an example.
//
// Output contracts (one JSON object per line):
//
//	produce --json          {"partition":P,"offset":O,"value":"..."}   (no value for generated records)
//	consume --json          {"partition":P,"offset":O,"key":"...","value":"...","timestamp":"RFC3339"}
//	cluster status --json   {"controller_leader":ID,"brokers":[{"id":ID,"alive":BOOL,"stopping":BOOL}],"partitions":[{"topic":T,"partition":P,"leader":ID,"replicas":[IDs],"commit_index":N,"voters":[IDs],"outgoing_voters":[IDs],"learners":[IDs],"target":[IDs],"failed":[IDs]}],"controller":{"voters":[IDs],"learners":[IDs]}}
//	topic reassign --json, cluster replace-broker --json
//	                        {"reassignments":[{"topic":T,"partition":P,"from":[IDs],"to":[IDs]}],"done":BOOL}
//
// Exit status: 0 success, 1 the command failed (for produce: some record was
// not acknowledged; for consume: --count records did not arrive before
// --timeout), 2 a bad command line, 130 produce stopped by an interrupt
// before it sent everything (what it read was flushed first), or consume
// --count N stopped by one before N records (consume without --count ends
// on an interrupt with 0). SIGINT and
// SIGTERM stop serve and dev cleanly (leadership handed over, logs flushed)
// and end produce and consume (a group consumer commits its offsets
// first); a second one ends the process at once.
//
// The commands are thin: the broker package runs brokers (broker.Start,
// broker.StartDev) and the clients package does the talking. main only
// parses flags and prints; run(ctx, args, stdin, stdout, stderr) is main
// without the process, which is what the tests call.
package main
