// Package leaktest runs a package's tests under goleak, the one TestMain
// every package that starts goroutines shares.
package leaktest

import (
	"flag"
	"os"
	"testing"

	"go.uber.org/goleak"
)

// Main runs the tests and fails the binary if any goroutine outlives them.
// While fuzzing (-test.fuzz) the fuzzing engine's own workers are still
// running when the tests end, so the check is left to the normal test run.
func Main(m *testing.M) {
	flag.Parse()
	if f := flag.Lookup("test.fuzz"); f != nil && f.Value.String() != "" {
		os.Exit(m.Run())
	}
	goleak.VerifyTestMain(m)
}
