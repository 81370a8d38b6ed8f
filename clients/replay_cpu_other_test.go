//go:build !unix

package clients_test

import (
	"testing"
	"time"
)

// processCPU is not measured here: cpu-ns/record reads 0.
func processCPU(*testing.B) time.Duration { return 0 }
