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
// Retriable: not leader, not ready, timeout, shutting down; and no broker
// answering) are retried with exponential backoff (WithRetryBackoff) until
// the record's WithDeliveryTimeout; other errors fail the record at once.
// Callbacks of one partition run in produce order.
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
// # Concurrency
//
// Client, Producer and the Consumer's Assign, Seek, Unassign and Close are
// safe for concurrent use; Consumer.Poll and PollEach are called from one
// goroutine at a time. Close a client's producers and consumers before the client.
package clients
