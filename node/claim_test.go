package node

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/seed0811993b/conclave/auth"
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
	creds := auth.CredentialMap{
		"w0": testCredential(t, "w0", auth.RoleWorker), "w1": testCredential(t, "w1", auth.RoleWorker),
		"mon": testCredential(t, "mon", auth.RoleMonitor), "wk": testCredential(t, "wk", auth.RoleWorker),
	}
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
	creds := auth.CredentialMap{
		"w0": testCredential(t, "w0", auth.RoleWorker), "w1": testCredential(t, "w1", auth.RoleWorker),
		"mon": testCredential(t, "mon", auth.RoleMonitor), "cli": testCredential(t, "cli", auth.RoleClient),
	}
	users, err := auth.NewSCRAMServer(creds, auth.SCRAMServerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	const max = 8
	nodes := startCluster(t, 2, func(i int, c *Config) {
		c.Users, c.Require, c.MaxClientsPerUser = users, auth.RequireUser, max
		c.User = []string{"w0", "w1"}[i]
		c.Password = auth.Password("pw-" + c.User)
	})
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
	n0.mu.Lock()
	peers := len(n0.byID)
	n0.mu.Unlock()
	if peers != 1+max+1 {
		t.Fatalf("n0 has %d peers, want n1, %d of mon's and cli's", peers, max)
	}
}
