package auth

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/seed0811993b/conclave/internal/frame"
)

// TestPythonModeUserLogin: a CPython client (multiprocessing.connection plus
// seed 003's own client_generate_proof, stdlib only) logs in as a user to a
// conclave listener in Python mode, and fails cleanly with a wrong
// password.
func TestPythonModeUserLogin(t *testing.T) {
	t.Parallel()
	users := userServer(t)
	for _, py := range findPythons(t) {
		if py.minor <= 11 {
			continue // 3.11 speaks the legacy digest; the login is the same
		}
		t.Run(py.String(), func(t *testing.T) {
			t.Parallel()
			key := pyTestKey(t)
			for _, tc := range []struct {
				name, password string
				exit           int
				want           string
			}{
				{"right password", "pencil", 0, "OK"},
				{"wrong password", "pencl", 2, "REFUSED authentication failed"},
			} {
				t.Run(tc.name, func(t *testing.T) {
					cfg := &Config{Key: key, Mode: ModePython, Users: users, Require: RequireKeyAndUser}
					addr, accepted := pyListen(t, cfg)
					secret := fmt.Sprintf("%x\nalice\n%s", []byte(key), tc.password)
					p := startPeer(t, pyTestCtx(t), secret, []string{pyenvVersions}, py.path,
						"testdata/python/mp_scram_client.py", port(t, addr))
					r := <-accepted
					if tc.exit != 0 {
						if !errors.Is(r.err, ErrSCRAMAuth) {
							t.Fatalf("server: %v", r.err)
						}
						p.expectExit(tc.exit, tc.want)
						return
					}
					if r.err != nil {
						t.Fatalf("server: %v", r.err)
					}
					st := r.c.ConnectionState()
					if st.PeerUser != "alice" || st.Mechanism != "cluster key and user login" {
						t.Fatalf("state %+v", st)
					}
					msg, err := frame.Read(r.c, 1024)
					if err != nil {
						t.Fatal(err)
					}
					if _, err := r.c.Write(frame.Append(nil, msg)); err != nil {
						t.Fatal(err)
					}
					p.expectExit(0, "OK")
				})
			}
		})
	}
}

// TestPythonModeUserLoginGoToGo: both roles in Go, with the login after
// the authkey handshake; the client refuses a server that cannot sign.
func TestPythonModeUserLoginGoToGo(t *testing.T) {
	key := pyTestKey(t)
	users := userServer(t)
	c, s, cerr, serr := handshakePair(t,
		&Config{Key: key, Mode: ModePython, User: "alice", Password: "pencil"},
		&Config{Key: key, Mode: ModePython, Users: users, Require: RequireKeyAndUser})
	if cerr != nil || serr != nil {
		t.Fatalf("client %v, server %v", cerr, serr)
	}
	if st := s.ConnectionState(); st.PeerUser != "alice" || st.PeerTopics.String() != "jobs.*" {
		t.Fatalf("server state %+v", st)
	}
	echoBothWays(t, c, s)

	_, _, cerr, serr = handshakePair(t,
		&Config{Key: key, Mode: ModePython, User: "alice", Password: "wrong"},
		&Config{Key: key, Mode: ModePython, Users: users, Require: RequireKeyAndUser})
	if !errors.Is(cerr, ErrAuthFailed) || !errors.Is(serr, ErrSCRAMAuth) {
		t.Fatalf("wrong password: client %v, server %v", cerr, serr)
	}
}

// TestPythonModeAuthorize: Config.Authorize refuses a ModePython client
// after its login (the client hears ErrNotAllowed) or, without a login,
// at the end of the handshake (the server fails; Python's protocol cannot
// tell the client).
func TestPythonModeAuthorize(t *testing.T) {
	key := pyTestKey(t)
	users := userServer(t)
	var seen []ConnectionState
	refuse := func(st ConnectionState) error {
		seen = append(seen, st)
		return errors.New("policy says no")
	}
	_, _, cerr, serr := handshakePair(t,
		&Config{Key: key, Mode: ModePython, User: "alice", Password: "pencil"},
		&Config{Key: key, Mode: ModePython, Users: users, Require: RequireKeyAndUser, Authorize: refuse})
	if !errors.Is(cerr, ErrNotAllowed) || errors.Is(cerr, ErrAuthFailed) || strings.Contains(cerr.Error(), "policy") {
		t.Fatalf("refused login: client %v", cerr)
	}
	if !errors.Is(serr, ErrNotAllowed) || !strings.Contains(serr.Error(), "policy says no") {
		t.Fatalf("refused login: server %v", serr)
	}
	if len(seen) != 1 || seen[0].PeerUser != "alice" || seen[0].Mode != ModePython {
		t.Fatalf("Authorize saw %+v", seen)
	}
	_, _, _, serr = handshakePair(t,
		&Config{Key: key, Mode: ModePython},
		&Config{Key: key, Mode: ModePython, Authorize: refuse})
	if !errors.Is(serr, ErrNotAllowed) || len(seen) != 2 || seen[1].PeerUser != "" {
		t.Fatalf("refused key-only client: server %v, Authorize saw %+v", serr, seen)
	}
}
