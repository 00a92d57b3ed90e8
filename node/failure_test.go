package node

import (
	"context"
	"encoding/binary"
	"errors"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/seed0811993b/conclave/auth"
	"github.com/seed0811993b/conclave/transport"
)

// nextEvent waits for the next event about name of the given kind,
// skipping others.
func nextEvent(t *testing.T, n *Node, kind EventKind, name string, d time.Duration) Event {
	t.Helper()
	timeout := time.After(d)
	for {
		select {
		case ev, ok := <-n.Events():
			if !ok {
				t.Fatalf("events closed while waiting for %v %s", kind, name)
			}
			if ev.Kind == kind && ev.Member.Name == name {
				return ev
			}
		case <-timeout:
			t.Fatalf("no %v event for %s within %v", kind, name, d)
		}
	}
}

// TestCrashFailsPendingLoudly: when a peer dies, its pending requests fail
// at once with ErrPeerFailed, unacknowledged one-way messages reach the
// Undeliverable hook, and EventFailed says so.
func TestCrashFailsPendingLoudly(t *testing.T) {
	var mu sync.Mutex
	var undelivered []Undelivered
	nodes := startCluster(t, 2, func(i int, c *Config) {
		c.SendQueueBytes, c.InboxBytes = 32<<10, 8<<10
		c.Undeliverable = func(u Undelivered) {
			mu.Lock()
			undelivered = append(undelivered, u)
			mu.Unlock()
		}
	})
	a, b := nodes[0], nodes[1]
	block := make(chan struct{})
	defer close(block)
	entered := make(chan struct{}, 1)
	b.Handle("stuck", func(ctx context.Context, m *Msg) (any, error) {
		signal(entered)
		<-block // a hung handler: it does not even see b die
		return nil, nil
	})
	waitFor(t, "handler known", 2*time.Second, func() bool { return len(a.Servers("stuck")) == 1 })
	ctx := testCtx(t, 20*time.Second)

	reqErr := make(chan error, 1)
	go func() { reqErr <- a.Request(ctx, "n1", "stuck", "x", nil) }()
	<-entered
	// From here on, every sequenced frame a sends b is a one-way message.
	pa, _ := a.lookup("n1", StatusTopic)
	pa.sendMu.Lock()
	firstData := pa.nextSeq
	pa.sendMu.Unlock()
	// One-way messages pile up behind the stuck handler until a's queue
	// is full.
	payload := make([]byte, 1024)
	sendCtx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	sent := 0
	for ; ; sent++ {
		binary.BigEndian.PutUint32(payload, uint32(sent)) // each message says which it is
		if err := a.Send(sendCtx, "n1", "stuck", payload); err != nil {
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("send: %v", err)
			}
			break
		}
	}
	cancel()
	st := a.Stats().Peers[0]
	if st.QueuedBytes > 32<<10+2048 {
		t.Fatalf("queue holds %d bytes, over its bound", st.QueuedBytes)
	}
	if st.Queued == 0 {
		t.Fatal("nothing queued: the test did not fill the queue")
	}

	crashed := time.Now()
	// Like SIGKILL: no leave notice, sockets closed. (shutdown then waits
	// for the hung handler, until the test ends.)
	go b.shutdown()
	select {
	case err := <-reqErr:
		if !errors.Is(err, ErrPeerFailed) {
			t.Fatalf("pending request: %v", err)
		}
		if d := time.Since(crashed); d > time.Second {
			t.Errorf("pending request failed after %v", d)
		}
	case <-ctx.Done():
		t.Fatal("pending request hung")
	}
	ev := nextEvent(t, a, EventFailed, "n1", 5*time.Second)
	if !errors.Is(ev.Err, ErrPeerFailed) {
		t.Fatalf("event error %v", ev.Err)
	}
	mu.Lock()
	defer mu.Unlock()
	// Every message was either accepted by b (acknowledged or not) or
	// reported: none vanished, none was counted twice.
	b.mu.Lock()
	pb := b.byID[a.ID()]
	b.mu.Unlock()
	// What b accepted but had not yet acknowledged is reported too: a
	// cannot know it arrived. So the reports are the last messages sent,
	// each once, and b accepted at least all the others.
	accepted := int(pb.recvSeq.Load() - (firstData - 1))
	if len(undelivered) == 0 || len(undelivered) > sent || accepted+len(undelivered) < sent {
		t.Fatalf("%d sent: %d accepted by b, %d reported undeliverable", sent, accepted, len(undelivered))
	}
	for i, u := range undelivered {
		if u.To != b.ID() || u.Topic != "stuck" || !errors.Is(u.Err, ErrPeerFailed) {
			t.Fatalf("report %+v", u)
		}
		var body []byte
		if err := (&Msg{body: u.Body}).Decode(&body); err != nil || len(body) != len(payload) {
			t.Fatalf("report %d carries %d bytes (%v)", i, len(body), err)
		}
		if got, want := int(binary.BigEndian.Uint32(body)), sent-len(undelivered)+i; got != want {
			t.Fatalf("report %d is message %d, want %d", i, got, want)
		}
	}
	t.Logf("%d sent, %d reported undeliverable; failure seen after %v", sent, len(undelivered), time.Since(crashed))
	if err := a.Send(ctx, "n1", "stuck", payload); !errors.Is(err, ErrUnknownNode) {
		t.Fatalf("send to the dead node: %v", err)
	}
}

// TestRestartFailsOldIncarnation: a node that comes back under the same
// name with a new boot id replaces the old one, whose pending requests
// fail with ErrPeerRestarted.
func TestRestartFailsOldIncarnation(t *testing.T) {
	nodes := startCluster(t, 2, nil)
	a, b := nodes[0], nodes[1]
	block := make(chan struct{})
	defer close(block)
	b.Handle("stuck", func(ctx context.Context, m *Msg) (any, error) {
		select {
		case <-block:
		case <-ctx.Done():
		}
		return nil, nil
	})
	waitFor(t, "handler known", 2*time.Second, func() bool { return len(a.Servers("stuck")) == 1 })
	ctx := testCtx(t, 10*time.Second)
	reqErr := make(chan error, 1)
	go func() { reqErr <- a.Request(ctx, "n1", "stuck", nil, nil) }()
	waitFor(t, "request in flight", 2*time.Second, func() bool {
		p, _ := a.lookup("n1", StatusTopic)
		p.mu.Lock()
		defer p.mu.Unlock()
		return len(p.pending) == 1
	})

	cfg := testConfig("n1")
	cfg.Join = []string{a.GossipAddr()}
	b2 := startNode(t, cfg)
	select {
	case err := <-reqErr:
		if !errors.Is(err, ErrPeerRestarted) {
			t.Fatalf("pending request: %v", err)
		}
	case <-ctx.Done():
		t.Fatal("pending request hung")
	}
	if err := a.WaitPeer(ctx, "n1"); err != nil {
		t.Fatal(err)
	}
	b2.Handle("hi", func(ctx context.Context, m *Msg) (any, error) { return "new", nil })
	waitFor(t, "new handler known", 2*time.Second, func() bool { return len(a.Servers("hi")) == 1 })
	if s, err := Call[string](ctx, a, "n1", "hi", nil); err != nil || s != "new" {
		t.Fatalf("request to the new incarnation: %q, %v", s, err)
	}
}

// TestLeaveIsGraceful: Leave delivers what was sent, then the others see
// EventLeft (not failed) quickly.
func TestLeaveIsGraceful(t *testing.T) {
	nodes := startCluster(t, 3, nil)
	a, b, c := nodes[0], nodes[1], nodes[2]
	var mu sync.Mutex
	var got []int
	a.Handle("n", func(ctx context.Context, m *Msg) (any, error) {
		var v int
		m.Decode(&v)
		mu.Lock()
		got = append(got, v)
		mu.Unlock()
		return nil, nil
	})
	waitFor(t, "handler known", 2*time.Second, func() bool { return len(b.Servers("n")) == 1 })
	ctx := testCtx(t, 10*time.Second)
	for i := range 1000 {
		if err := b.Send(ctx, "n0", "n", i); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	if err := b.Leave(ctx); err != nil {
		t.Fatal(err)
	}
	for _, n := range []*Node{a, c} {
		ev := nextEvent(t, n, EventLeft, "n1", 2*time.Second)
		if !errors.Is(ev.Err, ErrPeerLeft) {
			t.Fatalf("%s: %v", n.Name(), ev.Err)
		}
	}
	t.Logf("leave seen by both after %v", time.Since(start))
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 1000 {
		t.Fatalf("a got %d of 1000 messages sent before Leave", len(got))
	}
	if err := b.Send(ctx, "n0", "n", 1); !errors.Is(err, ErrClosed) {
		t.Fatalf("send after leave: %v", err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestEvents: joined and updated events carry the member's tags.
func TestEvents(t *testing.T) {
	a := startNode(t, testConfig("n0"))
	cfg := testConfig("n1")
	cfg.Join = []string{a.GossipAddr()}
	cfg.Tags = map[string]string{"role": "worker"}
	b := startNode(t, cfg)
	ev := nextEvent(t, a, EventJoined, "n1", 5*time.Second)
	if ev.Member.ID != b.ID() || ev.Member.Tags["role"] != "worker" {
		t.Fatalf("joined: %+v", ev)
	}
	if err := b.SetTags(map[string]string{"role": "busy"}); err != nil {
		t.Fatal(err)
	}
	ev = nextEvent(t, a, EventUpdated, "n1", 5*time.Second)
	if ev.Member.Tags["role"] != "busy" {
		t.Fatalf("updated: %+v", ev)
	}
	members := a.Members()
	if len(members) != 2 || members[0].Name != "n0" || members[1].Tags["role"] != "busy" {
		t.Fatalf("members %+v", members)
	}
	b.Close()
	nextEvent(t, a, EventLeft, "n1", 5*time.Second)
	if err := b.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

// TestWrongKeyIsRefused: a process with another key can neither join the
// gossip nor open a link, and its errors say why.
func TestWrongKeyIsRefused(t *testing.T) {
	nodes := startCluster(t, 2, nil)
	other, _ := auth.GenerateKey(nil)
	cfg := testConfig("intruder")
	cfg.Key = other
	cfg.Join = []string{nodes[0].GossipAddr()}
	ctx := testCtx(t, 10*time.Second)
	_, err := Start(ctx, cfg)
	if err == nil {
		t.Fatal("a node with the wrong key joined")
	}
	if !strings.Contains(err.Error(), "key") {
		t.Fatalf("join error does not mention the key: %v", err)
	}
	if strings.Contains(err.Error(), string(other)) {
		t.Fatal("error leaks the key")
	}
	_, err = transport.Dial(ctx, "tcp", nodes[0].LinkAddr(), &transport.Config{Auth: &auth.Config{Key: other, Name: "intruder#0000000000000000"}})
	if !errors.Is(err, auth.ErrAuthFailed) {
		t.Fatalf("link with the wrong key: %v", err)
	}
	for _, n := range nodes {
		if len(n.Members()) != 2 {
			t.Fatalf("%s sees %v", n.Name(), n.Members())
		}
	}
}

// TestBackpressure: a sender to a consumer that does not keep up waits
// instead of queueing without bound, and a context ends the wait.
func TestBackpressure(t *testing.T) {
	nodes := startCluster(t, 2, func(i int, c *Config) { c.SendQueueBytes, c.InboxBytes = 16<<10, 16<<10 })
	a, b := nodes[0], nodes[1]
	release := make(chan struct{})
	var handled sync.WaitGroup
	b.Handle("slow", func(ctx context.Context, m *Msg) (any, error) {
		<-release
		handled.Done()
		return nil, nil
	})
	waitFor(t, "handler known", 2*time.Second, func() bool { return len(a.Servers("slow")) == 1 })
	ctx := testCtx(t, 10*time.Second)
	payload := make([]byte, 512)
	n := 0
	for {
		short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		err := a.Send(short, "n1", "slow", payload)
		cancel()
		if errors.Is(err, context.DeadlineExceeded) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		handled.Add(1)
		n++
		if n > 10000 {
			t.Fatal("no backpressure: 10000 sends of 512 B into 16 KiB queues")
		}
	}
	if q := a.Stats().Peers[0].QueuedBytes; q > 16<<10 {
		t.Fatalf("queued %d bytes", q)
	}
	close(release)
	handled.Wait() // every message accepted by Send arrives once the consumer runs
	t.Logf("sender blocked after %d messages of 512 B", n)
}

// memberInfoOf builds the discovery record of n, as gossip would report it.
func memberInfoOf(t *testing.T, n *Node) memberInfo {
	t.Helper()
	name, boot, ok := splitID(n.ID())
	if !ok {
		t.Fatalf("bad ID %q", n.ID())
	}
	return memberInfo{ID: n.ID(), Name: name, Boot: boot, LinkAddr: netip.MustParseAddrPort(n.LinkAddr())}
}

// TestFalseFailureRecovers: a peer declared failed that turns out to be
// alive comes back with its handlers and subscriptions known again.
func TestFalseFailureRecovers(t *testing.T) {
	nodes := startCluster(t, 2, nil)
	a, b := nodes[0], nodes[1]
	HandleFunc(b, "echo", func(ctx context.Context, m *Msg, s string) (string, error) { return s, nil })
	b.Subscribe("news", func(ctx context.Context, m *Msg) {})
	waitFor(t, "b's interests at a", 2*time.Second, func() bool {
		peers, _ := a.routes.publishTargets("news")
		return len(a.Servers("echo")) == 1 && len(peers) == 1
	})
	pb, _ := a.lookup("n1", StatusTopic)
	a.peerDown(pb, stateFailed, ErrPeerFailed, "test: a false alarm")
	if len(a.Servers("echo")) != 0 {
		t.Fatal("a failed peer's handler is still routed to")
	}
	a.onDisco(discoEvent{Kind: discoJoin, Member: memberInfoOf(t, b)})
	waitFor(t, "b's interests at a again", 5*time.Second, func() bool {
		peers, _ := a.routes.publishTargets("news")
		return len(a.Servers("echo")) == 1 && len(peers) == 1
	})
	ctx := testCtx(t, 5*time.Second)
	var out string
	if err := a.RequestAny(ctx, "echo", "back", &out); err != nil || out != "back" {
		t.Fatalf("RequestAny after recovery: %q, %v", out, err)
	}
}

// TestGossipDeathWithHealthyLink: gossip declaring dead a peer whose link
// is healthy does not fail it; losing that link afterwards does, at once.
func TestGossipDeathWithHealthyLink(t *testing.T) {
	d := &cutDialer{}
	nodes := startCluster(t, 2, func(i int, c *Config) { c.NetDialer = d })
	a, b := nodes[0], nodes[1]
	a.onDisco(discoEvent{Kind: discoLeave, Member: memberInfoOf(t, b)})
	if _, err := a.lookup("n1", StatusTopic); err != nil {
		t.Fatalf("gossip alone failed a peer with a healthy link: %v", err)
	}
	ctx := testCtx(t, 5*time.Second)
	b.Handle("echo", func(ctx context.Context, m *Msg) (any, error) { return m.Data(), nil })
	if err := a.Request(ctx, "n1", "echo", "x", nil); err != nil {
		t.Fatal(err)
	}
	d.cutAll()
	ev := nextEvent(t, a, EventFailed, "n1", 5*time.Second)
	if !strings.Contains(ev.Err.Error(), "gossip declared it dead and its link is gone") {
		t.Fatalf("failure reason: %v", ev.Err)
	}
}

// TestSlowHandlerKeepsLink: a one-way handler slower than the heartbeat
// timeout holds up the link's reader, which is our own backpressure, not a
// silent peer: the link stays up.
func TestSlowHandlerKeepsLink(t *testing.T) {
	d := &cutDialer{}
	nodes := startCluster(t, 2, func(i int, c *Config) {
		c.NetDialer = d
		c.InboxBytes = 1024
		// A timeout long enough that a loaded CI machine does not trip it
		// by itself, and a handler held well past it.
		c.HeartbeatInterval, c.HeartbeatTimeout = 100*time.Millisecond, 600*time.Millisecond
	})
	a, b := nodes[0], nodes[1]
	release := make(chan struct{})
	var handled sync.WaitGroup
	b.Handle("slow", func(ctx context.Context, m *Msg) (any, error) {
		<-release
		handled.Done()
		return nil, nil
	})
	waitFor(t, "handler known", 2*time.Second, func() bool { return len(a.Servers("slow")) == 1 })
	dials, resent := d.dials.Load(), a.Stats().Peers[0].Resent
	ctx := testCtx(t, 10*time.Second)
	for range 50 {
		handled.Add(1)
		if err := a.Send(ctx, "n1", "slow", make([]byte, 200)); err != nil {
			t.Fatal(err)
		}
	}
	// Hold the handler for three heartbeat timeouts.
	time.Sleep(1800 * time.Millisecond)
	close(release)
	handled.Wait()
	if got := d.dials.Load(); got != dials {
		t.Fatalf("the link was re-dialled %d times while the handler was slow", got-dials)
	}
	if r := a.Stats().Peers[0].Resent - resent; r != 0 {
		t.Fatalf("%d messages resent: the link was dropped", r)
	}
}

// TestClientCrashIsNoticed: a client (not a gossip member, so nobody can
// dial it) that dies without a word is declared failed once it has not
// dialled again for a grace period, and a request to it fails.
func TestClientCrashIsNoticed(t *testing.T) {
	a := startNode(t, testConfig("n0"))
	cfg := testConfig("laptop")
	cfg.Connect = []string{a.LinkAddr()}
	c := startNode(t, cfg)
	block := make(chan struct{})
	defer close(block)
	c.Handle("wait", func(ctx context.Context, m *Msg) (any, error) {
		<-block // hung: it does not even see its process die
		return nil, nil
	})
	ctx := testCtx(t, 30*time.Second)
	if err := a.WaitPeer(ctx, "laptop"); err != nil {
		t.Fatal(err)
	}
	reqErr := make(chan error, 1)
	go func() { reqErr <- a.Request(ctx, "laptop", "wait", nil, nil) }()
	waitFor(t, "the request at the client", 5*time.Second, func() bool {
		p, err := a.lookup("laptop", StatusTopic)
		if err != nil {
			return false
		}
		p.mu.Lock()
		defer p.mu.Unlock()
		return len(p.pending) == 1
	})
	start := time.Now()
	go c.shutdown() // no leave notice; the handler blocks its end
	ev := nextEvent(t, a, EventFailed, "laptop", 3*linkOnlyGrace)
	if !strings.Contains(ev.Err.Error(), "did not dial again") {
		t.Fatalf("reason: %v", ev.Err)
	}
	if err := <-reqErr; !errors.Is(err, ErrPeerFailed) {
		t.Fatalf("pending request: %v", err)
	}
	t.Logf("a crashed client was declared failed after %v (grace %v)", time.Since(start).Round(time.Millisecond), linkOnlyGrace)
}

// TestAnswersUnderBackpressure: a worker that answers each job with a Send
// back to its sender keeps going while that sender handles the answers
// slowly, with both queues and inboxes small. The link's reader used to
// wait for inbox room with the sender's acknowledgements unread behind it,
// while the handler it waited for needed those acknowledgements to send:
// both stopped for good after a few hundred answers.
func TestAnswersUnderBackpressure(t *testing.T) {
	nodes := startCluster(t, 2, func(i int, c *Config) {
		c.SendQueueBytes = 64 << 10
		c.InboxBytes = 64 << 10
	})
	a, b := nodes[0], nodes[1]
	var answers atomic.Int64
	b.Handle("job", func(ctx context.Context, m *Msg) (any, error) {
		return nil, b.Send(ctx, "n0", "answer", m.Data())
	})
	a.Handle("answer", func(ctx context.Context, m *Msg) (any, error) {
		if answers.Add(1) < 200 {
			time.Sleep(time.Millisecond) // a slow start fills every queue
		}
		return nil, nil
	})
	waitFor(t, "handlers known", 5*time.Second, func() bool { return len(a.Servers("job")) == 1 && len(b.Servers("answer")) == 1 })
	ctx := testCtx(t, 60*time.Second)
	const jobs = 20000
	sent := make(chan error, 1)
	go func() {
		for range jobs {
			if err := a.Send(ctx, "n1", "job", make([]byte, 1000)); err != nil {
				sent <- err
				return
			}
		}
		sent <- nil
	}()
	waitFor(t, "every answer", 50*time.Second, func() bool { return answers.Load() == jobs })
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
}
