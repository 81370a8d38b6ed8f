// Package snapshot stores consumer-state snapshots and streams them to
// replicas that need them (Raft InstallSnapshot, §7 of the Raft paper).
//
// A snapshot is the state of one partition's state machine as of one exact
// Raft index: metadata (Meta: last included index and term, the Raft
// configuration, the record offset that continues after that index, the
// creation time, small opaque owner data) and a body, the group offsets
// and producer state, which this package never interprets: the owner writes
// it through an io.Writer and reads it back through an io.Reader, so a state
// of any size streams through without sitting in memory.
//
// # Usage
//
//	store, err := snapshot.OpenStore(fs, dir) // removes leftover temporary files
//
//	// Take a snapshot as of applied index i.
//	w, err := store.Create(snapshot.Meta{Index: i, Term: t, Configuration: conf, NextOffset: next})
//	err = stateMachine.WriteTo(w)             // the body, any size
//	info, err := w.Commit()                   // durable and listed when nil; else w.Abort()
//
//	// Restore.
//	latest, ok := store.Latest()
//	r, err := store.Open(latest.Meta.Index)
//	err = stateMachine.ReadFrom(r)            // valid only if r returned io.EOF
//	r.Close()
//
//	// Retention: keep 2 and whatever the log needs.
//	removed, err := store.Prune(2, log.FirstIndex()-1)
//
// Streaming to a replica (the owner carries the encoded chunks and acks in
// its own messages; SendWindow, which does no I/O, decides what to send):
//
//	// Leader.
//	sender, err := store.NewSender(index, maxPayload-ownFraming)
//	window := snapshot.NewSendWindow(sender.Size(), sender.MaxChunkLen(), 8)
//	for offset, ok := window.Next(); ok; offset, ok = window.Next() {
//		msg, err = sender.AppendChunk(msg[:0], offset) // send msg
//	}
//	... on an Ack (DecodeAck): window.Ack(ack), then send again as above;
//	... no ack for a while: window.Timeout(); window.Done() ends the transfer.
//	sender.Close()
//
//	// Follower.
//	chunk, err := snapshot.DecodeChunk(msg)
//	if have, err := store.Get(chunk.ID.Index); err == nil && have.Meta.Term == chunk.ID.Term {
//		reply(snapshot.AppendAck(nil, snapshot.Ack{ID: chunk.ID, Next: chunk.Total, Done: true}))
//		return // already installed (a late duplicate, or a restart after the install)
//	}
//	if receiver == nil || receiver.ID() != chunk.ID {
//		receiver.Abandon() // if any
//		receiver, err = store.NewReceiver(chunk.ID, chunk.Total)
//	}
//	ack, err := receiver.Receive(chunk)          // ignores duplicates and chunks after a gap
//	reply(snapshot.AppendAck(nil, ack))          // ack.Next: the offset wanted next
//	if ack.Done { restore from receiver.Info() } // installed in store, durable
//
// # Contract
//
//   - Store methods are safe for concurrent use. A Writer, Reader, Sender or
//     Receiver is used by one goroutine at a time. One Store owns its
//     directory (OpenStore deletes the temporary files in it).
//   - All file access goes through the vfs.FS given to OpenStore.
//   - Durability: Writer.Commit and a Receiver's final Receive write the
//     file under a temporary name (*.tmp), fsync it, rename it to
//     snap-<index>-<term>.snap and fsync the directory. A crash at any point
//     leaves every previously committed snapshot usable and the new one
//     either complete or absent. Prune's removals are durable when it
//     returns. A snapshot with the index of an existing one (another term)
//     replaces it.
//   - Corruption: the metadata has its own CRC (checked by OpenStore, Open
//     and NewSender); the whole file has a CRC checked when a Reader reaches the
//     end of the body, by Verify, by Prune, and by a Receiver before it
//     installs. Damage is an error wrapping ErrCorrupt that names the file;
//     the file is then left on disk, no longer listed, and reported by
//     Damaged. An I/O error is never reported as corruption.
//   - Installing a received snapshot only puts it in the store. The owner
//     then restores its state machine from it and resets its log (segmentlog
//     Reset/ResetOffsets with Meta.Index+1, Meta.Term, Meta.NextOffset). If
//     it crashes in between, on restart Latest() is newer than its applied
//     state and it restores again; it resets the log again too unless the
//     log holds Meta.Index with Meta.Term (raft.ResumeSnapshotInstall does
//     this: a log past the index with another term there is a conflicting
//     suffix the install was replacing).
//
// # File format
//
// All integers little-endian.
//
//	+-------------------------------------------------------------+
//	| fixed header, 20 bytes                                      |
//	|    0  8  magic "RAFTMQSN"                                   |
//	|    8  2  format version (FormatVersion = 1)                 |
//	|   10  2  body codec (1 = zstd)                              |
//	|   12  4  metadata length M                                  |
//	|   16  4  CRC32C over bytes [0, 16) and the metadata         |
//	+-------------------------------------------------------------+
//	| metadata, M bytes                                           |
//	|   u64 index, u64 term, u64 next record offset,              |
//	|   i64 created (Unix ns), u64 reserved (0),                  |
//	|   u32 n + n×u64 voters, u32 n + n×u64 outgoing voters,      |
//	|   u32 n + n×u64 learners, u32 n + n bytes extra             |
//	+-------------------------------------------------------------+
//	| body, C bytes: one zstd stream of the owner's U bytes       |
//	+-------------------------------------------------------------+
//	| trailer, 24 bytes                                           |
//	|    0  8  C, compressed body length                          |
//	|    8  8  U, uncompressed body length                        |
//	|   16  4  CRC32C over every byte of the file before this     |
//	|          field (header, metadata, body, C, U)               |
//	|   20  4  end magic "SEND"                                   |
//	+-------------------------------------------------------------+
//
// A file is valid only if its size is exactly 20+M+C+24. Readers refuse
// versions other than FormatVersion (ErrUnsupportedVersion) and zstd
// windows above 8 MiB.
//
// # Chunks
//
// A Sender cuts the raw file (exactly the bytes above) into chunks; each
// chunk message carries the snapshot id (index, term), its byte offset, the
// total size, a done flag and a CRC32C of its own (see Chunk for the
// layout); an Ack carries the id, the next offset wanted and a done flag.
// Both encodings start with a version byte (ChunkVersion) and a kind byte.
// The receiver takes chunks strictly in order, so after a lost chunk it
// keeps answering the offset of the gap and the sender resumes there; the
// file's own CRC is checked end to end before the install.
package snapshot
