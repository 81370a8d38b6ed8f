package segmentlog

import (
	"fmt"
	"sort"

	"github.com/raftmq/raftmq/protocol"
)

// OffsetForTimestamp returns the base offset of the first record batch, in
// log order, whose max timestamp is at least ts (unix milliseconds, as in
// the batch header): a consumer seeking to time ts starts there and skips
// the batch's earlier records itself. When no batch the log holds
// qualifies it returns NextOffset(), where later batches will be.
//
// It uses the time index: each segment's largest max timestamp picks the
// segment, the running max timestamp of its sparse index points the place
// to start reading, so it reads at most about IndexIntervalBytes of
// entries before the answer. Producer timestamps need not increase; the
// answer is still the first qualifying batch.
func (l *Log) OffsetForTimestamp(ts int64) (uint64, error) {
	l.mu.RLock()
	if err := l.checkReadable(); err != nil {
		l.mu.RUnlock()
		return 0, err
	}
	type span struct{ lo, hi uint64 }
	var spans []span
	for _, s := range l.segments {
		if !s.empty() && s.maxTime >= ts {
			spans = append(spans, span{s.pointForTime(ts).index, s.lastIndex + 1})
		}
	}
	next := l.nextOffset
	l.mu.RUnlock()
	for _, sp := range spans {
		for lo := sp.lo; lo < sp.hi; {
			entries, err := l.Entries(lo, sp.hi, 256<<10)
			if err != nil {
				return 0, fmt.Errorf("segmentlog: offset for timestamp %d: %w", ts, err)
			}
			for _, e := range entries {
				if e.Type != protocol.EntryRecordBatch {
					continue
				}
				h, err := protocol.ReadBatchHeader(e.Data)
				if err != nil {
					return 0, err
				}
				if h.MaxTimestamp >= ts {
					return h.BaseOffset, nil
				}
			}
			lo = entries[len(entries)-1].Index + 1
		}
	}
	return next, nil
}

// pointForTime returns the index point to start reading from to find the
// segment's first batch with a max timestamp of at least ts: the point
// before the first whose running max timestamp reaches ts.
func (s *segment) pointForTime(ts int64) indexPoint {
	i := sort.Search(len(s.points), func(i int) bool { return s.points[i].maxTime >= ts })
	if i == 0 {
		return s.startPoint()
	}
	return s.points[i-1]
}
