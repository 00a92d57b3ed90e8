package main

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/seed0811993b/conclave/auth"
	"github.com/seed0811993b/conclave/node"
)

// statusCluster starts two members n0 and n1 that hold the cluster key
// (written to the returned key file) and take user logins without it
// (auth.RequireUser); the store has workers w0, w1 and monitor mon, each
// with password "pw-" + name.
func statusCluster(t *testing.T) (nodes []*node.Node, keyFile string) {
	t.Helper()
	dir := t.TempDir()
	keyFile = filepath.Join(dir, "cluster.key")
	key, err := auth.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := auth.WriteKeyFile(keyFile, key); err != nil {
		t.Fatal(err)
	}
	store, err := auth.CreateStore(filepath.Join(dir, "users"))
	if err != nil {
		t.Fatal(err)
	}
	for name, role := range map[string]string{"w0": auth.RoleWorker, "w1": auth.RoleWorker, "mon": auth.RoleMonitor} {
		c, err := auth.NewCredential("pw-"+name, auth.MinSCRAMIterations, nil)
		if err != nil {
			t.Fatal(err)
		}
		c.Roles = []string{role}
		if err := store.Add(name, c); err != nil {
			t.Fatal(err)
		}
	}
	users, err := auth.NewSCRAMServer(store, auth.SCRAMServerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i, name := range []string{"n0", "n1"} {
		cfg := node.Config{Name: name, Key: key, Cluster: "status-test", Gossip: node.GossipFast,
			Users: users, Require: auth.RequireUser, User: "w" + name[1:], Password: auth.Password("pw-w" + name[1:])}
		if i > 0 {
			cfg.Join = []string{nodes[0].GossipAddr()}
		}
		n, err := node.Start(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { n.Close() })
		nodes = append(nodes, n)
	}
	if err := nodes[0].WaitPeer(ctx, "n1"); err != nil {
		t.Fatal(err)
	}
	return nodes, keyFile
}

func runStatus(t *testing.T, password string, args ...string) (string, error) {
	t.Helper()
	var out, errOut strings.Builder
	err := statusCommand(context.Background(), args, strings.NewReader(password), &out, &errOut)
	if password != "" && strings.Contains(out.String()+errOut.String(), strings.TrimSpace(password)) {
		t.Fatal("status printed the password")
	}
	return out.String(), err
}

func TestStatus(t *testing.T) {
	nodes, keyFile := statusCluster(t)
	addr := nodes[0].LinkAddr()

	// A monitor, with a password and no key: the table.
	out, err := runStatus(t, "pw-mon\n", "-connect", addr, "-user", "mon")
	if err != nil {
		t.Fatalf("status: %v", err)
	}
	for _, want := range []string{"node n0 (" + nodes[0].ID() + "): 2 members", "MEMBER", nodes[1].ID(), "PEER", "n1 "} {
		if !strings.Contains(out, want) {
			t.Errorf("status output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "conclave-status-") {
		t.Errorf("status lists its own connection:\n%s", out)
	}

	// JSON, with the key as well.
	out, err = runStatus(t, "pw-mon\n", "-json", "-connect", addr, "-key", keyFile, "-user", "mon")
	if err != nil {
		t.Fatalf("status -json: %v", err)
	}
	var st node.Status
	if err := json.Unmarshal([]byte(out), &st); err != nil || st.Name != "n0" || len(st.Members) != 2 || len(st.Peers) != 1 || st.Peers[0].Name != "n1" {
		t.Fatalf("status -json: %+v, %v\n%s", st, err, out)
	}

	// Refusals.
	_, err = runStatus(t, "nope\n", "-connect", addr, "-user", "mon")
	if !errors.Is(err, auth.ErrAuthFailed) || exitStatus(err) != 1 {
		t.Fatalf("wrong password: %v", err)
	}
	for _, args := range [][]string{{}, {"-connect", addr}, {"-connect", addr, "-user", "mon", "extra"}, {"-connect", addr, "-user", "9x"}, {"-bogus"}} {
		_, err := runStatus(t, "", args...)
		wantError(t, err, 2, "status")
	}
	if out, err := runStatus(t, "", "-h"); err != nil || !strings.HasPrefix(out, "usage: conclave status") {
		t.Fatalf("status -h: %q, %v", out, err)
	}
}
