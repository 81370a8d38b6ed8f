package snapshot

// SendWindow is the leader's flow control for one snapshot transfer: it
// keeps at most a fixed number of chunks in flight beyond the offset the
// receiver last acknowledged, and goes back to that offset (go-back-N) on
// a timeout or when the receiver repeats the same offset, which is how it
// resumes after a lost chunk. It does no I/O and reads no clock, so the
// deterministic Raft core can hold one per follower; the driver reads each
// chunk with Sender.AppendChunk.
//
//	w := snapshot.NewSendWindow(sender.Size(), sender.MaxChunkLen(), 8)
//	for offset, ok := w.Next(); ok; offset, ok = w.Next() {
//		msg, err = sender.AppendChunk(msg[:0], offset) // and send it
//	}
//	... on an ack: w.Ack(ack); on the owner's timeout: w.Timeout()
type SendWindow struct {
	total    uint64
	chunkLen uint64
	inFlight uint64
	acked    uint64 // the receiver wants this offset next
	sendNext uint64 // the next offset to send
	lastNext uint64
	repeats  int
	// resentFrom is set after a resend caused by repeated acks: more acks
	// naming the same offset are then the echoes of the chunks already in
	// flight and must not cause another resend (which would multiply the
	// traffic); progress or a Timeout ends it.
	resentFrom uint64
	recovering bool
	done       bool
}

// repeatsToResend is how many repeated acks naming the same offset the
// window lets pass before it resends from that offset.
const repeatsToResend = 3

// NewSendWindow returns the window of a transfer of total bytes in chunks
// of chunkLen data bytes (Sender.MaxChunkLen), with at most inFlight chunks
// unacknowledged (at least 1).
func NewSendWindow(total uint64, chunkLen, inFlight int) *SendWindow {
	return &SendWindow{total: total, chunkLen: uint64(max(chunkLen, 1)), inFlight: uint64(max(inFlight, 1))}
}

// Next returns the offset of the next chunk to send and advances past it,
// or false when the window is full, the file is all sent, or the transfer
// is done.
func (w *SendWindow) Next() (offset uint64, ok bool) {
	if w.done || w.sendNext >= w.total || w.sendNext >= w.acked+w.inFlight*w.chunkLen {
		return 0, false
	}
	offset = w.sendNext
	w.sendNext = min(offset+w.chunkLen, w.total)
	return offset, true
}

// Ack takes the receiver's acknowledgement (of this transfer; the caller
// checks Ack.ID). An ack asking for an offset already sent, repeated more
// than repeatsToResend times, makes the window resend from that offset: a
// chunk was lost (the receiver ignores what follows a gap), or the
// receiver started over (it was abandoned and recreated). It resends once
// per offset; if that resend is lost too, the owner's Timeout resends.
func (w *SendWindow) Ack(a Ack) {
	if a.Next == w.lastNext {
		w.repeats++
	} else {
		w.lastNext, w.repeats = a.Next, 1
	}
	switch {
	case w.done:
	case a.Done:
		w.done, w.acked = true, w.total
	case a.Next > w.acked:
		w.acked = min(a.Next, w.total)
		w.sendNext = max(w.sendNext, w.acked)
		w.recovering = false
	case w.repeats > repeatsToResend && !(w.recovering && a.Next == w.resentFrom):
		w.acked, w.sendNext, w.repeats = a.Next, a.Next, 0
		w.recovering, w.resentFrom = true, a.Next
	}
}

// Timeout makes the window resend from the last acknowledged offset, or
// from the offset the last ack asked for when that is lower: a receiver
// that started over asks for less than was acknowledged, and near the end
// of the file fewer chunks may be left to draw the repeats Ack waits for
// (a late ack from before is unlikely to be the last before a silence).
// The owner calls it when no ack arrived for a while.
func (w *SendWindow) Timeout() {
	if w.lastNext < w.acked && !w.done {
		w.acked = w.lastNext
	}
	w.sendNext, w.repeats, w.recovering = w.acked, 0, false
}

// Acked returns the offset the receiver last asked for.
func (w *SendWindow) Acked() uint64 { return w.acked }

// Done reports whether the receiver installed the snapshot.
func (w *SendWindow) Done() bool { return w.done }
