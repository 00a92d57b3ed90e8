package node

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/seed0811993b/conclave/auth"
	"github.com/seed0811993b/conclave/codec"
	"github.com/seed0811993b/conclave/transport"
)

// dialAs opens a bare link to n that presents member ID id and logs in as
// user, with the cluster key or without it: what a hostile user's own
// program can do.
func dialAs(t *testing.T, n *Node, id, user string, key auth.Key) (*transport.Link, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	l, err := transport.Dial(ctx, "tcp", n.LinkAddr(), &transport.Config{
		Auth: &auth.Config{Name: id, Key: key, User: user, Password: auth.Password("pw-" + user)},
	})
	if err == nil {
		t.Cleanup(func() { l.Close() })
	}
	return l, err
}

// freshID is a member ID with a random boot id.
func freshID(name string) string {
	var b [8]byte
	rand.Read(b[:])
	return name + "#" + hex.EncodeToString(b[:])
}

// A user may not take the member ID of another user's client: it would
// receive that client's replies, from topics its own rules forbid.
func TestLoginCannotTakeAnotherUsersID(t *testing.T) {
	creds := auth.CredentialMap{
		"w0": testCredential(t, "w0", auth.RoleWorker), "w1": testCredential(t, "w1", auth.RoleWorker),
		"cli":    testCredential(t, "cli", auth.RoleClient),
		"jobcli": testCredential(t, "jobcli", auth.RoleClient, "jobs.*", "!jobs.admin"),
	}
	nodes := usersCluster(t, creds, auth.RequireUser)
	n0 := nodes[0]
	release := make(chan struct{})
	t.Cleanup(sync.OnceFunc(func() { close(release) })) // before n0 closes, if the test fails
	HandleFunc(n0, "jobs.admin", func(ctx context.Context, m *Msg, s string) (string, error) {
		<-release // the reply waits while the attacker tries
		return "secret for " + s, nil
	})
	lcfg := clientConfig(n0, "laptop", "cli")
	lcfg.Key = nil
	laptop := startNode(t, lcfg)
	ctx := testCtx(t, 20*time.Second)
	answer := make(chan error, 1)
	go func() {
		got, err := Call[string](ctx, laptop, "n0", "jobs.admin", "laptop")
		if err == nil && got != "secret for laptop" {
			err = fmt.Errorf("got %q", got)
		}
		answer <- err
	}()

	for _, key := range []auth.Key{nil, n0.cfg.Key} {
		for _, id := range []string{laptop.ID(), freshID("laptop")} {
			if _, err := dialAs(t, n0, id, "jobcli", key); !errors.Is(err, auth.ErrNotAllowed) {
				t.Fatalf("jobcli (key %v) claiming %s: %v, want auth.ErrNotAllowed", key != nil, id, err)
			}
		}
	}
	release <- struct{}{}
	if err := <-answer; err != nil {
		t.Fatalf("the client's own request after the attempts: %v", err)
	}
}

// A user who could not be a member (no cluster key, or a role that may not
// serve) may not present a member's name: n0 would take it for a restart of
// that member and end it.
func TestNonMemberLoginCannotTakeMemberName(t *testing.T) {
	creds := memberCreds(t, map[string]string{"mon": auth.RoleMonitor, "wk": auth.RoleWorker})
	nodes := usersCluster(t, creds, auth.RequireUser)
	n0, n1 := nodes[0], nodes[1]
	HandleFunc(n1, "echo", func(ctx context.Context, m *Msg, s string) (string, error) { return s, nil })
	ctx := testCtx(t, 20*time.Second)

	cfg := clientConfig(n0, "n1", "mon")
	cfg.Key = nil
	if evil, err := Start(ctx, cfg); !errors.Is(err, auth.ErrNotAllowed) {
		if err == nil {
			evil.Close()
		}
		t.Fatalf("a monitor client named n1: %v, want auth.ErrNotAllowed", err)
	}
	for _, tc := range []struct {
		user string
		key  auth.Key
	}{{"mon", nil}, {"wk", nil}, {"mon", n0.cfg.Key}} {
		for _, id := range []string{n1.ID(), freshID("n1"), freshID("n0")} {
			if _, err := dialAs(t, n0, id, tc.user, tc.key); !errors.Is(err, auth.ErrNotAllowed) {
				t.Fatalf("%s (key %v) claiming %s: %v, want auth.ErrNotAllowed", tc.user, tc.key != nil, id, err)
			}
		}
	}
	if got, err := Call[string](ctx, n0, "n1", "echo", "after"); err != nil || got != "after" {
		t.Fatalf("n0 -> n1 after the attempts: %q, %v", got, err)
	}
	if len(n0.Members()) != 2 {
		t.Fatalf("n0's members after the attempts: %v", n0.Members())
	}
}

// One user's password-only links make at most MaxClientsPerUser peers; other
// users still get in.
func TestClientsPerUserBounded(t *testing.T) {
	creds := memberCreds(t, map[string]string{"mon": auth.RoleMonitor, "cli": auth.RoleClient})
	const max = 8
	nodes := usersClusterWith(t, creds, auth.RequireUser, func(c *Config) { c.MaxClientsPerUser = max })
	n0 := nodes[0]
	for i := range max {
		if _, err := dialAs(t, n0, freshID(fmt.Sprintf("ghost%d", i)), "mon", nil); err != nil {
			t.Fatalf("client %d of %d: %v", i+1, max, err)
		}
	}
	if _, err := dialAs(t, n0, freshID("ghost"), "mon", nil); !errors.Is(err, auth.ErrNotAllowed) {
		t.Fatalf("client %d: %v, want auth.ErrNotAllowed", max+1, err)
	}
	if _, err := dialAs(t, n0, freshID("laptop"), "cli", nil); err != nil {
		t.Fatalf("another user's client: %v", err)
	}
	// Links are adopted after their handshakes: wait for all of them.
	waitFor(t, fmt.Sprintf("n0 to hold n1, %d of mon's clients and cli's", max), 5*time.Second, func() bool {
		n0.mu.Lock()
		defer n0.mu.Unlock()
		return len(n0.byID) == 1+max+1
	})
}

// unmetPair starts members n0 and n1 (users w0 and w1, RequireUser) that
// share the key and cluster but have not met: n1 joined through another
// seed, or two halves of a cluster are about to merge.
func unmetPair(t *testing.T) (n0, n1 *Node) {
	t.Helper()
	creds := memberCreds(t, map[string]string{"wk": auth.RoleWorker, "mon": auth.RoleMonitor})
	users := scramUsers(t, creds)
	member := func(name, user string) Config {
		c := testConfig(name)
		logInAs(&c, users, user, auth.RequireUser)
		return c
	}
	return startNode(t, member("n0", "w0")), startNode(t, member("n1", "w1"))
}

// A user without the key presents the ID of a member that n0 has not heard
// of yet (it may read it from $status elsewhere). Gossip comes only from key
// holders, so when gossip brings that member, n0 ends the keyless peer and
// the member gets its ID, its link and its messages.
func TestKeylessClaimOfAnUnknownMemberID(t *testing.T) {
	for _, user := range []string{"wk", "mon"} {
		t.Run(user, func(t *testing.T) {
			n0, n1 := unmetPair(t)
			got := make(chan string, 1)
			if _, err := HandleFunc(n1, "payroll", func(ctx context.Context, m *Msg, s string) (string, error) {
				got <- s
				return "", nil
			}); err != nil {
				t.Fatal(err)
			}
			impostor, err := dialAs(t, n0, n1.ID(), user, nil)
			if err != nil {
				t.Fatalf("keyless %s presenting %s before gossip: %v", user, n1.ID(), err)
			}
			ctx := testCtx(t, 20*time.Second)
			hi := codec.Envelope{Kind: codec.KindControl, Topic: []byte(ctlHello), Body: marshalControl(&hello{Epoch: 42, FirstSeq: 1})}
			if err := impostor.Send(ctx, codec.AppendEnvelope(nil, &hi)); err != nil {
				t.Fatal(err)
			}
			if _, err := n1.disco.join(ctx, []string{n0.GossipAddr()}); err != nil {
				t.Fatal(err)
			}
			if err := n0.WaitPeer(ctx, "n1"); err != nil {
				t.Fatal(err)
			}
			if err := n1.WaitPeer(ctx, "n0"); err != nil {
				t.Fatalf("member n1 never linked to n0: %v", err)
			}
			for { // what n0 sent it before gossip came, then the close
				if _, err := impostor.Recv(ctx); err != nil {
					if ctx.Err() != nil {
						t.Fatal("the keyless link to n0 stayed open")
					}
					break
				}
			}
			if err := n0.Send(ctx, "n1", "payroll", "for n1 only"); err != nil {
				t.Fatal(err)
			}
			select {
			case s := <-got:
				if s != "for n1 only" {
					t.Fatalf("n1 got %q", s)
				}
			case <-ctx.Done():
				t.Fatal("n1 never got n0's message")
			}
			if _, err := dialAs(t, n0, n1.ID(), user, nil); !errors.Is(err, auth.ErrNotAllowed) {
				t.Fatalf("keyless %s presenting live member %s: %v, want auth.ErrNotAllowed", user, n1.ID(), err)
			}
		})
	}
}

// While a client is away (its peer failed, and is remembered), its ID and
// its name stay with its user: another user cannot revive its session or
// squat its name, and the client comes back under its ID or a new one.
func TestAwayClientKeepsItsIDAndName(t *testing.T) {
	creds := memberCreds(t, map[string]string{"cli": auth.RoleClient, "jobcli": auth.RoleClient, "mon": auth.RoleMonitor})
	n0 := usersCluster(t, creds, auth.RequireUser)[0]
	id := freshID("laptop")
	l, err := dialAs(t, n0, id, "cli", nil)
	if err != nil {
		t.Fatal(err)
	}
	peer := func() *peer {
		n0.mu.Lock()
		defer n0.mu.Unlock()
		return n0.byID[id]
	}
	waitFor(t, "the client's peer", 5*time.Second, func() bool { p := peer(); return p != nil && p.owner() == "cli" })
	l.Close() // and it does not come back within linkOnlyGrace
	waitFor(t, "the client's peer to fail", linkOnlyGrace+5*time.Second, func() bool { return !peer().up.Load() })
	if _, err := dialAs(t, n0, id, "jobcli", nil); !errors.Is(err, auth.ErrNotAllowed) {
		t.Fatalf("another user reviving the away client %s: %v, want auth.ErrNotAllowed", id, err)
	}
	if _, err := dialAs(t, n0, freshID("laptop"), "mon", nil); !errors.Is(err, auth.ErrNotAllowed) {
		t.Fatalf("another user taking the away client's name: %v, want auth.ErrNotAllowed", err)
	}
	if _, err := dialAs(t, n0, id, "cli", nil); err != nil {
		t.Fatalf("the client back under its ID: %v", err)
	}
	if _, err := dialAs(t, n0, freshID("laptop"), "cli", nil); err != nil {
		t.Fatalf("the client restarted: %v", err)
	}
}

// Reviving failed peers counts against MaxClientsPerUser like new ones.
func TestClientsPerUserCountsRevivals(t *testing.T) {
	creds := memberCreds(t, map[string]string{"mon": auth.RoleMonitor})
	const max = 2
	n0 := usersClusterWith(t, creds, auth.RequireUser, func(c *Config) { c.MaxClientsPerUser = max })[0]
	live := func() int {
		n0.mu.Lock()
		defer n0.mu.Unlock()
		k := 0
		for _, p := range n0.byID {
			if p.up.Load() && p.owner() == "mon" {
				k++
			}
		}
		return k
	}
	var first []string
	for i := range max {
		id := freshID(fmt.Sprintf("old%d", i))
		if _, err := dialAs(t, n0, id, "mon", nil); err != nil { // closed by dialAs at the end
			t.Fatal(err)
		}
		first = append(first, id)
	}
	waitFor(t, "the first clients", 5*time.Second, func() bool { return live() == max })
	for _, id := range first {
		n0.mu.Lock()
		p := n0.byID[id]
		n0.mu.Unlock()
		p.dropLink()
	}
	waitFor(t, "the first clients to fail", linkOnlyGrace+5*time.Second, func() bool { return live() == 0 })
	for i := range max {
		if _, err := dialAs(t, n0, freshID(fmt.Sprintf("new%d", i)), "mon", nil); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range first {
		if _, err := dialAs(t, n0, id, "mon", nil); !errors.Is(err, auth.ErrNotAllowed) {
			t.Fatalf("reviving %s past the bound: %v, want auth.ErrNotAllowed", id, err)
		}
	}
	if k := live(); k > max {
		t.Fatalf("user mon has %d live keyless peers, MaxClientsPerUser is %d", k, max)
	}
}

// Events tell clients from members: a status poller or a laptop that dials
// in comes and goes without being taken for a member.
func TestEventsMarkClients(t *testing.T) {
	creds := memberCreds(t, map[string]string{"cli": auth.RoleClient, "mon": auth.RoleMonitor})
	n0 := usersCluster(t, creds, auth.RequireUser)[0]
	keyless := clientConfig(n0, "laptop", "cli")
	keyless.Key = nil
	startNode(t, keyless)
	startNode(t, clientConfig(n0, "dashboard", "mon")) // with the key, but a monitor
	ctx := testCtx(t, 10*time.Second)
	want := map[string]bool{"n1": false, "laptop": true, "dashboard": true}
	for len(want) > 0 {
		select {
		case ev := <-n0.Events():
			if client, ok := want[ev.Member.Name]; ok && ev.Kind == EventJoined {
				if ev.Member.Client != client {
					t.Errorf("joined %s: Client = %v, want %v", ev.Member.Name, ev.Member.Client, client)
				}
				delete(want, ev.Member.Name)
			}
		case <-ctx.Done():
			t.Fatalf("no joined event for %v", want)
		}
	}
}

// A monitor that holds the cluster key presents the ID of a member n0 has
// not heard of yet. When gossip brings the member, its login binds nothing
// (refuseAsMember): the member's own login still gets in, and n0 links to
// it.
func TestKeyedNonMemberCopyOfMemberID(t *testing.T) {
	n0, n1 := unmetPair(t)
	if _, err := dialAs(t, n0, n1.ID(), "mon", n0.cfg.Key); err != nil {
		t.Fatalf("keyed mon presenting %s before gossip: %v", n1.ID(), err)
	}
	waitFor(t, "n0 to adopt the monitor's link", 5*time.Second, func() bool {
		n0.mu.Lock()
		defer n0.mu.Unlock()
		p := n0.byID[n1.ID()]
		return p != nil && p.owner() == "mon"
	})
	ctx := testCtx(t, 30*time.Second)
	if _, err := n1.disco.join(ctx, []string{n0.GossipAddr()}); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	err0 := n0.WaitPeer(wctx, "n1")
	// What the member itself hears when it logs in to n0 now.
	_, err1 := dialAs(t, n0, n1.ID(), "w1", n0.cfg.Key)
	if err0 != nil || err1 != nil {
		t.Fatalf("member n1 after a keyed monitor copied its ID: n0.WaitPeer(n1): %v; n1's own login to n0: %v", err0, err1)
	}
}

// A keyless login that passed its check in the handshake but never came to
// be adopted (its connection reset after ClientFinished) leaves a claim on a
// name. The claim binds that name as a live client of the user would, so
// a member that then starts under it still joins.
func TestAbandonedClaimDoesNotBlockMember(t *testing.T) {
	creds := memberCreds(t, map[string]string{"mon": auth.RoleMonitor})
	users := scramUsers(t, creds)
	member := func(name, user string) Config {
		c := testConfig(name)
		logInAs(&c, users, user, auth.RequireUser)
		return c
	}
	n0 := startNode(t, member("n0", "w0"))
	n0.claimMu.Lock()
	n0.holdClaim(auth.ConnectionState{PeerName: freshID("a1"), PeerUser: "mon", PeerRoles: []string{auth.RoleMonitor}, Mechanism: auth.MechanismUser})
	n0.claimMu.Unlock()
	cfg := member("a1", "w1") // sorts below n0: it dials first
	cfg.Join = []string{n0.GossipAddr()}
	ctx := testCtx(t, 20*time.Second)
	a1 := startNode(t, cfg)
	if err := a1.WaitPeer(ctx, "n0"); err != nil {
		t.Fatal(err)
	}
}

// When gossip replaces a keyless impostor whose one-way messages are still
// parked for a full inbox, the impostor's admitter stops with its inbox
// instead of waiting for room until Close.
func TestForgottenPeerReleasesItsAdmitter(t *testing.T) {
	creds := memberCreds(t, map[string]string{"cli": auth.RoleClient})
	users := scramUsers(t, creds)
	member := func(name, user string) Config {
		c := testConfig(name)
		logInAs(&c, users, user, auth.RequireUser)
		c.InboxBytes = 16 << 10
		return c
	}
	n0, n1 := startNode(t, member("n0", "w0")), startNode(t, member("n1", "w1"))
	release := make(chan struct{})
	var releaseOnce sync.Once
	t.Cleanup(func() { releaseOnce.Do(func() { close(release) }) })
	if _, err := HandleFunc(n0, "jobs", func(ctx context.Context, m *Msg, s string) (string, error) {
		<-release
		return "", nil
	}); err != nil {
		t.Fatal(err)
	}
	ctx := testCtx(t, 30*time.Second)
	imp, err := dialAs(t, n0, n1.ID(), "cli", nil)
	if err != nil {
		t.Fatal(err)
	}
	hi := codec.Envelope{Kind: codec.KindControl, Topic: []byte(ctlHello), Body: marshalControl(&hello{Epoch: 42, FirstSeq: 1})}
	if err := imp.Send(ctx, codec.AppendEnvelope(nil, &hi)); err != nil {
		t.Fatal(err)
	}
	go func() { // drain what n0 sends
		for {
			if _, err := imp.Recv(context.Background()); err != nil {
				return
			}
		}
	}()
	body, _ := codec.Msgpack.Marshal(strings.Repeat("x", 4000))
	const msgs = 64 // 256 KB: 16 KB fit the inbox, the rest is parked
	for seq := uint64(1); seq <= msgs; seq++ {
		e := codec.Envelope{Kind: codec.KindData, Seq: seq, Topic: []byte("jobs"), Body: body}
		if err := imp.Send(ctx, codec.AppendEnvelope(nil, &e)); err != nil {
			t.Fatal(err)
		}
	}
	var p *peer
	waitFor(t, "the impostor's work to be parked", 10*time.Second, func() bool {
		n0.mu.Lock()
		p = n0.byID[n1.ID()]
		n0.mu.Unlock()
		if p == nil {
			return false
		}
		p.inMu.Lock()
		defer p.inMu.Unlock()
		return p.recvSeq.Load() == msgs && p.admitting && p.parkedBytes > 0
	})
	if _, err := n1.disco.join(ctx, []string{n0.GossipAddr()}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "gossip to replace the impostor", 10*time.Second, func() bool {
		n0.mu.Lock()
		defer n0.mu.Unlock()
		q := n0.byID[n1.ID()]
		return q != nil && q != p
	})
	releaseOnce.Do(func() { close(release) })
	waitFor(t, "the replaced impostor's admitter to stop", 5*time.Second, func() bool {
		p.inMu.Lock()
		defer p.inMu.Unlock()
		return !p.admitting
	})
}

// A client restarting under the same name and user while its old
// incarnation still looks alive is not refused at MaxClientsPerUser: the
// restart ends the old one.
func TestClientRestartAtLimit(t *testing.T) {
	creds := memberCreds(t, map[string]string{"cli": auth.RoleClient})
	n0 := usersClusterWith(t, creds, auth.RequireUser, func(c *Config) { c.MaxClientsPerUser = 1 })[0]
	old := freshID("laptop")
	if _, err := dialAs(t, n0, old, "cli", nil); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the client's peer", 5*time.Second, func() bool {
		n0.mu.Lock()
		defer n0.mu.Unlock()
		return n0.byID[old] != nil
	})
	if _, err := dialAs(t, n0, freshID("laptop"), "cli", nil); err != nil {
		t.Fatalf("client laptop restarting (user cli, MaxClientsPerUser 1): %v", err)
	}
}

// Only the dialler of a link logs in, so at the node that dialled a member
// the member is bound to no login. It announces its user (iam) on that
// link, and a key holder logging in as another user with a serving role can
// then take neither the member's ID nor its name there.
func TestMemberBoundWhereItNeverLoggedIn(t *testing.T) {
	creds := memberCreds(t, map[string]string{"wk": auth.RoleWorker})
	nodes := usersCluster(t, creds, auth.RequireUser)
	n0, n1 := nodes[0], nodes[1]
	ctx := testCtx(t, 20*time.Second)
	if err := n0.WaitPeer(ctx, "n1"); err != nil {
		t.Fatal(err)
	}
	// The side that dialled: there the other member did not log in.
	target, victim := n0, n1
	n0.mu.Lock()
	if n0.byID[n1.ID()].ident.Load() != nil {
		target, victim = n1, n0
	}
	n0.mu.Unlock()
	known := func() bool {
		target.mu.Lock()
		defer target.mu.Unlock()
		return holderOf(target.byID[victim.ID()]).user != ""
	}
	for deadline := time.Now().Add(5 * time.Second); !known() && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond) // the iam follows the link's hello; try regardless after 5 s
	}
	for _, id := range []string{victim.ID(), freshID(victim.Name())} {
		if _, err := dialAs(t, target, id, "wk", target.cfg.Key); !errors.Is(err, auth.ErrNotAllowed) {
			t.Fatalf("keyed worker wk presenting %s at %s: %v, want auth.ErrNotAllowed", id, target.Name(), err)
		}
	}
	if _, err := Call[Status](ctx, target, victim.Name(), StatusTopic, nil); err != nil {
		t.Fatalf("%s -> %s after the attempts: %v", target.Name(), victim.Name(), err)
	}
}
