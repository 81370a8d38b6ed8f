package protocol

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
)

// ErrorCode is a stable client API error code. The numbers and names never
// change meaning; new codes are added at the end.
type ErrorCode uint16

// Client API error codes. "retriable" means the same request may succeed
// later or at another broker without change.
const (
	CodeNone ErrorCode = 0
	// CodeUnknown is a broker-side failure without a more specific code.
	CodeUnknown ErrorCode = 1
	// CodeUnsupportedVersion: the request's API version is not one the broker speaks.
	CodeUnsupportedVersion ErrorCode = 2
	// CodeMalformedRequest: the request cannot be decoded or has invalid fields.
	CodeMalformedRequest ErrorCode = 3
	// CodeNotLeader (retriable): this broker does not lead the partition (or the
	// controller); Error.Leader names the leader, 0 when unknown.
	CodeNotLeader ErrorCode = 4
	// CodeUnknownTopic (retriable: metadata may still be spreading after a create).
	CodeUnknownTopic ErrorCode = 5
	// CodeBadPartition: the partition number is not in [0, partitions).
	CodeBadPartition ErrorCode = 6
	// CodeOffsetOutOfRange: Error.Low and Error.High give the valid range
	// (log start offset, high watermark).
	CodeOffsetOutOfRange ErrorCode = 7
	// CodeBatchTooLarge: the batch exceeds the broker's limit, Error.Limit bytes.
	CodeBatchTooLarge ErrorCode = 8
	// CodeRecordTooLarge: a record exceeds the broker's limit, Error.Limit bytes.
	CodeRecordTooLarge ErrorCode = 9
	// CodeCorruptBatch: the batch fails its CRC or structural checks.
	CodeCorruptBatch ErrorCode = 10
	// CodeNotReady (retriable): the broker or the partition replica is starting,
	// or the partition has no leader yet.
	CodeNotReady ErrorCode = 11
	// CodeTimeout (retriable): the operation did not complete in time; a
	// produce may or may not have been committed. The SDK producer also
	// fails a batch with it when its delivery timeout passed before the
	// batch was ever sent; its message then says so, and nothing of that
	// batch was written.
	CodeTimeout ErrorCode = 12
	// CodeTopicExists: create of a topic that exists, or whose name differs
	// from an existing topic's only in case.
	CodeTopicExists ErrorCode = 13
	// CodeInvalidArgument: an admin request with invalid values (topic name,
	// partition or replica count).
	CodeInvalidArgument ErrorCode = 14
	// CodeShuttingDown (retriable): the broker is stopping.
	CodeShuttingDown ErrorCode = 15
	// CodeStorage: the broker's storage failed; the request had no effect
	// unless stated otherwise.
	CodeStorage ErrorCode = 16
	// CodeStaleEpoch: an offset commit from a member whose assignment epoch
	// of the partition is older than the partition's current one (the
	// partition moved to another member). Not retriable: the member must
	// rejoin or drop the partition.
	CodeStaleEpoch ErrorCode = 17
	// CodeUnknownMember: the group coordinator does not know the member (its
	// session expired, or it left); the member rejoins.
	CodeUnknownMember ErrorCode = 18
	// CodeGroupNotEmpty: reset-offsets or delete of a group with active members.
	CodeGroupNotEmpty ErrorCode = 19
	// CodeUnknownGroup: the consumer group does not exist.
	CodeUnknownGroup ErrorCode = 20
	// CodeOutOfOrderSequence (retriable): an idempotent producer's batch
	// starts past the next expected sequence number of its partition (an
	// earlier batch has not arrived yet); the producer resends its
	// unacknowledged batches in order.
	CodeOutOfOrderSequence ErrorCode = 21
	// CodeDuplicateSequence: an idempotent producer's batch repeats
	// sequence numbers older than the window of recent batches the partition
	// remembers per producer, or overlaps one without matching it, so its
	// original offset is unknown. Not retriable.
	CodeDuplicateSequence ErrorCode = 22
	// CodeProducerFenced: an idempotent producer's batch carries an epoch
	// older than the partition's current epoch for that producer id. Not
	// retriable.
	CodeProducerFenced ErrorCode = 23
	// CodeReplyTooLarge: the reply would exceed the NATS max payload even
	// compressed (a cluster status or metadata reply of a very large
	// cluster, say); ask for less (fewer topics). A fetch gets it when the
	// batch at its offset alone is over the max payload (written while the
	// max payload was higher): raise the max payload to read it.
	CodeReplyTooLarge ErrorCode = 24
	// CodeUnknownProducer (retriable): an idempotent producer's batch
	// starts past sequence 0 of a producer id the partition has no state
	// for (it forgot the producer: more recently appending producer ids
	// took its place). Nothing was written. A producer whose earlier
	// batches on the partition all have a definite outcome starts a new
	// epoch at sequence 0 and resends (the SDK does); otherwise it resends
	// its unacknowledged batches in order, as for CodeOutOfOrderSequence.
	CodeUnknownProducer ErrorCode = 25
)

type errorCodeInfo struct {
	name      string
	retriable bool
}

// errorCodes is the one table of code names and retriable flags.
var errorCodes = [...]errorCodeInfo{
	CodeNone:               {"none", false},
	CodeUnknown:            {"unknown", false},
	CodeUnsupportedVersion: {"unsupported_version", false},
	CodeMalformedRequest:   {"malformed_request", false},
	CodeNotLeader:          {"not_leader", true},
	CodeUnknownTopic:       {"unknown_topic", true},
	CodeBadPartition:       {"bad_partition", false},
	CodeOffsetOutOfRange:   {"offset_out_of_range", false},
	CodeBatchTooLarge:      {"batch_too_large", false},
	CodeRecordTooLarge:     {"record_too_large", false},
	CodeCorruptBatch:       {"corrupt_batch", false},
	CodeNotReady:           {"not_ready", true},
	CodeTimeout:            {"timeout", true},
	CodeTopicExists:        {"topic_exists", false},
	CodeInvalidArgument:    {"invalid_argument", false},
	CodeShuttingDown:       {"shutting_down", true},
	CodeStorage:            {"storage_error", false},
	CodeStaleEpoch:         {"stale_epoch", false},
	CodeUnknownMember:      {"unknown_member", false},
	CodeGroupNotEmpty:      {"group_not_empty", false},
	CodeUnknownGroup:       {"unknown_group", false},
	CodeOutOfOrderSequence: {"out_of_order_sequence", true},
	CodeDuplicateSequence:  {"duplicate_sequence", false},
	CodeProducerFenced:     {"producer_fenced", false},
	CodeReplyTooLarge:      {"reply_too_large", false},
	CodeUnknownProducer:    {"unknown_producer", true},
}

// String returns the code's stable snake_case name.
func (c ErrorCode) String() string {
	if int(c) < len(errorCodes) {
		return errorCodes[c].name
	}
	return "code_" + strconv.Itoa(int(c))
}

// Retriable reports whether a request that failed with c may succeed if
// retried unchanged (possibly at another broker).
func (c ErrorCode) Retriable() bool {
	return int(c) < len(errorCodes) && errorCodes[c].retriable
}

// ParseErrorCode returns the code named s (the String form).
func ParseErrorCode(s string) (ErrorCode, bool) {
	for i, info := range errorCodes {
		if info.name == s {
			return ErrorCode(i), true
		}
	}
	if n, err := strconv.ParseUint(s, 10, 16); err == nil {
		return ErrorCode(n), true
	}
	if rest, ok := strings.CutPrefix(s, "code_"); ok {
		if n, err := strconv.ParseUint(rest, 10, 16); err == nil {
			return ErrorCode(n), true
		}
	}
	return 0, false
}

// MarshalJSON writes the code's name.
func (c ErrorCode) MarshalJSON() ([]byte, error) { return json.Marshal(c.String()) }

// UnmarshalJSON reads a code name (or number).
func (c *ErrorCode) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		var n uint16
		if err2 := json.Unmarshal(b, &n); err2 != nil {
			return fmt.Errorf("protocol: error code %s: %w", b, err)
		}
		*c = ErrorCode(n)
		return nil
	}
	code, ok := ParseErrorCode(s)
	if !ok {
		return fmt.Errorf("protocol: unknown error code %q", s)
	}
	*c = code
	return nil
}

// Error is a client API error as it travels in a reply. It implements error;
// errors.Is(err, &Error{Code: X}) matches by code, and errors.Is(err,
// ErrorCode(X)) does too.
type Error struct {
	Code    ErrorCode `json:"code"`
	Message string    `json:"message,omitempty"`
	// Leader is the leader's broker id with CodeNotLeader (0 = unknown).
	Leader uint64 `json:"leader,omitempty"`
	// Low and High are the valid offset range with CodeOffsetOutOfRange.
	Low  uint64 `json:"low,omitempty"`
	High uint64 `json:"high,omitempty"`
	// Limit is the exceeded limit in bytes with CodeBatchTooLarge and
	// CodeRecordTooLarge, and the NATS max payload with a fetch's
	// CodeReplyTooLarge.
	Limit uint64 `json:"limit,omitempty"`
}

// Errorf returns an *Error with code and a formatted message.
func Errorf(code ErrorCode, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

func (e *Error) Error() string {
	msg := "raftmq: " + e.Code.String()
	if e.Message != "" {
		msg += ": " + e.Message
	}
	switch e.Code {
	case CodeNotLeader:
		if e.Leader != 0 {
			msg += fmt.Sprintf(" (leader is broker %d)", e.Leader)
		} else {
			msg += " (leader unknown)"
		}
	case CodeOffsetOutOfRange:
		msg += fmt.Sprintf(" (valid offsets %d..%d)", e.Low, e.High)
	case CodeBatchTooLarge, CodeRecordTooLarge:
		msg += fmt.Sprintf(" (limit %d bytes)", e.Limit)
	}
	return msg
}

// Retriable reports whether the request may succeed if retried.
func (e *Error) Retriable() bool { return e != nil && e.Code.Retriable() }

// Is matches another *Error or an ErrorCode by code.
func (e *Error) Is(target error) bool {
	if e == nil {
		return false
	}
	switch t := target.(type) {
	case *Error:
		return t != nil && t.Code == e.Code
	case ErrorCode:
		return t == e.Code
	}
	return false
}

// Error lets an ErrorCode serve as an errors.Is target.
func (c ErrorCode) Error() string { return "raftmq: " + c.String() }
