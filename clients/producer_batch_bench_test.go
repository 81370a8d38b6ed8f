package clients_test

import (
	"testing"

	"github.com/raftmq/raftmq/clients"
)

// BenchmarkProduceBatchCallback is BenchmarkProduce (uncompressed) with
// the records reporting through WithBatchCallback, one call per batch.
func BenchmarkProduceBatchCallback(b *testing.B) {
	benchmarkProduce(b, clients.CompressionNone, true)
}
