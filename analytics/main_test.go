package analytics_test

import (
	"testing"

	"go.uber.org/goleak"
)

// The decision log's Run and the ClickHouse driver start goroutines; every
// one must be gone when the tests end.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
