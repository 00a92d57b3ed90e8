package node

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/seed0811993b/conclave/auth"
)

// testKey is one cluster key for the package's tests.
var testKey = func() auth.Key {
	k, err := auth.GenerateKey(nil)
	if err != nil {
		panic(err)
	}
	return k
}()

// testConfig is a node config for tests: loopback, fast gossip.
func testConfig(name string) Config {
	c := Config{Name: name, Key: testKey, Cluster: "test", Gossip: GossipFast}
	if os.Getenv("CONCLAVE_TEST_LOG") != "" {
		c.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return c
}

// startNode starts a node and closes it when the test ends.
func startNode(t testing.TB, cfg Config) *Node {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	n, err := Start(ctx, cfg)
	if err != nil {
		t.Fatalf("Start(%s): %v", cfg.Name, err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

// startCluster starts count nodes named n0, n1, ... that join n0 and
// waits until every node has a ready link to every other. mod, if not nil,
// adjusts each config.
func startCluster(t testing.TB, count int, mod func(i int, c *Config)) []*Node {
	t.Helper()
	nodes := make([]*Node, count)
	for i := range nodes {
		cfg := testConfig(fmt.Sprintf("n%d", i))
		if i > 0 {
			cfg.Join = []string{nodes[0].GossipAddr()}
		}
		if mod != nil {
			mod(i, &cfg)
		}
		nodes[i] = startNode(t, cfg)
	}
	waitMesh(t, nodes)
	return nodes
}

// waitMesh waits until every node has a ready link to every other.
func waitMesh(t testing.TB, nodes []*Node) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, a := range nodes {
		for _, b := range nodes {
			if a == b {
				continue
			}
			if err := a.WaitPeer(ctx, b.Name()); err != nil {
				t.Fatalf("%s: %v", a.Name(), err)
			}
		}
	}
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// testCtx returns a context that ends with the test or after d.
func testCtx(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
