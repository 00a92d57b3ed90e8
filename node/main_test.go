package node

import (
	"os"
	"testing"

	"github.com/seed0811993b/conclave/internal/leaktest"
)

// TestMain runs the tests under the goroutine leak check, or, when the
// multi-process tests start this binary as one of their nodes (see
// process_test.go), runs that node instead.
func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		os.Exit(childMain())
	}
	leaktest.Main(m)
}
