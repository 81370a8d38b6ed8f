// Package clients is the Go SDK of raftmq: one import for producing,
// consuming and administering topics.
//
//	client, err := clients.Connect(ctx, "nats://127.0.0.1:4222")
//	defer client.Close()
//
//	// Admin.
//	_, err = client.CreateTopic(ctx, "orders", clients.WithPartitions(3))
//
//	// Produce: synchronously ...
//	producer, err := client.NewProducer(clients.WithCompression(clients.CompressionS2))
//	defer producer.Close(ctx)
//	err = producer.ProduceSync(ctx, &clients.Record{Topic: "orders", Key: []byte("alice"), Value: []byte("1 pizza")}).FirstErr()
//	// ... or asynchronously, then Flush.
//	producer.Produce(ctx, rec, func(rec *clients.Record, err error) { ... })
//	err = producer.Flush(ctx)
//
//	// Consume.
//	consumer, err := client.NewConsumer()
//	defer consumer.Close()
//	err = consumer.Assign(ctx, "orders", clients.Earliest())
//	records, err := consumer.Poll(ctx)
//
// # Contract
//
// A Client talks to the brokers over NATS subjects (see the protocol
// package for the subject table). It caches each topic's metadata
// (partitions and their leaders) and refreshes it when a broker answers
// "not leader", when a partition has no leader, when no broker answers, and
// after WithMetadataMaxAge.
//
// A Producer batches records per partition until the batch is full
// (WithBatchMaxBytes) or has waited WithLinger, then sends it to the
// partition leader's produce subject; a partition with no batch in flight
// sends at once, so linger never delays an idle producer. At most WithMaxInFlight batches per
// partition are unacknowledged at a time; they leave in order on one NATS
// connection and the broker appends them in arrival order, so a partition's
// records keep their produce order. Retriable errors (protocol.ErrorCode
// Retriable: not leader, not ready, timeout, shutting down, out-of-order
// sequence; unknown topic for WithUnknownTopicWait; no broker answering; and the NATS connection reconnecting, including its reconnect
// buffer being full) are retried with exponential backoff (WithRetryBackoff) until
// the record's WithDeliveryTimeout; other errors fail the record at once.
// Callbacks of one partition run in produce order, except those of records
// Produce fails at once (a nil record, no topic, no such partition, its
// context ended while waiting for buffer room, after Close): they run
// before Produce returns, possibly ahead of earlier records of the
// partition (ProduceCallback). A partition's batching goroutine stops
// after 5 minutes with nothing to do, so a producer that wrote to many
// short-lived topics does not keep one per partition; the partition's
// next record starts a new one, which continues the partition's
// idempotent sequence.
//
// Durability: with AcksQuorum (the default) an acknowledged record is
// committed: durable on a quorum of replicas. AcksLeaderUnsafe acknowledges
// before that and can lose acknowledged records. A produce that failed with
// a timeout may nevertheless have been committed; the producer is
// idempotent by default (WithIdempotence), so its retry is answered with the
// original offsets instead of writing the records again, and retries never
// reorder a partition's records. With WithIdempotence(false) delivery is at
// least once.
//
// A Consumer runs one fetcher goroutine per assigned partition. It
// long-polls the leader (WithFetchMaxWait) and pipelines: the next fetch
// leaves as soon as a reply arrives (with WithFetchReplies, a request may
// bring a stream of replies), so while Poll's caller works on one fetch
// the next is verified and waiting and the one after is in flight. A
// fetch never returns records past the partition's commit index, so a
// consumer only sees committed records. Fetched batches stay the bytes the
// log stored and are decoded when handed out: Poll allocates Records (in
// chunks), PollEach lends one reused Record per call of its callback and
// neither allocates nor copies (the fastest way to replay a partition).
//
// # Performance
//
// A busy producer's cost is per record, so the per-record path (Produce,
// enqueue, the partition producer's add) avoids what it can: one monotonic
// clock read per record at most and none for a record that comes with its
// Timestamp (producerClock: time.Now reads two clocks); the partition
// count of the last record's topic checked by one atomic load against the
// metadata cache's generation, which loads, forget and a max-age timer
// move (it was a mutex and a clock read per record); consecutive records
// of one partition skip the partition map; a record's exact encoded size
// measured only near the end of a batch. Each partition keeps its batch
// builders and request buffers across batches (a sync.Pool is emptied by
// every other garbage collection, and a busy producer then allocated and
// zeroed a fresh batch-sized buffer per batch). WithBatchCallback reports
// an acknowledged batch's records in one call, so a caller that takes a
// lock or reads a clock per outcome does it per batch.
//
// Measured (session 9, 2026-11-23, 2-core VM, load 0.7-2.3, old and new
// builds alternated, 3 runs each): raftmq bench produce --brokers 3
// --replicas 3 --size 100 --data-dir /dev/shm, whose harness uses
// WithBatchCallback and passes its own per-record clock reading as the
// timestamp: whole-process CPU for 3.5M records 5.78 -> 4.69 s, the
// marginal CPU of the 3M records beyond 500k 1.34 -> 0.93 us/record; 1.28-
// 1.43M -> 1.70-1.76M records/s. The process runs the brokers and NATS
// servers too; before this the lead's profile put 31% of it on the client
// side (SDK and harness). On ext4 (3M records) the rate stays disk-bound
// (old 0.89-0.99M, new 0.82-0.94M records/s), its CPU within noise (user+sys 5.9,
// 5.5, 4.6 s old; 5.4, 5.0, 6.1 s new). 1 KiB records (300k, tmpfs, 11
// alternated pairs, two disturbed by a concurrent build) stay within this
// VM's noise: new ahead in 6 pairs, old in 5; 167-268k records/s new,
// 178-277k old in the undisturbed ones. Unloaded latency (--count 5000
// --window 1 --linger 0, 3 pairs): p50 0.85/1.31/1.23 ms old,
// 0.83/1.17/1.23 new; p99 3.5/3.6/4.1 old, 2.8/3.2/3.6 new.
// BenchmarkProduce/none (1M records, the in-process dev cluster's CPU
// included, which dominates it): 3399/3385 cpu-ns/record old, 3365/3383
// new, 3166/3033 with WithBatchCallback (BenchmarkProduceBatchCallback);
// 1 alloc/record (the benchmark's Record) in all.
//
// Left out: making the producer's per-record buffer accounting
// (Producer.mu: pending records and bytes, the idle and completion channels)
// lock-free; it is one uncontended lock per record and its blocking and
// Flush semantics are subtle.
//
// # Concurrency
//
// Client, Producer and the Consumer's Assign, Seek, Unassign and Close are
// safe for concurrent use; Consumer.Poll and PollEach are called from one
// goroutine at a time. Close a client's producers and consumers before the client.
package clients
