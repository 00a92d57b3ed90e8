package node

import (
	"context"
	"errors"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/seed0811993b/conclave/auth"
)

// userCluster starts two members that require the cluster key and a user
// login, with workers w0 and w1, a client cli and a monitor mon in their
// store (password "pw-" + name), and jobcli (a client on jobs.* but not
// jobs.admin) and workw (a worker on work.*).
func userCluster(t *testing.T) []*Node {
	t.Helper()
	creds := auth.CredentialMap{
		"w0": testCredential(t, "w0", auth.RoleWorker), "w1": testCredential(t, "w1", auth.RoleWorker),
		"cli": testCredential(t, "cli", auth.RoleClient), "mon": testCredential(t, "mon", auth.RoleMonitor),
		// Users with topic rules: a client limited to jobs, a worker to work.
		"jobcli": testCredential(t, "jobcli", auth.RoleClient, "jobs.*", "!jobs.admin"),
		"workw":  testCredential(t, "workw", auth.RoleWorker, "work.*"),
	}
	return usersCluster(t, creds, auth.RequireKeyAndUser)
}

// usersCluster starts members n0 and n1, logged in as w0 and w1 (password
// "pw-" + name), checking logins against lookup as require says.
func usersCluster(t *testing.T, lookup auth.CredentialLookup, require auth.Require) []*Node {
	t.Helper()
	return usersClusterWith(t, lookup, require, nil)
}

// usersClusterWith is usersCluster with mod, if not nil, adjusting each
// member's config.
func usersClusterWith(t *testing.T, lookup auth.CredentialLookup, require auth.Require, mod func(*Config)) []*Node {
	t.Helper()
	users := scramUsers(t, lookup)
	return startCluster(t, 2, func(i int, c *Config) {
		logInAs(c, users, []string{"w0", "w1"}[i], require)
		if mod != nil {
			mod(c)
		}
	})
}

// scramUsers is a SCRAM server over lookup.
func scramUsers(t *testing.T, lookup auth.CredentialLookup) *auth.SCRAMServer {
	t.Helper()
	users, err := auth.NewSCRAMServer(lookup, auth.SCRAMServerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return users
}

// logInAs makes c a member that checks logins against users as require
// says and logs in as user (password "pw-" + user).
func logInAs(c *Config, users *auth.SCRAMServer, user string, require auth.Require) {
	c.Users, c.Require = users, require
	c.User, c.Password = user, auth.Password("pw-"+user)
}

// memberCreds holds members w0 and w1 (role worker) and each of users,
// with the role given.
func memberCreds(t *testing.T, users map[string]string) auth.CredentialMap {
	t.Helper()
	creds := auth.CredentialMap{"w0": testCredential(t, "w0", auth.RoleWorker), "w1": testCredential(t, "w1", auth.RoleWorker)}
	for name, role := range users {
		creds[name] = testCredential(t, name, role)
	}
	return creds
}

// testCredential is user name's credential for password "pw-"+name, with
// one role and the given topic rules.
func testCredential(t *testing.T, name, role string, topics ...string) auth.Credential {
	t.Helper()
	c, err := auth.NewCredential("pw-"+name, auth.MinSCRAMIterations, nil)
	if err != nil {
		t.Fatal(err)
	}
	c.Roles, c.Topics = []string{role}, topics
	return c
}

// clientConfig is a client of n logging in as user.
func clientConfig(n *Node, name, user string) Config {
	c := testConfig(name)
	c.Connect = []string{n.LinkAddr()}
	c.User, c.Password = user, auth.Password("pw-"+user)
	return c
}

func TestRolesClient(t *testing.T) {
	nodes := userCluster(t)
	n0 := nodes[0]
	HandleFunc(n0, "echo", func(ctx context.Context, m *Msg, s string) (string, error) { return s, nil })
	cli := startNode(t, clientConfig(n0, "laptop", "cli"))
	ctx := testCtx(t, 10*time.Second)
	if err := cli.WaitPeer(ctx, "n0"); err != nil {
		t.Fatal(err)
	}
	if got, err := Call[string](ctx, cli, "n0", "echo", "hi"); err != nil || got != "hi" {
		t.Fatalf("a client's request: %q, %v", got, err)
	}
	if cli.GossipAddr() != "" {
		t.Fatal("a client joined the gossip")
	}
	if len(n0.Members()) != 2 {
		t.Fatalf("the client shows up as a member: %v", n0.Members())
	}
	// The members tell the client who it is; from then on it may not serve.
	waitFor(t, "the client to learn its roles", 5*time.Second, func() bool { return cli.selfIdentity.Load() != nil })
	if _, err := cli.Handle("steal", func(ctx context.Context, m *Msg) (any, error) { return nil, nil }); !errors.Is(err, ErrForbidden) {
		t.Fatalf("a client registered a handler: %v", err)
	}
	st, err := cli.Status(ctx, "n0")
	if err != nil || st.Name != "n0" || len(st.Members) != 2 {
		t.Fatalf("status %+v, %v", st, err)
	}
}

func TestRolesMonitor(t *testing.T) {
	nodes := userCluster(t)
	n0 := nodes[0]
	HandleFunc(n0, "echo", func(ctx context.Context, m *Msg, s string) (string, error) { return s, nil })
	var mu sync.Mutex
	var undelivered []Undelivered
	cfg := clientConfig(n0, "dashboard", "mon")
	cfg.Undeliverable = func(u Undelivered) { mu.Lock(); undelivered = append(undelivered, u); mu.Unlock() }
	mon := startNode(t, cfg)
	ctx := testCtx(t, 10*time.Second)
	if err := mon.WaitPeer(ctx, "n0"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the monitor to learn its roles", 5*time.Second, func() bool { return mon.selfIdentity.Load() != nil })
	if err := mon.Request(ctx, "n0", "echo", "x", nil); !errors.Is(err, ErrForbidden) {
		t.Fatalf("a monitor's request: %v, want ErrForbidden at once", err)
	}
	if err := mon.Send(ctx, "n0", "echo", "x"); !errors.Is(err, ErrForbidden) {
		t.Fatalf("a monitor's send: %v, want ErrForbidden at once", err)
	}
	// n0 enforces the roles itself, for a monitor that does not.
	mon.selfIdentity.Store(nil)
	err := mon.Request(ctx, "n0", "echo", "x", nil)
	var re *RemoteError
	if !errors.Is(err, ErrForbidden) || !errors.As(err, &re) || re.Node != "n0" {
		t.Fatalf("a monitor's request: %v", err)
	}
	if err := mon.Send(ctx, "n0", "echo", "x"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the denied send reported", 5*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(undelivered) == 1 && errors.Is(undelivered[0].Err, ErrForbidden)
	})
	if st, err := mon.Status(ctx, "n0"); err != nil || st.ID != n0.ID() {
		t.Fatalf("a monitor's status request: %+v, %v", st, err)
	}
}

// TestRolesTopicRules: a user's topic rules bind what it may send to and
// serve, both in its own node (which hears its rules from the members) and
// in the members, which enforce them whatever the client does.
func TestRolesTopicRules(t *testing.T) {
	nodes := userCluster(t)
	n0 := nodes[0]
	for _, topic := range []string{"jobs.run", "jobs.admin", "logs"} {
		HandleFunc(n0, topic, func(ctx context.Context, m *Msg, s string) (string, error) { return s, nil })
	}
	cli := startNode(t, clientConfig(n0, "laptop", "jobcli"))
	ctx := testCtx(t, 10*time.Second)
	if err := cli.WaitPeer(ctx, "n0"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the client to learn its rules", 5*time.Second, func() bool { return cli.selfIdentity.Load() != nil })
	if got, err := Call[string](ctx, cli, "n0", "jobs.run", "hi"); err != nil || got != "hi" {
		t.Fatalf("an allowed request: %q, %v", got, err)
	}
	for _, topic := range []string{"jobs.admin", "logs"} {
		if err := cli.Request(ctx, "n0", topic, "x", nil); !errors.Is(err, ErrForbidden) {
			t.Fatalf("request to %s: %v, want ErrForbidden at once", topic, err)
		}
		if err := cli.Send(ctx, "n0", topic, "x"); !errors.Is(err, ErrForbidden) {
			t.Fatalf("send to %s: %v, want ErrForbidden at once", topic, err)
		}
		if err := cli.Publish(ctx, topic, "x"); !errors.Is(err, ErrForbidden) {
			t.Fatalf("publish to %s: %v, want ErrForbidden at once", topic, err)
		}
	}
	if st, err := cli.Status(ctx, "n0"); err != nil || st.Name != "n0" {
		t.Fatalf("status, which topic rules do not limit: %+v, %v", st, err)
	}
	// The member enforces the rules itself: a client that forgets them
	// (a modified program) is refused by n0.
	cli.selfIdentity.Store(nil)
	err := cli.Request(ctx, "n0", "jobs.admin", "x", nil)
	var re *RemoteError
	if !errors.Is(err, ErrForbidden) || !errors.As(err, &re) || re.Node != "n0" || !strings.Contains(err.Error(), "jobs.*,!jobs.admin") {
		t.Fatalf("n0's answer to a forbidden request: %v", err)
	}

	// A worker limited to work.* may serve work.resize and nothing else.
	w := startNode(t, clientConfig(n0, "resizer", "workw"))
	if err := w.WaitPeer(ctx, "n0"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the worker to learn its rules", 5*time.Second, func() bool { return w.selfIdentity.Load() != nil })
	if _, err := w.Handle("logs.tail", func(ctx context.Context, m *Msg) (any, error) { return nil, nil }); !errors.Is(err, ErrForbidden) {
		t.Fatalf("a handler outside the rules: %v", err)
	}
	HandleFunc(w, "work.resize", func(ctx context.Context, m *Msg, s string) (string, error) { return "resized " + s, nil })
	w.selfIdentity.Store(nil) // again, n0 must refuse this by itself
	if _, err := w.Handle("logs.tail", func(ctx context.Context, m *Msg) (any, error) { return "stolen", nil }); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "n0 to route work.resize to the worker", 5*time.Second, func() bool {
		var got string
		err := n0.RequestAny(ctx, "work.resize", "img", &got)
		return err == nil && got == "resized img"
	})
	if err := n0.Request(ctx, "resizer", "logs.tail", nil, nil); !errors.Is(err, ErrForbidden) {
		t.Fatalf("n0's request to a handler its user may not serve: %v", err)
	}
	if err := n0.RequestAny(ctx, "logs.tail", nil, nil); !errors.Is(err, ErrNoResponders) {
		t.Fatalf("n0 routed to a handler its user may not serve: %v", err)
	}
}

func TestRolesRefusedLogins(t *testing.T) {
	nodes := userCluster(t)
	ctx := testCtx(t, 10*time.Second)
	wrong := clientConfig(nodes[0], "laptop", "cli")
	wrong.Password = "nope"
	if _, err := Start(ctx, wrong); !errors.Is(err, auth.ErrAuthFailed) {
		t.Fatalf("wrong password: %v", err)
	}
	keyless := clientConfig(nodes[0], "laptop", "cli")
	keyless.Key = nil // proves the user only; these members want the key too
	if _, err := Start(ctx, keyless); !errors.Is(err, auth.ErrAuthFailed) {
		t.Fatalf("no key: %v", err)
	}
	// A member checks its own login against its store before it joins.
	member := func(user string, pw auth.Password) Config {
		c := testConfig("n8")
		c.Join = []string{nodes[0].GossipAddr()}
		c.Users, c.Require = nodes[0].cfg.Users, auth.RequireKeyAndUser
		c.User, c.Password = user, pw
		return c
	}
	if _, err := Start(ctx, member("w0", "wrong")); !errors.Is(err, auth.ErrAuthFailed) || !strings.Contains(err.Error(), "own credential store") {
		t.Fatalf("a member with a wrong password: %v", err)
	}
	if _, err := Start(ctx, member("cli", "pw-cli")); !errors.Is(err, ErrForbidden) || !strings.Contains(err.Error(), "Config.Connect") {
		t.Fatalf("a member logging in as a client: %v", err)
	}
	if _, err := Start(ctx, member("", "")); err == nil || !strings.Contains(err.Error(), "set Config.User") {
		t.Fatalf("a member that asks for logins without logging in: %v", err)
	}
	// A member logging in as a client-role user is refused a link.
	bad := testConfig("n9")
	bad.Join = []string{nodes[0].GossipAddr()}
	bad.User, bad.Password = "cli", "pw-cli"
	// Start fails, with the reason: the members refuse it inside the
	// handshake.
	if _, err := Start(ctx, bad); !errors.Is(err, ErrForbidden) || !errors.Is(err, auth.ErrNotAllowed) {
		t.Fatalf("a member logging in as a client: %v, want ErrForbidden and auth.ErrNotAllowed", err)
	}
	short, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if err := nodes[0].WaitPeer(short, "n9"); err == nil {
		t.Fatal("a member logged in as a client got a link")
	}
	// Gossip carried it, but no member counts it as one.
	for _, n := range nodes {
		for _, m := range n.Members() {
			if m.Name == "n9" {
				t.Fatalf("%s lists the refused process as a member: %v", n.Name(), n.Members())
			}
		}
	}
}

// TestRolesKeylessClient: members hold the key (for the gossip) and log in
// as users; clients get only a password, so they cannot join the gossip at
// all, yet reach the members.
func TestRolesKeylessClient(t *testing.T) {
	creds := auth.CredentialMap{
		"w0": testCredential(t, "w0", auth.RoleWorker), "w1": testCredential(t, "w1", auth.RoleWorker),
		"cli": testCredential(t, "cli", auth.RoleClient),
	}
	nodes := usersCluster(t, creds, auth.RequireUser)
	HandleFunc(nodes[0], "echo", func(ctx context.Context, m *Msg, s string) (string, error) { return s, nil })
	cfg := clientConfig(nodes[0], "laptop", "cli")
	cfg.Key = nil
	cli := startNode(t, cfg)
	ctx := testCtx(t, 10*time.Second)
	if got, err := Call[string](ctx, cli, "n0", "echo", "no key"); err != nil || got != "no key" {
		t.Fatalf("a keyless client's request: %q, %v", got, err)
	}
	// Without the key there is no gossip to join.
	member := testConfig("n9")
	member.Key = nil
	member.Join = []string{nodes[0].GossipAddr()}
	member.User, member.Password = "cli", "pw-cli"
	if _, err := Start(ctx, member); err == nil {
		t.Fatal("a process without the key joined the gossip")
	}
}

// TestRolesStoreChanges: the members apply changes to their credential
// store to the sessions already open: new roles or topic rules bind at
// once, a deleted user is cut off.
func TestRolesStoreChanges(t *testing.T) {
	store, err := auth.CreateStore(filepath.Join(t.TempDir(), "users"))
	if err != nil {
		t.Fatal(err)
	}
	for name, role := range map[string]string{"w0": auth.RoleWorker, "w1": auth.RoleWorker, "op": auth.RoleClient, "wk": auth.RoleWorker} {
		if err := store.Add(name, testCredential(t, name, role)); err != nil {
			t.Fatal(err)
		}
	}
	nodes := usersCluster(t, store, auth.RequireKeyAndUser)
	n0 := nodes[0]
	for _, topic := range []string{"echo", "jobs.x"} {
		HandleFunc(n0, topic, func(ctx context.Context, m *Msg, s string) (string, error) { return s, nil })
	}
	ctx := testCtx(t, 20*time.Second)
	cli := startNode(t, clientConfig(n0, "laptop", "op"))
	wk := startNode(t, clientConfig(n0, "resizer", "wk"))
	for _, c := range []*Node{cli, wk} {
		if err := c.WaitPeer(ctx, "n0"); err != nil {
			t.Fatal(err)
		}
	}
	HandleFunc(wk, "work.a", func(ctx context.Context, m *Msg, s string) (string, error) { return "done " + s, nil })
	waitFor(t, "n0 to route work.a to the worker", 5*time.Second, func() bool {
		var got string
		return n0.RequestAny(ctx, "work.a", "x", &got) == nil && got == "done x"
	})
	if got, err := Call[string](ctx, cli, "n0", "echo", "hi"); err != nil || got != "hi" {
		t.Fatalf("before the change: %q, %v", got, err)
	}

	setTopics := func(user string, rules auth.TopicRules) {
		t.Helper()
		if err := store.Update(user, func(c auth.Credential) (auth.Credential, error) { c.Topics = rules; return c, nil }); err != nil {
			t.Fatal(err)
		}
	}
	setTopics("op", auth.TopicRules{"jobs.*"})
	setTopics("wk", auth.TopicRules{"other.*"})
	waitFor(t, "the client's new topic rules to bind", 5*time.Second, func() bool {
		return errors.Is(cli.Request(ctx, "n0", "echo", "x", nil), ErrForbidden)
	})
	if got, err := Call[string](ctx, cli, "n0", "jobs.x", "ok"); err != nil || got != "ok" {
		t.Fatalf("an allowed topic after the change: %q, %v", got, err)
	}
	waitFor(t, "n0 to forget the worker's handler", 5*time.Second, func() bool {
		return errors.Is(n0.RequestAny(ctx, "work.a", "x", nil), ErrNoResponders)
	})

	if err := store.Delete("op"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "n0 to drop the deleted user's peer", 15*time.Second, func() bool {
		_, err := n0.lookup("laptop", StatusTopic)
		return errors.Is(err, ErrUnknownNode)
	})
	// The client hears it too: its redial is refused, and n0 ends for it.
	waitFor(t, "the client to give n0 up", 10*time.Second, func() bool {
		_, err := cli.lookup("n0", StatusTopic)
		return err != nil
	})
	err = cli.Request(ctx, "n0", "jobs.x", "x", nil)
	var pe *PeerError
	if !errors.Is(err, ErrUnknownNode) && !(errors.As(err, &pe) && errors.Is(err, auth.ErrAuthFailed) && errors.Is(err, ErrPeerFailed)) {
		t.Fatalf("a deleted user's request: %v", err)
	}
}

// TestRolesMemberFoundLate: a process logged in as a client-role user
// whose dial reached a member before gossip said it is a member (so it
// was taken for a client) is refused as soon as gossip says so, and its
// next dial is refused inside the handshake.
func TestRolesMemberFoundLate(t *testing.T) {
	nodes := userCluster(t)
	n0 := nodes[0]
	cli := startNode(t, clientConfig(n0, "sneaky", "cli"))
	ctx := testCtx(t, 10*time.Second)
	if err := cli.WaitPeer(ctx, "n0"); err != nil {
		t.Fatal(err)
	}
	evs := cli.Events()
	// What gossip would report if the process had also joined it.
	name, boot, _ := splitID(cli.ID())
	n0.onDisco(discoEvent{Kind: discoJoin, Member: memberInfo{ID: cli.ID(), Name: name, Boot: boot}})
	if _, err := n0.lookup("sneaky", StatusTopic); err == nil {
		t.Fatal("n0 still has the refused process as a live peer")
	}
	for _, m := range n0.Members() {
		if m.Name == "sneaky" {
			t.Fatalf("n0 lists the refused process as a member: %v", n0.Members())
		}
	}
	timeout := time.After(8 * time.Second)
	for {
		var ev Event
		select {
		case ev = <-evs:
		case <-timeout:
			t.Fatal("the refused process never reported n0 failed")
		}
		if ev.Kind == EventFailed && ev.Member.Name == "n0" {
			if !errors.Is(ev.Err, ErrForbidden) || !errors.Is(ev.Err, auth.ErrNotAllowed) {
				t.Fatalf("the refused process failed n0 with %v", ev.Err)
			}
			return
		}
	}
}

// TestMemberLoginRefusedOrLimited: a member without the credential store
// (it cannot check its own login) that joins with a wrong password fails
// Start with the members' answer; once the members' rate limit for its user
// is reached, Start fails at once with that reason, the right password
// included, instead of starting as a member nobody will talk to.
func TestMemberLoginRefusedOrLimited(t *testing.T) {
	creds := auth.CredentialMap{
		"w0": testCredential(t, "w0", auth.RoleWorker), "w1": testCredential(t, "w1", auth.RoleWorker),
		"w2": testCredential(t, "w2", auth.RoleWorker),
	}
	users, err := auth.NewSCRAMServer(creds, auth.SCRAMServerOptions{
		RateLimit: auth.SCRAMRateLimit{UserBurst: 2, UserInterval: time.Hour}})
	if err != nil {
		t.Fatal(err)
	}
	nodes := startCluster(t, 2, func(i int, c *Config) {
		c.Users, c.Require = users, auth.RequireKeyAndUser
		c.User = []string{"w0", "w1"}[i]
		c.Password = auth.Password("pw-" + c.User)
	})
	ctx := testCtx(t, 30*time.Second)
	start := func(pw auth.Password) error {
		c := testConfig("n7")
		c.Join = []string{nodes[0].GossipAddr()}
		c.User, c.Password = "w2", pw
		n, err := Start(ctx, c)
		if n != nil {
			n.Close()
		}
		return err
	}
	// Two members, two failures: the burst is spent.
	if err := start("wrong"); !errors.Is(err, auth.ErrAuthFailed) || errors.Is(err, auth.ErrSCRAMRateLimited) {
		t.Fatalf("a wrong password: %v, want auth.ErrAuthFailed", err)
	}
	for _, pw := range []auth.Password{"wrong", "pw-w2"} {
		if err := start(pw); !errors.Is(err, auth.ErrSCRAMRateLimited) {
			t.Fatalf("password %q once the limit is reached: %v, want auth.ErrSCRAMRateLimited", string(pw), err)
		}
	}
}

// A client may name a member's link address by host name, as a user types
// it (conclave status -connect localhost:PORT).
func TestClientConnectsByHostName(t *testing.T) {
	nodes := startCluster(t, 1, nil)
	_, port, err := net.SplitHostPort(nodes[0].LinkAddr())
	if err != nil {
		t.Fatal(err)
	}
	c := testConfig("laptop")
	c.Connect = []string{net.JoinHostPort("localhost", port)}
	cli := startNode(t, c)
	ctx := testCtx(t, 10*time.Second)
	if err := cli.WaitPeer(ctx, "n0"); err != nil {
		t.Fatal(err)
	}
}
