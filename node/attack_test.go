package node

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/seed0811993b/conclave/auth"
	"github.com/seed0811993b/conclave/codec"
	"github.com/seed0811993b/conclave/transport"
)

// TestHostilePeer: a key holder that speaks the link protocol badly gets
// its link closed and a log line; the node carries on serving others.
func TestHostilePeer(t *testing.T) {
	nodes := startCluster(t, 2, nil)
	victim, friend := nodes[0], nodes[1]
	HandleFunc(victim, "echo", func(ctx context.Context, m *Msg, s string) (string, error) { return s, nil })
	ctx := testCtx(t, 30*time.Second)

	env := func(e codec.Envelope) []byte { return codec.AppendEnvelope(nil, &e) }
	// Each case starts a new stream (epoch), or the victim would take its
	// frames for resends of the last case's and drop them.
	epoch := uint64(0)
	newHello := func() []byte {
		epoch++
		return env(codec.Envelope{Kind: codec.KindControl, Topic: []byte(ctlHello),
			Body: marshalControl(&hello{Epoch: epoch, FirstSeq: 1})})
	}
	interest := func(ops ...interestOp) []byte {
		return env(codec.Envelope{Kind: codec.KindControl, Seq: 1, Topic: []byte(ctlInterest), Body: marshalControl(ops)})
	}
	manyOps := make([]interestOp, maxInterestsPerPeer+1)
	for i := range manyOps {
		manyOps[i] = interestOp{Op: opAdd, SID: uint64(i + 1), Kind: interestSub, Topic: "t"}
	}
	// Each add to a list copied on write would cost the list's length:
	// one peer may hold one place per topic, a few per queue group.
	manyServes := make([]interestOp, 2)
	for i := range manyServes {
		manyServes[i] = interestOp{Op: opAdd, SID: uint64(i + 1), Kind: interestService, Topic: "t"}
	}
	manyQueued := make([]interestOp, maxQueueMembers+1)
	for i := range manyQueued {
		manyQueued[i] = interestOp{Op: opAdd, SID: uint64(i + 1), Kind: interestQueue, Topic: "t", Group: "g"}
	}
	for _, tc := range []struct {
		name   string
		frames [][]byte
	}{
		{"not msgpack", [][]byte{[]byte("GET / HTTP/1.1")}},
		{"no hello first", [][]byte{env(codec.Envelope{Kind: codec.KindData, Seq: 1, Topic: []byte("echo"), Body: []byte{0xc0}})}},
		{"hello without epoch", [][]byte{env(codec.Envelope{Kind: codec.KindControl, Topic: []byte(ctlHello), Body: marshalControl(&hello{FirstSeq: 1})})}},
		{"sequence gap", [][]byte{nil, env(codec.Envelope{Kind: codec.KindData, Seq: 5, Topic: []byte("echo"), Body: []byte{0xc0}})}},
		{"unknown kind", [][]byte{nil, env(codec.Envelope{Kind: 99, Seq: 1})}},
		{"unsequenced data", [][]byte{nil, env(codec.Envelope{Kind: codec.KindData, Topic: []byte("echo"), Body: []byte{0xc0}})}},
		{"deep nesting", [][]byte{nil, append(env(codec.Envelope{Kind: codec.KindData, Seq: 1, Topic: []byte("echo"), Body: []byte{0xc0}})[:9], []byte(strings.Repeat("\x91", 100000)+"\xc0")...)}},
		{"bad interest op", [][]byte{nil, interest(interestOp{Op: 9, SID: 1, Kind: interestSub, Topic: "t"})}},
		{"empty interest topic", [][]byte{nil, interest(interestOp{Op: opAdd, SID: 1, Kind: interestSub})}},
		{"too many interests", [][]byte{nil, interest(manyOps...)}},
		{"a second handler for a topic", [][]byte{nil, interest(manyServes...)}},
		{"too many places in a queue group", [][]byte{nil, interest(manyQueued...)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tl, err := transport.Dial(ctx, "tcp", victim.LinkAddr(), &transport.Config{
				Auth: &auth.Config{Key: testKey, Name: "mallory#0123456789abcdef", MaxFrameSize: 16 << 20},
			})
			if err != nil {
				t.Fatal(err)
			}
			defer tl.Close()
			start := time.Now()
			for _, f := range tc.frames {
				if f == nil {
					f = newHello()
				}
				if err := tl.Send(ctx, f); err != nil {
					break
				}
			}
			// The victim drops the link: reading from it ends.
			for {
				rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				_, err := tl.Recv(rctx)
				cancel()
				if errors.Is(err, context.DeadlineExceeded) {
					t.Fatal("the victim kept a hostile link open")
				}
				if err != nil {
					break
				}
			}
			if d := time.Since(start); d > time.Second {
				t.Errorf("the link was closed after %v, not at once", d)
			}
			// And still serves an honest peer.
			if got, err := Call[string](ctx, friend, "n0", "echo", "still here"); err != nil || got != "still here" {
				t.Fatalf("after the attack: %q, %v", got, err)
			}
		})
	}
	// Nothing the hostile peer said reached the routing tables.
	victim.routes.mu.RLock()
	defer victim.routes.mu.RUnlock()
	if len(victim.routes.plain["t"]) != 0 || len(victim.routes.services["t"]) != 0 || len(victim.routes.queues["t"]) != 0 {
		t.Fatal("a hostile peer's interests were kept")
	}
}

// TestHostileWhoami: a fake member that tells a client it has a huge or
// nonsensical identity loses its link; the client keeps no such identity,
// so its sends are never checked against a peer-supplied rule list.
func TestHostileWhoami(t *testing.T) {
	many := make(auth.TopicRules, 100000)
	for i := range many {
		many[i] = "t" + strings.Repeat("x", i%50)
	}
	for _, tc := range []struct {
		name string
		w    whoami
	}{
		{"too many topic rules", whoami{User: "u", Roles: []string{auth.RoleClient}, Topics: many}},
		{"unknown role", whoami{User: "u", Roles: []string{"root"}}},
		{"bad topic rule", whoami{User: "u", Roles: []string{auth.RoleClient}, Topics: auth.TopicRules{"a*b"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := testCtx(t, 10*time.Second)
			ln, err := transport.Listen("tcp", "127.0.0.1:0", &transport.Config{
				Auth: &auth.Config{Key: testKey, Name: "evil#0123456789abcdef", MaxFrameSize: 16 << 20},
			})
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			closed := make(chan struct{})
			go func() {
				defer close(closed)
				tl, err := ln.Accept(ctx)
				if err != nil {
					return
				}
				defer tl.Close()
				env := func(e codec.Envelope) []byte { return codec.AppendEnvelope(nil, &e) }
				for _, e := range []codec.Envelope{
					{Kind: codec.KindControl, Topic: []byte(ctlHello), Body: marshalControl(&hello{Epoch: 7, FirstSeq: 1})},
					{Kind: codec.KindControl, Seq: 1, Topic: []byte(ctlWhoami), Body: marshalControl(&tc.w)},
				} {
					if err := tl.Send(ctx, env(e)); err != nil {
						t.Errorf("the fake member could not send its %s: %v", e.Topic, err)
						return
					}
				}
				for { // until the client hangs up
					if _, err := tl.Recv(ctx); err != nil {
						return
					}
				}
			}()
			c := testConfig("laptop")
			c.Connect = []string{ln.Addr().String()}
			cli := startNode(t, c)
			select {
			case <-closed:
			case <-ctx.Done():
				t.Fatal("the client kept the link of a peer that sent a hostile whoami")
			}
			if id := cli.selfIdentity.Load(); id != nil {
				t.Fatalf("the client took the identity %v", id)
			}
		})
	}
}

// dialAsFake opens a link to victim as a key holder that is no member,
// sends its hello and returns the link. With drain, a goroutine reads and
// drops everything the victim sends, acknowledging nothing.
func dialAsFake(t *testing.T, ctx context.Context, victim *Node, drain bool) *transport.Link {
	t.Helper()
	tl, err := transport.Dial(ctx, "tcp", victim.LinkAddr(), &transport.Config{
		Auth: &auth.Config{Key: testKey, Name: "mallory#0123456789abcdef", MaxFrameSize: 16 << 20},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tl.Close() })
	if err := tl.Send(ctx, codec.AppendEnvelope(nil, &codec.Envelope{Kind: codec.KindControl, Topic: []byte(ctlHello),
		Body: marshalControl(&hello{Epoch: 42, FirstSeq: 1})})); err != nil {
		t.Fatal(err)
	}
	if drain {
		go func() {
			for {
				if _, err := tl.Recv(context.Background()); err != nil {
					return
				}
			}
		}()
	}
	return tl
}

// fakePeer returns the victim's session with dialAsFake's peer.
func fakePeer(t *testing.T, victim *Node) *peer {
	t.Helper()
	var p *peer
	waitFor(t, "the fake peer's session", 10*time.Second, func() bool {
		victim.mu.Lock()
		defer victim.mu.Unlock()
		p = victim.byID["mallory#0123456789abcdef"]
		return p != nil
	})
	return p
}

// sendEchoRequests sends count requests for topic echo with ~1 KB bodies
// on tl, sequenced from 1, as a hostile peer that never reads would.
func sendEchoRequests(t *testing.T, ctx context.Context, tl *transport.Link, count uint64) {
	t.Helper()
	body, _ := codec.Msgpack.Marshal(strings.Repeat("x", 1000))
	for seq := uint64(1); seq <= count; seq++ {
		e := codec.Envelope{Kind: codec.KindRequest, Seq: seq, ID: seq, Topic: []byte("echo"), Body: body}
		if err := tl.Send(ctx, codec.AppendEnvelope(nil, &e)); err != nil {
			t.Fatalf("request %d: %v", seq, err)
		}
	}
}

// TestHostileNoAcks: a key holder that sends requests and never
// acknowledges the replies holds up its own requests only. It used to take
// every request worker of the victim (each waiting for room in its queue),
// and an honest peer's requests then waited for ever.
func TestHostileNoAcks(t *testing.T) {
	nodes := startCluster(t, 2, nil)
	victim, friend := nodes[0], nodes[1]
	HandleFunc(victim, "echo", func(ctx context.Context, m *Msg, s string) (string, error) { return s, nil })
	waitFor(t, "echo known", 5*time.Second, func() bool { return len(friend.Servers("echo")) == 1 })
	ctx := testCtx(t, 60*time.Second)
	tl := dialAsFake(t, ctx, victim, true)
	// 4 MiB of ~1 KB replies fill the victim's queue for it; the rest
	// are more than its request workers.
	const requests = 8000
	sendEchoRequests(t, ctx, tl, requests)
	p := fakePeer(t, victim)
	waitFor(t, "the fake peer's queue to fill and its requests to wait", 30*time.Second, func() bool {
		p.inMu.Lock()
		defer p.inMu.Unlock()
		return p.recvSeq.Load() == requests && p.admitting &&
			(!p.hasRoom() || p.answering.Load() >= int32(victim.cfg.MaxRequests))
	})
	if got, err := Call[string](ctx, friend, "n0", "echo", "still served"); err != nil || got != "still served" {
		t.Fatalf("an honest peer's request while another withholds its acks: %q, %v", got, err)
	}
	if a := p.answering.Load(); a > int32(victim.cfg.MaxRequests) {
		t.Fatalf("%d of the fake peer's requests wait for room, bound %d", a, victim.cfg.MaxRequests)
	}
}

// TestHostileResyncFlood: a key holder that asks for the victim's interests
// again and again, acknowledging nothing, gets one snapshot at a time and
// only while its queue has room; each request used to cost a goroutine and
// a snapshot held for it without bound.
func TestHostileResyncFlood(t *testing.T) {
	cfg := testConfig("v")
	cfg.SendQueueBytes = 256 << 10
	victim := startNode(t, cfg)
	for i := range 300 {
		victim.Handle(fmt.Sprintf("a-topic-with-a-longish-name-%03d", i), func(ctx context.Context, m *Msg) (any, error) { return nil, nil })
	}
	ctx := testCtx(t, 60*time.Second)
	tl := dialAsFake(t, ctx, victim, true)
	const asks = 5000
	for seq := uint64(1); seq <= asks; seq++ {
		e := codec.Envelope{Kind: codec.KindControl, Seq: seq, Topic: []byte(ctlResync)}
		if err := tl.Send(ctx, codec.AppendEnvelope(nil, &e)); err != nil {
			t.Fatalf("ask %d: %v", seq, err)
		}
	}
	p := fakePeer(t, victim)
	waitFor(t, "every ask to be taken", 30*time.Second, func() bool {
		// An answer still pending waits for room that never comes.
		return p.admitted.Load() == asks && (!p.resyncPending.Load() || !p.hasRoom())
	})
	// A snapshot being sent holds the interest lock: under it, every
	// answer given is queued.
	victim.routes.order.Lock()
	p.mu.Lock()
	queued := p.queued
	p.mu.Unlock()
	victim.routes.order.Unlock()
	snapshot := len(marshalControl(victim.local.ops()))
	if limit := cfg.SendQueueBytes + 2*snapshot; queued > limit {
		t.Fatalf("the victim holds %d bytes for a peer that acknowledges nothing; bound %d + a snapshot of %d", queued, cfg.SendQueueBytes, snapshot)
	}
}

// TestHostileNoReads: a key holder that keeps its link alive but never
// reads cannot stall the victim's registrations, which are sent to every
// peer under one lock: a write that cannot be queued for HeartbeatTimeout
// drops that link instead of waiting for ever.
func TestHostileNoReads(t *testing.T) {
	cfg := testConfig("v")
	cfg.SendQueueBytes = 64 << 10
	cfg.HeartbeatTimeout = time.Second
	victim := startNode(t, cfg)
	ctx := testCtx(t, 120*time.Second)
	tl := dialAsFake(t, ctx, victim, false)
	p := fakePeer(t, victim)
	stop := make(chan struct{})
	pinged := make(chan struct{})
	go func() {
		defer close(pinged)
		ping := codec.AppendEnvelope(nil, &codec.Envelope{Kind: codec.KindControl, Topic: []byte(ctlPing)})
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			if tl.Send(ctx, ping) != nil {
				return
			}
		}
	}()
	defer func() { close(stop); <-pinged }()
	// Each registration queues a control frame for the fake peer; tens of
	// megabytes of them overflow its socket and the link's queue.
	topic := strings.Repeat("t", 200)
	done := make(chan error, 1)
	go func() {
		for range 40000 {
			s, err := victim.Subscribe(topic, func(ctx context.Context, m *Msg) {})
			if err == nil {
				err = s.Unsubscribe()
			}
			if err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("registrations still wait behind a peer that does not read")
	}
	if l := p.readyLink(); l != nil && l.tl.Err() == nil {
		t.Fatal("the link of a peer that does not read is still up")
	}
}

// TestSilentPeerWithWaitingRequests: a peer that stops acknowledging and
// then goes silent, with requests of its waiting for room for their
// replies, still has its link dropped by the heartbeat: work waiting on
// the peer does not count as a sign of life.
func TestSilentPeerWithWaitingRequests(t *testing.T) {
	cfg := testConfig("v")
	cfg.HeartbeatTimeout = time.Second
	victim := startNode(t, cfg)
	HandleFunc(victim, "echo", func(ctx context.Context, m *Msg, s string) (string, error) { return s, nil })
	ctx := testCtx(t, 60*time.Second)
	tl := dialAsFake(t, ctx, victim, true)
	const requests = 8000
	sendEchoRequests(t, ctx, tl, requests)
	p := fakePeer(t, victim)
	waitFor(t, "the fake peer's requests to wait for room", 30*time.Second, func() bool {
		p.inMu.Lock()
		defer p.inMu.Unlock()
		return p.recvSeq.Load() == requests && p.admitting
	})
	waitFor(t, "the silent link to be dropped", 20*time.Second, func() bool { return p.readyLink() == nil })
}
