package main

import (
	"context"
	"encoding/base64"
	"errors"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/seed0811993b/conclave/auth"
)

// testIterations keeps the tests' PBKDF2 cheap.
const testIterations = "4096"

// runUser runs `conclave user ARGS` in this process with stdin as its input.
func runUser(t *testing.T, stdin io.Reader, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errOut strings.Builder
	err = userCommand(context.Background(), args, stdin, &out, &errOut)
	return out.String(), errOut.String(), err
}

// mustUser runs `conclave user ARGS` with password as stdin and fails the
// test on error.
func mustUser(t *testing.T, password string, args ...string) string {
	t.Helper()
	out, errOut, err := runUser(t, strings.NewReader(password), args...)
	if err != nil {
		t.Fatalf("conclave user %s: %v\nstderr: %s", strings.Join(args, " "), err, errOut)
	}
	if password != "" && (strings.Contains(out, strings.TrimSpace(password)) || strings.Contains(errOut, strings.TrimSpace(password))) {
		t.Fatalf("conclave user %s printed the password", strings.Join(args, " "))
	}
	return out
}

// exitStatus is the status main exits with for err.
func exitStatus(err error) int {
	if err == nil {
		return 0
	}
	var e interface{ exitStatus() int }
	if errors.As(err, &e) {
		return e.exitStatus()
	}
	return 1
}

// wantError checks that err is an error with exit status code whose text
// matches every one of res.
func wantError(t *testing.T, err error, code int, res ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want one matching %q", res)
	}
	if got := exitStatus(err); got != code {
		t.Errorf("exit status %d, want %d (%v)", got, code, err)
	}
	if strings.Contains(err.Error(), "\n") {
		t.Errorf("error is more than one line: %q", err)
	}
	for _, re := range res {
		if !regexp.MustCompile(re).MatchString(err.Error()) {
			t.Errorf("error %q does not match %s", err, re)
		}
	}
}

// login runs a whole SCRAM login of user with password against the store at
// path, read afresh.
func login(t *testing.T, path, user, password string) error {
	t.Helper()
	store, err := auth.OpenStore(path)
	if err != nil {
		t.Fatal(err)
	}
	server, err := auth.NewSCRAMServer(store, auth.SCRAMServerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = server.Authenticate(user, password)
	return err
}

func lookup(t *testing.T, path, user string) (auth.Credential, bool) {
	t.Helper()
	store, err := auth.OpenStore(path)
	if err != nil {
		t.Fatal(err)
	}
	return store.LookupCredential(user)
}

func TestUserAdd(t *testing.T) {
	path := filepath.Join(t.TempDir(), "users")
	out := mustUser(t, "correct horse battery\n", "-store", path, "add", "alice", "-roles", "admin,worker", "-iterations", testIterations)
	if want := "conclave: added user alice (roles admin,worker, 4096 iterations) to " + path + "\n"; out != want {
		t.Errorf("stdout %q, want %q", out, want)
	}
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm() != 0o600 {
		t.Errorf("store mode %04o, want 0600", info.Mode().Perm())
	}
	data, _ := os.ReadFile(path)
	if strings.Contains(string(data), "correct horse") {
		t.Fatal("the store holds the password")
	}
	cred, ok := lookup(t, path, "alice")
	if !ok {
		t.Fatal("alice is not in the store")
	}
	if cred.Iterations != 4096 || strings.Join(cred.Roles, ",") != "admin,worker" {
		t.Errorf("credential %v, want 4096 iterations and roles admin,worker", cred)
	}
	if err := login(t, path, "alice", "correct horse battery"); err != nil {
		t.Errorf("login with the password: %v", err)
	}
	if err := login(t, path, "alice", "correct horse"); !errors.Is(err, auth.ErrSCRAMAuth) {
		t.Errorf("login with a wrong password: %v, want ErrSCRAMAuth", err)
	}

	// Flags before NAME, -store after the command, and a last line without
	// a newline; a second user goes to the same file.
	mustUser(t, "pipeline pw", "add", "-iterations", testIterations, "-roles", "client", "-store", path, "bob")
	if err := login(t, path, "bob", "pipeline pw"); err != nil {
		t.Errorf("bob's login: %v", err)
	}
	if err := login(t, path, "alice", "correct horse battery"); err != nil {
		t.Errorf("alice's login after adding bob: %v", err)
	}
}

// TestUserAddDefaults checks the defaults: 600 000 iterations, role worker,
// and the store from $CONCLAVE_USERS_FILE.
func TestUserAddDefaults(t *testing.T) {
	path := filepath.Join(t.TempDir(), "users")
	t.Setenv(usersFileEnv, path)
	mustUser(t, "s3cret\n", "add", "carol")
	cred, ok := lookup(t, path, "carol")
	if !ok {
		t.Fatal("carol is not in the store")
	}
	if cred.Iterations != 600_000 {
		t.Errorf("default iterations %d, want 600000", cred.Iterations)
	}
	if strings.Join(cred.Roles, ",") != auth.RoleWorker {
		t.Errorf("default roles %q, want worker", cred.Roles)
	}
	// -roles "" gives none.
	mustUser(t, "s3cret\n", "add", "-roles", "", "-iterations", testIterations, "dave")
	if cred, _ := lookup(t, path, "dave"); len(cred.Roles) != 0 {
		t.Errorf("-roles \"\": roles %q", cred.Roles)
	}
}

// failReader fails the test if the command reads a password it should not
// ask for.
type failReader struct{ t *testing.T }

func (r failReader) Read([]byte) (int, error) {
	r.t.Error("the command read stdin")
	return 0, io.EOF
}

func TestUserAddDuplicate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "users")
	mustUser(t, "first\n", "-store", path, "add", "alice", "-iterations", testIterations)
	before, _ := os.ReadFile(path)
	_, _, err := runUser(t, failReader{t}, "-store", path, "add", "alice", "-iterations", testIterations)
	wantError(t, err, 1, `user "alice" already exists in `+regexp.QuoteMeta(path), "conclave user passwd alice")
	if after, _ := os.ReadFile(path); string(after) != string(before) {
		t.Error("a failed add changed the store")
	}
	if err := login(t, path, "alice", "first"); err != nil {
		t.Errorf("the first password no longer works: %v", err)
	}
}

func TestUserList(t *testing.T) {
	path := filepath.Join(t.TempDir(), "users")
	mustUser(t, "pw1\n", "-store", path, "add", "zoe", "-roles", "monitor", "-iterations", testIterations)
	mustUser(t, "pw2\n", "-store", path, "add", "adam", "-roles", "admin,client", "-topics", "jobs.*,!jobs.admin", "-iterations", "5000")
	mustUser(t, "pw3\n", "-store", path, "add", "nobody", "-roles", "", "-iterations", testIterations)
	// Through run, as main calls it: list reads no stdin.
	var stdout, stderr strings.Builder
	if err := run(context.Background(), []string{"user", "-store", path, "list"}, &stdout, &stderr); err != nil {
		t.Fatalf("list: %v\n%s", err, stderr.String())
	}
	want := "NAME    ROLES         TOPICS              ITERATIONS\n" +
		"adam    admin,client  jobs.*,!jobs.admin  5000\n" +
		"nobody  -             *                   4096\n" +
		"zoe     monitor       *                   4096\n"
	if stdout.String() != want {
		t.Errorf("list printed\n%s\nwant\n%s", stdout.String(), want)
	}
	store, _ := auth.OpenStore(path)
	for _, u := range store.List() {
		c := u.Credential
		for _, secret := range [][]byte{c.StoredKey, c.ServerKey, c.Salt} {
			if strings.Contains(stdout.String(), base64.StdEncoding.EncodeToString(secret)) {
				t.Fatalf("list printed %s's key material", u.Name)
			}
		}
	}

	// An empty store lists nothing on stdout and says so on stderr.
	empty := filepath.Join(t.TempDir(), "empty")
	if _, err := auth.CreateStore(empty); err != nil {
		t.Fatal(err)
	}
	out, errOut, err := runUser(t, failReader{t}, "-store", empty, "list")
	if err != nil || out != "" || !strings.Contains(errOut, "no users in "+empty) {
		t.Errorf("list of an empty store: %v, stdout %q, stderr %q", err, out, errOut)
	}
}

func TestUserPasswd(t *testing.T) {
	path := filepath.Join(t.TempDir(), "users")
	mustUser(t, "old password\n", "-store", path, "add", "alice", "-roles", "worker,monitor", "-iterations", testIterations)
	mustUser(t, "bob's\n", "-store", path, "add", "bob", "-iterations", testIterations)
	out := mustUser(t, "new password\n", "-store", path, "passwd", "alice", "-iterations", "5000")
	if want := "conclave: changed the password of alice (roles worker,monitor, 5000 iterations) in " + path + "\n"; out != want {
		t.Errorf("stdout %q, want %q", out, want)
	}
	if err := login(t, path, "alice", "old password"); !errors.Is(err, auth.ErrSCRAMAuth) {
		t.Errorf("login with the old password: %v, want ErrSCRAMAuth", err)
	}
	if err := login(t, path, "alice", "new password"); err != nil {
		t.Errorf("login with the new password: %v", err)
	}
	cred, _ := lookup(t, path, "alice")
	if strings.Join(cred.Roles, ",") != "worker,monitor" || cred.Iterations != 5000 {
		t.Errorf("after passwd: %v, want roles worker,monitor and 5000 iterations", cred)
	}
	if err := login(t, path, "bob", "bob's"); err != nil {
		t.Errorf("bob's login after alice's passwd: %v", err)
	}

	_, _, err := runUser(t, failReader{t}, "-store", path, "passwd", "carol", "-iterations", testIterations)
	wantError(t, err, 1, `no user "carol" in `+regexp.QuoteMeta(path))
}

func TestUserDel(t *testing.T) {
	path := filepath.Join(t.TempDir(), "users")
	mustUser(t, "pw\n", "-store", path, "add", "alice", "-iterations", testIterations)
	mustUser(t, "pw\n", "-store", path, "add", "bob", "-iterations", testIterations)
	out := mustUser(t, "", "-store", path, "del", "alice")
	if want := "conclave: deleted user alice from " + path + "\n"; out != want {
		t.Errorf("stdout %q, want %q", out, want)
	}
	if _, ok := lookup(t, path, "alice"); ok {
		t.Error("alice is still in the store")
	}
	if err := login(t, path, "alice", "pw"); !errors.Is(err, auth.ErrSCRAMAuth) {
		t.Errorf("deleted user's login: %v, want ErrSCRAMAuth", err)
	}
	if _, ok := lookup(t, path, "bob"); !ok {
		t.Error("del removed bob too")
	}
	_, _, err := runUser(t, failReader{t}, "-store", path, "del", "alice")
	wantError(t, err, 1, `no user "alice" in `+regexp.QuoteMeta(path))
}

// TestUserBadArguments checks command lines refused before anything is read
// or written: exit status 2.
func TestUserBadArguments(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "users")
	t.Setenv(usersFileEnv, "")
	for _, c := range []struct {
		args []string
		re   []string
	}{
		{[]string{}, []string{`no command`}},
		{[]string{"-store", path, "frob"}, []string{`unknown command "frob"`}},
		{[]string{"-store", path, "add"}, []string{`usage: conclave user \[-store FILE\] add NAME`}},
		{[]string{"-store", path, "add", "a", "b"}, []string{`usage: conclave user`}},
		{[]string{"-store", path, "list", "x"}, []string{`usage: conclave user \[-store FILE\] list`}},
		{[]string{"-store", path, "del"}, []string{`del NAME`}},
		{[]string{"-store", path, "add", "alice", "-bogus"}, []string{`-bogus`, `conclave user -h`}},
		{[]string{"-store", path, "add", "alice", "-roles", "admin,root"}, []string{`unknown role "root"`, `admin, worker, client, monitor`}},
		{[]string{"-store", path, "add", "alice", "-roles", "worker,worker"}, []string{`"worker" listed twice`}},
		{[]string{"-store", path, "add", "alice", "-iterations", "1000"}, []string{`-iterations 1000: want 4096 to 10000000`}},
		{[]string{"-store", path, "add", "alice", "-topics", "jobs*x"}, []string{`-topics: auth: bad topic rule "jobs\*x"`}},
		{[]string{"-store", path, "topics", "alice"}, []string{`usage: conclave user \[-store FILE\] topics NAME RULES`}},
		{[]string{"-store", path, "passwd", "alice", "-iterations", "x"}, []string{`invalid value "x"`}},
		{[]string{"-store", path, "add", "9lives"}, []string{`invalid user name`}},
		{[]string{"-store", path, "add", "a:b"}, []string{`invalid user name`}},
		{[]string{"add", "alice"}, []string{`no credential store: pass -store FILE or set CONCLAVE_USERS_FILE`, "conclave user -store FILE add NAME"}},
		{[]string{"list"}, []string{`no credential store`}},
	} {
		_, _, err := runUser(t, failReader{t}, c.args...)
		wantError(t, err, 2, c.re...)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("refused command lines left files: %v", entries)
	}
	for _, args := range [][]string{{"-h"}, {"help"}, {"add", "-h"}} {
		out, _, err := runUser(t, failReader{t}, args...)
		if err != nil || !strings.HasPrefix(out, "usage: conclave user") {
			t.Errorf("user %s: %v, stdout %q", strings.Join(args, " "), err, out)
		}
	}
}

func TestUserBadPassword(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "users")
	for _, c := range []struct{ stdin, re string }{
		{"", `no password: end of input on stdin`},
		{"\n", `empty password refused`},
		{"pw\r\n", `carriage return`},
		{strings.Repeat("x", maxPasswordLen+1) + "\n", `password longer than 1024 bytes`},
	} {
		_, _, err := runUser(t, strings.NewReader(c.stdin), "-store", path, "add", "alice", "-iterations", testIterations)
		wantError(t, err, 1, c.re)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a refused password left a store behind: %v", err)
	}
	// The same for passwd, which keeps the old password.
	mustUser(t, "kept\n", "-store", path, "add", "alice", "-iterations", testIterations)
	_, _, err := runUser(t, strings.NewReader("\n"), "-store", path, "passwd", "alice", "-iterations", testIterations)
	wantError(t, err, 1, `empty password refused`)
	if err := login(t, path, "alice", "kept"); err != nil {
		t.Errorf("the password changed after a refused passwd: %v", err)
	}
	// Only the first line is the password, and only its '\n' is stripped.
	mustUser(t, " spaced pw \nsecond line\n", "-store", path, "passwd", "alice", "-iterations", testIterations)
	if err := login(t, path, "alice", " spaced pw "); err != nil {
		t.Errorf("login with the spaces kept: %v", err)
	}
}

func TestUserMissingStore(t *testing.T) {
	path := filepath.Join(t.TempDir(), "users")
	for _, args := range [][]string{{"list"}, {"del", "alice"}, {"passwd", "alice"}} {
		_, _, err := runUser(t, failReader{t}, append([]string{"-store", path}, args...)...)
		wantError(t, err, 1, `no credential store `+regexp.QuoteMeta(path)+`: the file does not exist`,
			"`conclave user -store "+regexp.QuoteMeta(path)+" add NAME` creates it")
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("list, del or passwd created the store: %v", err)
	}
	// add does not create a store in a directory that is not there.
	missing := filepath.Join(t.TempDir(), "no", "users")
	_, _, err := runUser(t, failReader{t}, "-store", missing, "add", "alice")
	wantError(t, err, 1, `cannot create the credential store .*: .* is not a directory`)
}

func TestUserGroupReadableStore(t *testing.T) {
	path := filepath.Join(t.TempDir(), "users")
	mustUser(t, "pw\n", "-store", path, "add", "alice", "-iterations", testIterations)
	if err := os.Chmod(path, 0o640); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"list"}, {"del", "alice"}, {"passwd", "alice"}, {"add", "bob"}} {
		_, _, err := runUser(t, failReader{t}, append([]string{"-store", path}, args...)...)
		wantError(t, err, 1, `mode 0640, readable or writable by group or others`, "chmod 600")
	}
	if _, ok := func() (auth.Credential, bool) {
		_ = os.Chmod(path, 0o600)
		return lookup(t, path, "alice")
	}(); !ok {
		t.Error("a refused del removed alice")
	}
}

// TestUserInterrupted checks that Ctrl-C (main's ctx) stops a read from a
// pipe that never ends, with status 130 and nothing written.
func TestUserInterrupted(t *testing.T) {
	path := filepath.Join(t.TempDir(), "users")
	r, w := io.Pipe()
	defer w.Close()
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		errc <- userCommand(ctx, []string{"-store", path, "add", "alice"}, r, io.Discard, io.Discard)
	}()
	cancel()
	wantError(t, <-errc, 130, `interrupted; nothing changed`)
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("an interrupted add left a store: %v", err)
	}
}

func TestUserRoles(t *testing.T) {
	path := filepath.Join(t.TempDir(), "users")
	mustUser(t, "pw\n", "-store", path, "add", "alice", "-roles", "worker", "-iterations", testIterations)
	out := mustUser(t, "", "-store", path, "roles", "alice", "admin,monitor")
	if want := "conclave: alice now has roles admin,monitor in " + path + "\n"; out != want {
		t.Errorf("stdout %q, want %q", out, want)
	}
	cred, _ := lookup(t, path, "alice")
	if strings.Join(cred.Roles, ",") != "admin,monitor" {
		t.Errorf("roles %v", cred.Roles)
	}
	if err := login(t, path, "alice", "pw"); err != nil {
		t.Errorf("the password changed with the roles: %v", err)
	}
	_, _, err := runUser(t, failReader{t}, "-store", path, "roles", "alice", "root")
	wantError(t, err, 2, "roles: ")
	_, _, err = runUser(t, failReader{t}, "-store", path, "roles", "carol", "worker")
	wantError(t, err, 1, `no user "carol" in `+regexp.QuoteMeta(path))
	_, _, err = runUser(t, failReader{t}, "-store", path, "roles", "alice")
	wantError(t, err, 2, "usage: conclave user")
}

func TestUserTopics(t *testing.T) {
	path := filepath.Join(t.TempDir(), "users")
	out := mustUser(t, "pw\n", "-store", path, "add", "alice", "-roles", "client", "-topics", "jobs.*", "-iterations", testIterations)
	if want := "conclave: added user alice (roles client, topics jobs.*, 4096 iterations) to " + path + "\n"; out != want {
		t.Errorf("stdout %q, want %q", out, want)
	}
	out = mustUser(t, "", "-store", path, "topics", "alice", "jobs.*,!jobs.admin")
	if want := "conclave: alice may now use topics jobs.*,!jobs.admin in " + path + "\n"; out != want {
		t.Errorf("stdout %q, want %q", out, want)
	}
	cred, _ := lookup(t, path, "alice")
	if cred.Topics.String() != "jobs.*,!jobs.admin" || strings.Join(cred.Roles, ",") != "client" {
		t.Errorf("after topics: %v", cred)
	}
	// passwd keeps the rules; topics "" lifts them.
	mustUser(t, "pw2\n", "-store", path, "passwd", "alice", "-iterations", testIterations)
	if cred, _ := lookup(t, path, "alice"); cred.Topics.String() != "jobs.*,!jobs.admin" {
		t.Errorf("passwd dropped the topic rules: %v", cred)
	}
	if err := login(t, path, "alice", "pw2"); err != nil {
		t.Errorf("login after passwd: %v", err)
	}
	mustUser(t, "", "-store", path, "topics", "alice", "")
	if cred, _ := lookup(t, path, "alice"); len(cred.Topics) != 0 {
		t.Errorf("topics \"\" left %v", cred.Topics)
	}
	_, _, err := runUser(t, failReader{t}, "-store", path, "topics", "alice", "a b")
	wantError(t, err, 2, "topics: ")
	_, _, err = runUser(t, failReader{t}, "-store", path, "topics", "carol", "x")
	wantError(t, err, 1, `no user "carol" in `+regexp.QuoteMeta(path))
}
