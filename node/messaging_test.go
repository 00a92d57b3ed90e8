package node

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/seed0811993b/conclave/transport"
)

func TestSendIsOrdered(t *testing.T) {
	nodes := startCluster(t, 2, nil)
	a, b := nodes[0], nodes[1]
	const total = 5000
	got := make(chan int, total)
	b.Handle("count", func(ctx context.Context, m *Msg) (any, error) {
		var v int
		if err := m.Decode(&v); err != nil {
			t.Error(err)
		}
		got <- v
		return nil, nil
	})
	waitFor(t, "b's handler known at a", 5*time.Second, func() bool { return len(a.Servers("count")) == 1 })
	ctx := testCtx(t, 20*time.Second)
	for i := range total {
		if err := a.Send(ctx, "n1", "count", i); err != nil {
			t.Fatal(err)
		}
	}
	for i := range total {
		select {
		case v := <-got:
			if v != i {
				t.Fatalf("message %d arrived as number %d", i, v)
			}
		case <-ctx.Done():
			t.Fatalf("only %d of %d arrived", i, total)
		}
	}
	if err := a.Flush(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestRequestReply(t *testing.T) {
	nodes := startCluster(t, 2, nil)
	a, b := nodes[0], nodes[1]
	HandleFunc(b, "upper", func(ctx context.Context, m *Msg, s string) (string, error) {
		return strings.ToUpper(s) + " from " + m.From, nil
	})
	b.Handle("fail", func(ctx context.Context, m *Msg) (any, error) {
		return nil, errors.New("disk full")
	})
	b.Handle("panic", func(ctx context.Context, m *Msg) (any, error) {
		panic("boom")
	})
	b.Handle("bytes", func(ctx context.Context, m *Msg) (any, error) {
		return append([]byte("echo:"), m.Data()...), nil
	})
	ctx := testCtx(t, 10*time.Second)

	got, err := Call[string](ctx, a, "n1", "upper", "hello")
	if err != nil || got != "HELLO from n0" {
		t.Fatalf("Call = %q, %v", got, err)
	}
	var raw []byte
	if err := a.Request(ctx, "n1", "bytes", []byte{1, 2, 3}, &raw); err != nil || string(raw) != "echo:\x01\x02\x03" {
		t.Fatalf("bytes = %q, %v", raw, err)
	}

	err = a.Request(ctx, "n1", "fail", nil, nil)
	var re *RemoteError
	if !errors.As(err, &re) || re.Message != "disk full" || re.Node != "n1" {
		t.Fatalf("handler error = %v", err)
	}

	err = a.Request(ctx, "n1", "panic", nil, nil)
	if !errors.Is(err, ErrHandlerPanic) {
		t.Fatalf("panic = %v", err)
	}
	// The node survived its handler's panic.
	if _, err := Call[string](ctx, a, "n1", "upper", "still"); err != nil {
		t.Fatalf("after panic: %v", err)
	}

	start := time.Now()
	err = a.Request(ctx, "n1", "nobody", nil, nil)
	if !errors.Is(err, ErrNoResponders) {
		t.Fatalf("unknown topic = %v", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("no-responders took %v", d)
	}
	if err := a.RequestAny(ctx, "nobody", nil, nil); !errors.Is(err, ErrNoResponders) {
		t.Fatalf("RequestAny(nobody) = %v", err)
	}
	if err := a.Request(ctx, "n9", "upper", "x", nil); !errors.Is(err, ErrUnknownNode) {
		t.Fatalf("unknown node = %v", err)
	}

	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	b.Handle("slow", func(ctx context.Context, m *Msg) (any, error) {
		<-ctx.Done()
		return nil, nil
	})
	if err := a.Request(short, "n1", "slow", nil, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("slow = %v", err)
	}
}

func TestPublishSubscribe(t *testing.T) {
	nodes := startCluster(t, 3, nil)
	var mu sync.Mutex
	got := map[string][]string{}
	for _, n := range nodes[1:] {
		n.Subscribe("news", func(ctx context.Context, m *Msg) {
			var s string
			m.Decode(&s)
			mu.Lock()
			got[n.Name()] = append(got[n.Name()], s)
			mu.Unlock()
		})
	}
	a := nodes[0]
	waitFor(t, "subscriptions to reach n0", 2*time.Second, func() bool {
		peers, _ := a.routes.publishTargets("news")
		return len(peers) == 2
	})
	ctx := testCtx(t, 10*time.Second)
	for _, s := range []string{"one", "two", "three"} {
		if err := a.Publish(ctx, "news", s); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "delivery", 5*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got["n1"]) == 3 && len(got["n2"]) == 3
	})
	mu.Lock()
	if strings.Join(got["n1"], ",") != "one,two,three" || strings.Join(got["n2"], ",") != "one,two,three" {
		t.Fatalf("got %v", got)
	}
	mu.Unlock()
}

func TestQueueGroup(t *testing.T) {
	nodes := startCluster(t, 4, nil)
	var mu sync.Mutex
	per := map[string]int{}
	seen := map[int]int{}
	for _, n := range nodes[1:] {
		n.QueueSubscribe("jobs", "workers", func(ctx context.Context, m *Msg) {
			var v int
			m.Decode(&v)
			mu.Lock()
			per[n.Name()]++
			seen[v]++
			mu.Unlock()
		})
	}
	a := nodes[0]
	waitFor(t, "queue members known", 2*time.Second, func() bool {
		_, groups := a.routes.publishTargets("jobs")
		a.routes.mu.RLock()
		defer a.routes.mu.RUnlock()
		return len(groups) == 1 && len(groups[0].members) == 3
	})
	ctx := testCtx(t, 10*time.Second)
	const total = 300
	for i := range total {
		if err := a.Publish(ctx, "jobs", i); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "all jobs", 5*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(seen) == total
	})
	a.Flush(ctx)
	mu.Lock()
	defer mu.Unlock()
	for v, c := range seen {
		if c != 1 {
			t.Errorf("job %d delivered %d times", v, c)
		}
	}
	for name, c := range per {
		if c < total/6 {
			t.Errorf("%s got only %d of %d jobs: %v", name, c, total, per)
		}
	}
}

// TestQueueGroupLimit: one node may hold maxQueueMembers subscriptions in
// one queue group of a topic; the next fails and changes nothing.
func TestQueueGroupLimit(t *testing.T) {
	n := startNode(t, testConfig("solo"))
	h := func(ctx context.Context, m *Msg) {}
	for i := range maxQueueMembers {
		if _, err := n.QueueSubscribe("jobs", "workers", h); err != nil {
			t.Fatalf("subscription %d: %v", i+1, err)
		}
	}
	if _, err := n.QueueSubscribe("jobs", "workers", h); err == nil {
		t.Fatalf("subscription %d was taken", maxQueueMembers+1)
	}
	if _, err := n.QueueSubscribe("jobs", "others", h); err != nil {
		t.Fatalf("another group: %v", err)
	}
	_, groups := n.routes.publishTargets("jobs")
	n.routes.mu.RLock()
	defer n.routes.mu.RUnlock()
	k := 0
	for _, g := range groups {
		k += len(g.members)
	}
	if k != maxQueueMembers+1 {
		t.Fatalf("%d queue members, want %d", k, maxQueueMembers+1)
	}
	if got := len(n.local.snap.Load().bySID); got != maxQueueMembers+1 {
		t.Fatalf("%d local subscriptions, want %d", got, maxQueueMembers+1)
	}
}

func TestBroadcastAndGather(t *testing.T) {
	nodes := startCluster(t, 3, nil)
	var mu sync.Mutex
	got := map[string]bool{}
	for _, n := range nodes {
		n.Handle("ping", func(ctx context.Context, m *Msg) (any, error) {
			mu.Lock()
			got[n.Name()] = true
			mu.Unlock()
			return n.Name(), nil
		})
	}
	a := nodes[0]
	waitFor(t, "handlers known", 2*time.Second, func() bool { return len(a.Servers("ping")) == 3 })
	ctx := testCtx(t, 10*time.Second)
	if err := a.Broadcast(ctx, "ping", nil); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "broadcast", 5*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got) == 3
	})
	res, err := a.Gather(ctx, "ping", nil)
	if err != nil || len(res) != 3 {
		t.Fatalf("Gather = %v, %v", res, err)
	}
	names := map[string]bool{}
	for _, r := range res {
		var s string
		if r.Err != nil || r.Msg.Decode(&s) != nil || s != r.From {
			t.Fatalf("response %+v", r)
		}
		names[s] = true
	}
	if len(names) != 3 {
		t.Fatalf("names %v", names)
	}
}

// TestOversizedMessage: a message over the peer's frame limit fails at
// once, before it takes a place in the stream, and the stream goes on.
func TestOversizedMessage(t *testing.T) {
	nodes := startCluster(t, 2, func(i int, c *Config) { c.MaxFrameSize = 64 << 10 })
	a, b := nodes[0], nodes[1]
	got := make(chan int, 2)
	b.Handle("n", func(ctx context.Context, m *Msg) (any, error) {
		got <- len(m.Data())
		return nil, nil
	})
	waitFor(t, "handler known", 2*time.Second, func() bool { return len(a.Servers("n")) == 1 })
	ctx := testCtx(t, 10*time.Second)
	if err := a.Send(ctx, "n1", "n", make([]byte, 100<<10)); !errors.Is(err, transport.ErrFrameTooLarge) {
		t.Fatalf("oversized send: %v", err)
	}
	if err := a.Request(ctx, "n1", "n", make([]byte, 100<<10), nil); !errors.Is(err, transport.ErrFrameTooLarge) {
		t.Fatalf("oversized request: %v", err)
	}
	if err := a.Send(ctx, "n1", "n", make([]byte, 1000)); err != nil {
		t.Fatal(err)
	}
	select {
	case n := <-got:
		if n != 1000 {
			t.Fatalf("got %d bytes", n)
		}
	case <-ctx.Done():
		t.Fatal("the stream stalled after an oversized message")
	}
}

// TestOversizedReply: a reply over the requester's limit comes back as an
// error, not a hang.
func TestOversizedReply(t *testing.T) {
	nodes := startCluster(t, 2, func(i int, c *Config) { c.MaxFrameSize = 64 << 10 })
	a, b := nodes[0], nodes[1]
	b.Handle("big", func(ctx context.Context, m *Msg) (any, error) { return make([]byte, 100<<10), nil })
	ctx := testCtx(t, 10*time.Second)
	err := a.Request(ctx, "n1", "big", nil, nil)
	var re *RemoteError
	if !errors.As(err, &re) || !strings.Contains(re.Message, "frame limit") {
		t.Fatalf("oversized reply: %v", err)
	}
}

// TestManySubscriptionsSnapshot: a peer joining late learns thousands of
// subscriptions, sent in chunks.
func TestManySubscriptionsSnapshot(t *testing.T) {
	a := startNode(t, testConfig("n0"))
	const subs = 3000
	for i := range subs {
		if _, err := a.Subscribe(fmt.Sprintf("topic.%04d.%s", i, strings.Repeat("x", 40)), func(ctx context.Context, m *Msg) {}); err != nil {
			t.Fatal(err)
		}
	}
	cfg := testConfig("n1")
	cfg.Join = []string{a.GossipAddr()}
	b := startNode(t, cfg)
	waitFor(t, "all subscriptions known at the new node", 10*time.Second, func() bool {
		b.routes.mu.RLock()
		defer b.routes.mu.RUnlock()
		return len(b.routes.plain) == subs
	})
}

// TestQueueGroupChurn: while one member of a queue group unsubscribes
// under a stream of publishes, every message still reaches exactly one
// member. Messages already on their way to the member that left used to
// go to the publisher's Undeliverable hook (2368 of 20 000 in one run).
func TestQueueGroupChurn(t *testing.T) {
	var undelivered atomic.Int64
	nodes := startCluster(t, 3, func(i int, c *Config) {
		c.Undeliverable = func(Undelivered) { undelivered.Add(1) }
	})
	a, b, c := nodes[0], nodes[1], nodes[2]
	var mu sync.Mutex
	seen := map[int]int{}
	h := func(ctx context.Context, m *Msg) {
		var v int
		if err := m.Decode(&v); err != nil {
			t.Error(err)
			return
		}
		mu.Lock()
		seen[v]++
		mu.Unlock()
	}
	leaving, err := b.QueueSubscribe("jobs", "workers", h)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.QueueSubscribe("jobs", "workers", h); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "both members known", 5*time.Second, func() bool {
		_, groups := a.routes.publishTargets("jobs")
		a.routes.mu.RLock()
		defer a.routes.mu.RUnlock()
		return len(groups) == 1 && len(groups[0].members) == 2
	})
	ctx := testCtx(t, 60*time.Second)
	const total = 20000
	for i := range total {
		if err := a.Publish(ctx, "jobs", i); err != nil {
			t.Fatal(err)
		}
		if i == total/4 {
			if err := leaving.Unsubscribe(); err != nil {
				t.Fatal(err)
			}
		}
	}
	waitFor(t, "every message handled or reported", 30*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(seen)+int(undelivered.Load()) >= total
	})
	mu.Lock()
	defer mu.Unlock()
	for v, k := range seen {
		if k != 1 {
			t.Errorf("message %d handled %d times", v, k)
		}
	}
	if u := undelivered.Load(); u != 0 || len(seen) != total {
		t.Fatalf("%d of %d messages handled, %d undeliverable, while a member of the group was live", len(seen), total, u)
	}
}
