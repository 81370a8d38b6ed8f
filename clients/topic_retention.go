package clients

import (
	"fmt"
	"time"

	"github.com/raftmq/raftmq/protocol"
)

// WithRetention sets a new topic's retention: sealed segments older than
// age, and the oldest while a partition's log exceeds bytes, are deleted
// (after a snapshot of the consumer groups' offsets). 0 keeps the brokers'
// default for that rule; a negative value means no limit. Default: the
// brokers' defaults (7 days, no size limit).
func WithRetention(age time.Duration, bytes int64) TopicOption {
	return func(r *protocol.CreateTopicRequest) error {
		switch {
		case age > 0 && age < time.Millisecond:
			return fmt.Errorf("clients: retention age %v is below a millisecond", age)
		case age < 0:
			r.RetentionMs = -1
		default:
			r.RetentionMs = age.Milliseconds()
		}
		if bytes < 0 {
			bytes = -1
		}
		r.RetentionBytes = bytes
		return nil
	}
}
