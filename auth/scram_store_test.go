package auth

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// The RFC 7677 credential as a store line.
const rfcStoreLine = "user:SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=:admin,worker"

func newTestStore(t testing.TB) (*Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "users")
	s, err := CreateStore(path)
	if err != nil {
		t.Fatal(err)
	}
	return s, path
}

func wantMode0600(t testing.TB, path string) {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("%s has mode %04o, want 0600", path, st.Mode().Perm())
	}
}

func storeNames(s *Store) []string {
	var names []string
	for _, u := range s.List() {
		names = append(names, u.Name)
	}
	return names
}

func TestStoreRoundTrip(t *testing.T) {
	s, path := newTestStore(t)
	wantMode0600(t, path)
	if len(s.List()) != 0 {
		t.Fatal("new store not empty")
	}
	alice := scramCred(t, "pw", RoleAdmin, RoleWorker)
	if err := s.Add("alice", alice); err != nil {
		t.Fatal(err)
	}
	if err := s.Add("bob", scramCred(t, "pw")); err != nil {
		t.Fatal(err)
	}
	wantErrIs(t, "second alice", s.Add("alice", alice), ErrUserExists)
	wantMode0600(t, path)

	data, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	if !strings.HasPrefix(lines[0], "# ") || lines[len(lines)-2] != "alice:"+FormatVerifier(alice)+":admin,worker" ||
		lines[len(lines)-1] != "bob:"+FormatVerifier(scramCredOf(t, s, "bob"))+":" {
		t.Fatalf("file:\n%s", data)
	}

	s2, err := OpenStore(path)
	if err != nil {
		t.Fatal(err)
	}
	got, ok := s2.LookupCredential("alice")
	if !ok || FormatVerifier(got) != FormatVerifier(alice) || !slices.Equal(got.Roles, alice.Roles) {
		t.Fatalf("reopened alice = %v, %v", got, ok)
	}
	if names := storeNames(s2); !slices.Equal(names, []string{"alice", "bob"}) {
		t.Fatalf("List = %v", names)
	}

	// A password change keeping the roles, as `conclave user passwd` does it.
	err = s.Update("alice", func(old Credential) (Credential, error) {
		c, err := NewCredential("new pw", MinSCRAMIterations, nil)
		c.Roles = old.Roles
		return c, err
	})
	if err != nil {
		t.Fatal(err)
	}
	got, _ = s.LookupCredential("alice")
	if FormatVerifier(got) == FormatVerifier(alice) || !slices.Equal(got.Roles, alice.Roles) {
		t.Fatal("Update did not change the verifier or lost the roles")
	}
	srv := newTestSCRAMServer(t, s, SCRAMServerOptions{})
	if side, err := scramLogin(t, srv, "alice", "new pw"); err != nil {
		t.Fatalf("login with the new password: %s: %v", side, err)
	}
	wantErrIs(t, "update of nobody", s.Update("carol", func(c Credential) (Credential, error) { return c, nil }), ErrNoSuchUser)
	boom := errors.New("boom")
	wantErrIs(t, "update failing", s.Update("alice", func(c Credential) (Credential, error) { return c, boom }), boom)

	if err := s.Delete("bob"); err != nil {
		t.Fatal(err)
	}
	wantErrIs(t, "delete twice", s.Delete("bob"), ErrNoSuchUser)
	if _, ok := s.LookupCredential("bob"); ok {
		t.Fatal("bob still there")
	}
	wantMode0600(t, path)
	s3, err := OpenStore(path)
	if err != nil {
		t.Fatal(err)
	}
	if names := storeNames(s3); !slices.Equal(names, []string{"alice"}) {
		t.Fatalf("after delete: %v", names)
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	for _, e := range entries {
		if strings.Contains(e.Name(), ".tmp") {
			t.Errorf("temporary file %s left behind", e.Name())
		}
	}
}

func scramCredOf(t testing.TB, s *Store, name string) Credential {
	t.Helper()
	c, ok := s.LookupCredential(name)
	if !ok {
		t.Fatalf("no %s", name)
	}
	return c
}

// TestStoreKeepsComments: writes keep the operator's comments, blank lines
// and order.
func TestStoreKeepsComments(t *testing.T) {
	path := filepath.Join(t.TempDir(), "users")
	content := "# cluster users\n\n" + rfcStoreLine + "\n  # indented comment\n"
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := OpenStore(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Add("zed", scramCred(t, "pw", RoleMonitor)); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(path)
	if !strings.HasPrefix(string(data), content) || !strings.HasSuffix(string(data), ":monitor\n") {
		t.Fatalf("file after Add:\n%s", data)
	}
	if err := s.Delete("user"); err != nil {
		t.Fatal(err)
	}
	data, _ = os.ReadFile(path)
	if !strings.HasPrefix(string(data), "# cluster users\n\n  # indented comment\nzed:") {
		t.Fatalf("file after Delete:\n%s", data)
	}
}

func TestStoreRefusesReadableFile(t *testing.T) {
	s, path := newTestStore(t)
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := OpenStore(path)
	wantErrIs(t, "OpenStore 0644", err, ErrBadStore)
	if !strings.Contains(err.Error(), "chmod 600") || !strings.Contains(err.Error(), "0644") {
		t.Fatalf("error %q does not say how to fix it", err)
	}
	wantErrIs(t, "Add to a 0644 store", s.Add("alice", scramCred(t, "pw")), ErrBadStore)
	for _, mode := range []os.FileMode{0o640, 0o604, 0o620} {
		os.Chmod(path, mode)
		_, err := OpenStore(path)
		wantErrIs(t, fmt.Sprintf("mode %04o", mode), err, ErrBadStore)
	}
	dir := filepath.Join(t.TempDir(), "dir")
	os.Mkdir(dir, 0o700)
	_, err = OpenStore(dir)
	wantErrIs(t, "a directory", err, ErrBadStore)
	_, err = OpenStore(filepath.Join(t.TempDir(), "missing"))
	if !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), "conclave user add") {
		t.Fatalf("missing store: %v", err)
	}
}

func TestStoreMalformedLine(t *testing.T) {
	good := rfcStoreLine
	verifier := strings.TrimSuffix(strings.TrimPrefix(good, "user:"), ":admin,worker")
	for _, tc := range []struct {
		name string
		line string
		want error
		text string // the error must contain it
	}{
		{"no roles field", "bob:" + verifier, ErrSCRAMVerifier, "no roles field"},
		{"unknown role", "bob:" + verifier + ":admin,root", ErrUnknownRole, `"root"`},
		{"repeated role", "bob:" + verifier + ":admin,admin", ErrSCRAMVerifier, "twice"},
		{"bad name", "9bob:" + verifier + ":", ErrSCRAMUserName, "digit"},
		{"no colon", "bob", ErrSCRAMVerifier, "want name:"},
		{"bad base64", "bob:" + strings.Replace(verifier, "W22Z", "W2!Z", 1) + ":", ErrSCRAMVerifier, "salt"},
		{"low count", "bob:" + strings.Replace(verifier, "$4096:", "$10:", 1) + ":", ErrSCRAMIterations, "10"},
		{"extra field", "bob:" + verifier + ":admin:x:y", ErrSCRAMVerifier, "want name:"},
		{"empty topics", "bob:" + verifier + ":admin:", ErrTopicRule, "leave it out"},
		{"bad topic rule", "bob:" + verifier + ":admin:jobs.*,a*b", ErrTopicRule, `"a*b"`},
		{"duplicate user", good, ErrBadStore, "already defined on line 3"},
		{"password, not verifier", "bob:hunter2:", ErrSCRAMVerifier, "SCRAM-SHA-256$"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "users")
			content := "# users\n\n" + good + "\n" + tc.line + "\n" + "# end\n"
			os.WriteFile(path, []byte(content), 0o600)
			_, err := OpenStore(path)
			wantErrIs(t, "OpenStore", err, ErrBadStore)
			wantErrIs(t, "OpenStore", err, tc.want)
			if !strings.Contains(err.Error(), path+" line 4:") || !strings.Contains(err.Error(), tc.text) {
				t.Fatalf("error %q does not name line 4 and %q", err, tc.text)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Fatalf("error %q repeats the line's content", err)
			}
		})
	}
}

func TestStoreRefusesBadEntries(t *testing.T) {
	s, _ := newTestStore(t)
	c := scramCred(t, "pw")
	c.Roles = []string{"root"}
	err := s.Add("alice", c)
	wantErrIs(t, "unknown role", err, ErrUnknownRole)
	if !strings.Contains(err.Error(), "admin, worker, client, monitor") {
		t.Errorf("error %q does not list the known roles", err)
	}
	wantErrIs(t, "bad name", s.Add("a-b", scramCred(t, "pw")), ErrSCRAMUserName)
	wantErrIs(t, "no keys", s.Add("alice", Credential{Iterations: 4096, Salt: []byte{1}}), ErrSCRAMVerifier)
	if len(s.List()) != 0 {
		t.Fatal("a refused entry was stored")
	}
	if roles, err := ParseRoles("admin,worker,client,monitor"); err != nil || len(roles) != 4 {
		t.Fatalf("ParseRoles: %v %v", roles, err)
	}
	if _, err := ParseRoles("admin,"); !errors.Is(err, ErrUnknownRole) {
		t.Fatalf("ParseRoles(\"admin,\"): %v", err)
	}
}

// TestStoreReload: a server's store picks up changes made by another
// process, at most once per StoreCheckInterval, and survives bad edits.
func TestStoreReload(t *testing.T) {
	writer, path := newTestStore(t)
	if err := writer.Add("alice", scramCred(t, "pw")); err != nil {
		t.Fatal(err)
	}
	clock := newSCRAMClock()
	s, err := OpenStore(path)
	if err != nil {
		t.Fatal(err)
	}
	s.now = clock.Now
	s.nextCheck = clock.Now().Add(StoreCheckInterval)

	if err := writer.Add("carol", scramCred(t, "pw")); err != nil {
		t.Fatal(err)
	}
	if _, ok := s.LookupCredential("carol"); ok {
		t.Fatal("looked at the file before StoreCheckInterval passed")
	}
	clock.Advance(StoreCheckInterval)
	if _, ok := s.LookupCredential("carol"); !ok {
		t.Fatal("change not picked up")
	}

	// Reload forces it.
	if err := writer.Delete("carol"); err != nil {
		t.Fatal(err)
	}
	if err := s.Reload(); err != nil {
		t.Fatal(err)
	}
	if _, ok := s.LookupCredential("carol"); ok {
		t.Fatal("Reload missed a delete")
	}

	// An edit in place (same inode) is seen too.
	data, _ := os.ReadFile(path)
	f, _ := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	line := "dave:" + FormatVerifier(scramCred(t, "pw")) + ":client\n"
	f.WriteString(line)
	f.Close()
	clock.Advance(StoreCheckInterval)
	if c, ok := s.LookupCredential("dave"); !ok || !c.HasRole(RoleClient) {
		t.Fatal("edit in place not picked up")
	}

	// A bad edit keeps the old credentials and is reported.
	os.WriteFile(path, append(data, "broken line\n"...), 0o600)
	clock.Advance(StoreCheckInterval)
	if _, ok := s.LookupCredential("alice"); !ok {
		t.Fatal("a bad edit dropped the loaded credentials")
	}
	if err := s.ReloadError(); !errors.Is(err, ErrBadStore) || !strings.Contains(err.Error(), "line 5") {
		t.Fatalf("ReloadError = %v", err)
	}
	if _, ok := s.LookupCredential("dave"); !ok {
		t.Fatal("credentials loaded before were dropped")
	}
	// So does a chmod.
	os.WriteFile(path, data, 0o600)
	os.Chmod(path, 0o644)
	wantErrIs(t, "Reload of a 0644 file", s.Reload(), ErrBadStore)
	os.Chmod(path, 0o600)
	if err := s.Reload(); err != nil || s.ReloadError() != nil {
		t.Fatalf("Reload after the fix: %v, %v", err, s.ReloadError())
	}
	if _, ok := s.LookupCredential("dave"); ok {
		t.Fatal("the fixed file was not loaded")
	}
	os.Remove(path)
	clock.Advance(StoreCheckInterval)
	if _, ok := s.LookupCredential("alice"); !ok || !errors.Is(s.ReloadError(), os.ErrNotExist) {
		t.Fatalf("removed file: %v", s.ReloadError())
	}
}

// storeWriterEnv makes the test binary a store writer: see
// TestSCRAMStoreWriterProcess.
const storeWriterEnv = "CONCLAVE_SCRAM_STORE_WRITER"

// TestSCRAMStoreWriterProcess is not a test: it is the child half of
// TestStoreConcurrentWriters and does nothing unless storeWriterEnv is set
// (to "path prefix count").
func TestSCRAMStoreWriterProcess(t *testing.T) {
	spec := os.Getenv(storeWriterEnv)
	if spec == "" {
		return
	}
	f := strings.Fields(spec)
	n, _ := strconv.Atoi(f[2])
	c, err := ParseVerifier(FormatVerifier(scramCred(t, "pw")))
	if err != nil {
		t.Fatal(err)
	}
	// Wait for the parent's go-ahead so that all writers start together.
	if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		s, err := OpenStore(f[0])
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Add(fmt.Sprintf("%s%d", f[1], i), c); err != nil {
			t.Fatal(err)
		}
	}
	fmt.Println("DONE", n)
}

// TestStoreConcurrentWriters: 8 goroutines, each with its own Store, and 2
// other processes add users at once; none is lost.
func TestStoreConcurrentWriters(t *testing.T) {
	_, path := newTestStore(t)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	const perWriter = 15
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	type child struct {
		cmd     *exec.Cmd
		release *os.File
		out     strings.Builder
		stderr  strings.Builder
	}
	var children []*child
	for p := range 2 {
		ch := &child{}
		ch.cmd = exec.CommandContext(ctx, exe, "-test.run=^TestSCRAMStoreWriterProcess$", "-test.count=1")
		ch.cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s proc%d_ %d", storeWriterEnv, path, p, perWriter),
			"GORACE="+strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"))
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		ch.cmd.Stdin = r
		ch.release = w
		ch.cmd.Stdout = &ch.out
		ch.cmd.Stderr = &ch.stderr
		if err := ch.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		r.Close()
		children = append(children, ch)
	}
	cred := scramCred(t, "pw", RoleWorker)
	start := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, 8*perWriter)
	for g := range 8 {
		wg.Go(func() {
			<-start
			for i := range perWriter {
				s, err := OpenStore(path)
				if err == nil {
					err = s.Add(fmt.Sprintf("g%d_%d", g, i), cred)
				}
				if err != nil {
					errs <- err
				}
			}
		})
	}
	for _, ch := range children {
		ch.release.WriteString("go\n")
		ch.release.Close()
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for i, ch := range children {
		if err := ch.cmd.Wait(); err != nil || !strings.Contains(ch.out.String(), fmt.Sprintf("DONE %d", perWriter)) {
			t.Fatalf("child %d: %v\nstdout:\n%s\nstderr:\n%s", i, err, ch.out.String(), ch.stderr.String())
		}
	}
	s, err := OpenStore(path)
	if err != nil {
		t.Fatal(err)
	}
	names := storeNames(s)
	if len(names) != 10*perWriter {
		t.Fatalf("%d users in the store, want %d: lost updates", len(names), 10*perWriter)
	}
	for g := range 8 {
		for i := range perWriter {
			if _, ok := s.LookupCredential(fmt.Sprintf("g%d_%d", g, i)); !ok {
				t.Errorf("g%d_%d lost", g, i)
			}
		}
	}
	for p := range 2 {
		for i := range perWriter {
			if _, ok := s.LookupCredential(fmt.Sprintf("proc%d_%d", p, i)); !ok {
				t.Errorf("proc%d_%d lost", p, i)
			}
		}
	}
	wantMode0600(t, path)
	wantMode0600(t, path+".lock")
}

// TestStoreSharedConcurrently: one Store used by many goroutines (reads and
// writes); run with -race.
func TestStoreSharedConcurrently(t *testing.T) {
	s, _ := newTestStore(t)
	cred := scramCred(t, "pw")
	srv := newTestSCRAMServer(t, s, SCRAMServerOptions{})
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 10 {
				if err := s.Add(fmt.Sprintf("u%d_%d", g, i), cred); err != nil {
					t.Error(err)
				}
				s.LookupCredential("u0_0")
				srv.ClientFirst("u0_0", encodeB64(make([]byte, 16)))
				s.List()
			}
		})
	}
	wg.Wait()
	if n := len(s.List()); n != 40 {
		t.Fatalf("%d users, want 40", n)
	}
}

// FuzzParseStoreLine: whatever a line holds, parsing never panics, and a
// line that parses is in canonical form: formatting what was parsed gives
// the line back.
func FuzzParseStoreLine(f *testing.F) {
	f.Add(rfcStoreLine)
	f.Add(strings.TrimSuffix(rfcStoreLine, "admin,worker"))
	f.Add(strings.Replace(rfcStoreLine, ":admin,worker", ":monitor", 1))
	f.Add(rfcStoreLine + ":jobs.*,!jobs.admin")
	f.Add(rfcStoreLine + ":*,!*")
	f.Add("user:SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=")
	f.Add("# comment")
	f.Add("")
	f.Add("a:SCRAM-SHA-256$:$:::")
	f.Add("a:SCRAM-SHA-256$99999999999999999999:AA==$AA==:AA==:")
	f.Add("x:" + strings.Repeat("$", 100))
	f.Fuzz(func(t *testing.T, line string) {
		name, cred, err := parseStoreLine(line)
		if _, derr := parseStore("fuzz", []byte(line)); (derr == nil) != (err == nil) &&
			!strings.ContainsAny(line, "\n#") && strings.TrimSpace(line) == line && line != "" {
			t.Fatalf("parseStore and parseStoreLine disagree on %q: %v vs %v", line, derr, err)
		}
		if err != nil {
			return
		}
		if err := cred.check(); err != nil {
			t.Fatalf("parsed an unusable credential from %q: %v", line, err)
		}
		if got := formatStoreLine(name, cred); got != line {
			t.Fatalf("format(parse(%q)) = %q", line, got)
		}
		v, err := ParseVerifier(FormatVerifier(cred))
		if err != nil || FormatVerifier(v) != FormatVerifier(cred) {
			t.Fatalf("verifier round trip of %q: %v", line, err)
		}
	})
}
