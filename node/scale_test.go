package node

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestFiftyNodes starts 50 nodes in one process, all joining one seed, and
// checks that the cluster converges (every node sees 49 peers with a ready
// link) and that one publish reaches all 49 subscribers.
func TestFiftyNodes(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("50 nodes: skipped with -short and -race (CI runs it without -race)")
	}
	const count = 50
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	goroutinesBefore := runtime.NumGoroutine()

	start := time.Now()
	nodes := make([]*Node, count)
	for i := range nodes {
		cfg := testConfig(fmt.Sprintf("n%02d", i))
		cfg.Gossip = GossipLAN // what a LAN deployment runs; GossipFast floods 50 nodes on 2 cores
		if i > 0 {
			cfg.Join = []string{nodes[0].GossipAddr()}
		}
		var err error
		if nodes[i], err = Start(testCtx(t, 10*time.Second), cfg); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { closeAll(nodes) })
	started := time.Since(start)
	waitFor(t, "every node to see 49 peers with ready links", 60*time.Second, func() bool {
		for _, n := range nodes {
			ready := 0
			for _, s := range n.Stats().Peers {
				if s.LinkUp {
					ready++
				}
			}
			if ready != count-1 {
				return false
			}
		}
		return true
	})
	converged := time.Since(start)

	var got atomic.Int64
	subscribed := time.Now()
	for _, n := range nodes[1:] {
		if _, err := n.Subscribe("all", func(ctx context.Context, m *Msg) { got.Add(1) }); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "49 subscriptions known at the publisher", 30*time.Second, func() bool {
		peers, _ := nodes[0].routes.publishTargets("all")
		return len(peers) == count-1
	})
	propagated := time.Since(subscribed)
	ctx := testCtx(t, 30*time.Second)
	pub := time.Now()
	if err := nodes[0].Publish(ctx, "all", "hello"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the publish at every subscriber", 30*time.Second, func() bool { return got.Load() == count-1 })
	delivered := time.Since(pub)

	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	perNode := (int64(after.HeapInuse) - int64(before.HeapInuse)) / count
	t.Logf("%d nodes: started in %v, full mesh (%d links) in %v, %d subscriptions known at the publisher %v after the first, publish to %d subscribers in %v; heap %d KiB and %d goroutines per node",
		count, started.Round(time.Millisecond), count*(count-1)/2, converged.Round(time.Millisecond), count-1, propagated.Round(time.Millisecond), count-1,
		delivered.Round(time.Microsecond), perNode>>10, (runtime.NumGoroutine()-goroutinesBefore)/count)
}

// closeAll closes nodes in parallel: each Close waits a moment for its
// gossip leave to spread.
func closeAll(nodes []*Node) {
	var wg sync.WaitGroup
	for _, n := range nodes {
		if n != nil {
			wg.Add(1)
			go func() { defer wg.Done(); n.Close() }()
		}
	}
	wg.Wait()
}
