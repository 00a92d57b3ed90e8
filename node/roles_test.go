package node

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/seed0811993b/conclave/auth"
)

// userCluster starts two members that require the cluster key and a user
// login, with workers w0 and w1, a client cli and a monitor mon in their
// store (password "pw-" + name).
func userCluster(t *testing.T) (nodes []*Node, users *auth.SCRAMServer) {
	t.Helper()
	creds := auth.CredentialMap{}
	for name, role := range map[string]string{"w0": auth.RoleWorker, "w1": auth.RoleWorker, "cli": auth.RoleClient, "mon": auth.RoleMonitor} {
		c, err := auth.NewCredential("pw-"+name, auth.MinSCRAMIterations, nil)
		if err != nil {
			t.Fatal(err)
		}
		c.Roles = []string{role}
		creds[name] = c
	}
	users, err := auth.NewSCRAMServer(creds, auth.SCRAMServerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	nodes = startCluster(t, 2, func(i int, c *Config) {
		c.Users, c.Require = users, auth.RequireKeyAndUser
		c.User = []string{"w0", "w1"}[i]
		c.Password = auth.Password("pw-" + c.User)
	})
	return nodes, users
}

// clientConfig is a client of n logging in as user.
func clientConfig(n *Node, name, user string) Config {
	c := testConfig(name)
	c.Connect = []string{n.LinkAddr()}
	c.User, c.Password = user, auth.Password("pw-"+user)
	return c
}

func TestRolesClient(t *testing.T) {
	nodes, _ := userCluster(t)
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
	nodes, _ := userCluster(t)
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

func TestRolesRefusedLogins(t *testing.T) {
	nodes, _ := userCluster(t)
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
	// A member logging in as a client-role user is refused a link.
	bad := testConfig("n9")
	bad.Join = []string{nodes[0].GossipAddr()}
	bad.User, bad.Password = "cli", "pw-cli"
	b := startNode(t, bad)
	short, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if err := nodes[0].WaitPeer(short, "n9"); err == nil {
		t.Fatal("a member logged in as a client got a link")
	}
	_ = b
}

// TestRolesKeylessClient: members hold the key (for the gossip) and log in
// as users; clients get only a password, so they cannot join the gossip at
// all, yet reach the members.
func TestRolesKeylessClient(t *testing.T) {
	creds := auth.CredentialMap{}
	for name, role := range map[string]string{"w0": auth.RoleWorker, "w1": auth.RoleWorker, "cli": auth.RoleClient} {
		c, err := auth.NewCredential("pw-"+name, auth.MinSCRAMIterations, nil)
		if err != nil {
			t.Fatal(err)
		}
		c.Roles = []string{role}
		creds[name] = c
	}
	users, err := auth.NewSCRAMServer(creds, auth.SCRAMServerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	nodes := startCluster(t, 2, func(i int, c *Config) {
		c.Users, c.Require = users, auth.RequireUser
		c.User = []string{"w0", "w1"}[i]
		c.Password = auth.Password("pw-" + c.User)
	})
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
