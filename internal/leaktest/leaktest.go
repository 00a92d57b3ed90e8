// Package leaktest runs a package's tests under goleak, the one TestMain
// every package that starts goroutines shares.
package leaktest

import (
	"flag"
	"fmt"
	"os"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// settle is how long goroutines may take to end after the tests do.
// goleak's own patience is about half a second; memberlist's probe
// goroutine outlives Shutdown by its probe interval, which memberlist
// stretches up to eightfold while the node looks unhealthy to itself: 8 s
// with GossipLAN's 1 s. A goroutine that is still there after settle is a
// leak. Waiting costs nothing when none is left.
const settle = 10 * time.Second

// Main runs the tests and fails the binary if any goroutine outlives them.
// While fuzzing (-test.fuzz) the fuzzing engine's own workers are still
// running when the tests end, so the check is left to the normal test run.
func Main(m *testing.M) {
	flag.Parse()
	code := m.Run()
	if f := flag.Lookup("test.fuzz"); code != 0 || (f != nil && f.Value.String() != "") {
		os.Exit(code)
	}
	deadline := time.Now().Add(settle)
	err := goleak.Find()
	for err != nil && time.Now().Before(deadline) {
		err = goleak.Find() // each call retries for about half a second
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "goleak: errors on successful test run: %v\n", err)
		os.Exit(1)
	}
	os.Exit(code)
}
