package auth

import (
	"context"
	"crypto/ecdh"
	"crypto/mlkem"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/seed0811993b/conclave/internal/frame"
)

// userServer returns a SCRAM server knowing alice (password "pencil",
// roles worker and client, topics jobs.*).
func userServer(t testing.TB) *SCRAMServer {
	t.Helper()
	cred, err := NewCredential("pencil", MinSCRAMIterations, nil)
	if err != nil {
		t.Fatal(err)
	}
	cred.Roles = []string{RoleWorker, RoleClient}
	cred.Topics = TopicRules{"jobs.*"}
	srv, err := NewSCRAMServer(CredentialMap{"alice": cred}, SCRAMServerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return srv
}

func TestNativeUserLogin(t *testing.T) {
	users := userServer(t)
	key := testKey(t)
	for _, tc := range []struct {
		name      string
		client    *Config
		server    *Config
		mechanism string
	}{
		{"user only", &Config{User: "alice", Password: "pencil"}, &Config{Users: users, Require: RequireUser}, "user login"},
		{"key and user", &Config{Key: key, User: "alice", Password: "pencil"}, &Config{Key: key, Users: users, Require: RequireKeyAndUser}, "cluster key and user login"},
		{"key and user to a user listener with the key", &Config{Key: key, User: "alice", Password: "pencil"}, &Config{Key: key, Users: users, Require: RequireUser}, "cluster key and user login"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, s, cerr, serr := handshakePair(t, tc.client, tc.server)
			if cerr != nil || serr != nil {
				t.Fatalf("client %v, server %v", cerr, serr)
			}
			ss, cs := s.ConnectionState(), c.ConnectionState()
			if ss.PeerUser != "alice" || strings.Join(ss.PeerRoles, ",") != "worker,client" || ss.PeerTopics.String() != "jobs.*" || ss.Mechanism != tc.mechanism || cs.Mechanism != tc.mechanism {
				t.Fatalf("server state %+v, client state %+v", ss, cs)
			}
			if cs.PeerUser != "" {
				t.Fatalf("the client sees a peer user %q", cs.PeerUser)
			}
			echoBothWays(t, c, s)
		})
	}
}

func TestNativeUserLoginRefusals(t *testing.T) {
	users := userServer(t)
	key := testKey(t)
	for _, tc := range []struct {
		name         string
		client       *Config
		server       *Config
		cerr, serr   error
		clientDetail string
	}{
		{"wrong password", &Config{User: "alice", Password: "pencl"}, &Config{Users: users, Require: RequireUser},
			ErrAuthFailed, ErrSCRAMAuth, "wrong key or password"},
		{"unknown user", &Config{User: "mallory", Password: "pencil"}, &Config{Users: users, Require: RequireUser},
			ErrAuthFailed, ErrSCRAMAuth, "wrong key or password"},
		{"key only to a user listener", &Config{Key: key}, &Config{Key: key, Users: users, Require: RequireUser},
			ErrAuthFailed, errMechanism, "cluster key, user login, or both"},
		{"user only to a key and user listener", &Config{User: "alice", Password: "pencil"}, &Config{Key: key, Users: users, Require: RequireKeyAndUser},
			ErrAuthFailed, errMechanism, "mechanism"},
		{"user to a key listener", &Config{User: "alice", Password: "pencil"}, &Config{Key: key},
			ErrAuthFailed, errMechanism, "mechanism"},
		{"key and user to a user listener without the key", &Config{Key: key, User: "alice", Password: "pencil"}, &Config{Users: users, Require: RequireUser},
			ErrAuthFailed, errMechanism, "mechanism"},
		{"right password, wrong key", &Config{Key: testKey(t), User: "alice", Password: "pencil"}, &Config{Key: key, Users: users, Require: RequireKeyAndUser},
			ErrAuthFailed, ErrAuthFailed, "wrong key or password"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, cerr, serr := handshakePair(t, tc.client, tc.server)
			if !errors.Is(cerr, tc.cerr) || !errors.Is(serr, tc.serr) {
				t.Fatalf("client %v, server %v", cerr, serr)
			}
			if !strings.Contains(cerr.Error(), tc.clientDetail) {
				t.Fatalf("client error %q does not say %q", cerr, tc.clientDetail)
			}
			if strings.Contains(cerr.Error()+serr.Error(), "pencil") {
				t.Fatal("an error shows the password")
			}
		})
	}
}

// TestNativeUserImpostorServer: a server that knows the user's salt and
// StoredKey (enough to check proofs) but not the ServerKey cannot complete
// the login: the client refuses it.
func TestNativeUserImpostorServer(t *testing.T) {
	cred, err := NewCredential("pencil", MinSCRAMIterations, nil)
	if err != nil {
		t.Fatal(err)
	}
	cred.ServerKey = make([]byte, len(cred.ServerKey)) // a stolen StoredKey, no ServerKey
	fake, err := NewSCRAMServer(CredentialMap{"alice": cred}, SCRAMServerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_, _, cerr, serr := handshakePair(t, &Config{User: "alice", Password: "pencil"}, &Config{Users: fake, Require: RequireUser})
	if !errors.Is(cerr, ErrSCRAMServerSignature) {
		t.Fatalf("client accepted an impostor: client %v, server %v", cerr, serr)
	}
}

// TestNativeUserLoginSplice: an attacker in the middle swaps in its own key
// exchange and forwards the user's login to the real server. The client's
// proof is bound to the client's transcript, so the server refuses it: the
// attacker gets no session.
func TestNativeUserLoginSplice(t *testing.T) {
	users := userServer(t)
	victim := newNativeClient(&Config{User: "alice", Password: "pencil"})
	server := newNativeServer(&Config{Users: users, Require: RequireUser}, "")
	payload := func(wire []byte) []byte {
		n, hdr, _, err := frame.ParseHeader(wire, maxHandshakeFrame)
		if err != nil {
			t.Fatal(err)
		}
		return wire[hdr : hdr+n]
	}

	// The victim's hello, with the attacker's own key shares put in.
	out, _, err := victim.step(nil)
	if err != nil {
		t.Fatal(err)
	}
	victimHello := payload(out)
	ch, err := parseClientHello(victimHello)
	if err != nil {
		t.Fatal(err)
	}
	ax, _ := ecdh.X25519().GenerateKey(rand.Reader)
	adk, _ := mlkem.GenerateKey768()
	ch.x25519, ch.mlkemKey = ax.PublicKey().Bytes(), adk.EncapsulationKey().Bytes()
	attackerHello := ch.marshal()
	atr := newTranscript() // attacker <-> server
	atr.recv(attackerHello)
	if _, _, err := server.step(nil); err != nil { // the server waits for a hello
		t.Fatal(err)
	}
	out, _, err = server.step(attackerHello)
	if err != nil {
		t.Fatal(err)
	}
	serverHello := payload(out)
	atr.recv(serverHello)
	sh, err := parseServerHello(serverHello)
	if err != nil {
		t.Fatal(err)
	}
	// The attacker's own session with the server: it knows hs, since the
	// user-only mechanism salts it with no key.
	ms, err := adk.Decapsulate(sh.mlkemCT)
	if err != nil {
		t.Fatal(err)
	}
	sx, _ := ecdh.X25519().NewPublicKey(sh.x25519)
	xs, _ := ax.ECDH(sx)
	ahs := handshakeSecret(nil, ms, xs)

	// Towards the victim: the server's hello (salt, iterations, nonce),
	// with the attacker's key exchange.
	vek, err := mlkem.NewEncapsulationKey768(victimHello[len(victimHello)-len(ch.mechData)-2-mlkem.EncapsulationKeySize768 : len(victimHello)-len(ch.mechData)-2])
	if err != nil {
		t.Fatal(err)
	}
	_, vct := vek.Encapsulate()
	bx, _ := ecdh.X25519().GenerateKey(rand.Reader)
	sh2 := *sh
	sh2.x25519, sh2.mlkemCT = bx.PublicKey().Bytes(), vct
	out, _, err = victim.step(sh2.marshal())
	if err != nil {
		t.Fatalf("the victim refused the spliced hello early: %v", err)
	}
	_, victimProof, err := parseFinished(payload(out), msgClientFinished, true)
	if err != nil {
		t.Fatal(err)
	}

	// To the server: a valid MAC for the attacker's transcript, and the
	// victim's proof.
	forged := marshalFinished(msgClientFinished, proof(ahs, labelClientProof, atr.sum()), victimProof)
	_, _, err = server.step(forged)
	if !errors.Is(err, ErrSCRAMAuth) {
		t.Fatalf("the server accepted a spliced login: %v", err)
	}
}

// FuzzSCRAMMessages feeds arbitrary bytes to the parsers of the user
// mechanisms' handshake fields: they must never panic, and what parses must
// re-encode to the same bytes.
func FuzzSCRAMMessages(f *testing.F) {
	f.Add(marshalClientSCRAM("alice", "AAECAwQFBgcICQoLDA0ODw=="))
	f.Add(marshalServerSCRAM(SCRAMChallenge{Salt: "oKGio6SlpqeoqaqrrK2urw==", Iterations: 4096, CombinedNonce: "AAECAwQFBgcICQoLDA0ODw==EBESExQVFhcYGRobHB0eHyAh"}))
	f.Add(marshalFinished(msgClientFinished, make([]byte, macLen), "cTOYR6iEchVLoF96lSjEI1lXLhhI2WlVyVgu49A/bVk="))
	f.Add([]byte{0xff, 'a'})
	f.Fuzz(func(t *testing.T, b []byte) {
		if user, cnonce, err := parseClientSCRAM(b); err == nil {
			if got := marshalClientSCRAM(user, cnonce); string(got) != string(b) {
				t.Fatalf("client fields re-encode as %x, from %x", got, b)
			}
		}
		if ch, err := parseServerSCRAM(b); err == nil {
			if got := marshalServerSCRAM(ch); string(got) != string(b) {
				t.Fatalf("server fields re-encode as %x, from %x", got, b)
			}
		}
		if mac, text, err := parseFinished(b, msgClientFinished, true); err == nil {
			if got := marshalFinished(msgClientFinished, mac, text); string(got) != string(b) && text != "" {
				t.Fatalf("finished re-encodes as %x, from %x", got, b)
			}
		}
	})
}

// TestUserLoginRateLimitPerAddress: failed logins from one address are
// slowed down across connections (each from a new port), in both modes.
func TestUserLoginRateLimitPerAddress(t *testing.T) {
	cred, err := NewCredential("pencil", MinSCRAMIterations, nil)
	if err != nil {
		t.Fatal(err)
	}
	key := testKey(t)
	for _, mode := range []Mode{ModeNative, ModePython} {
		t.Run(mode.String(), func(t *testing.T) {
			users, err := NewSCRAMServer(CredentialMap{"alice": cred}, SCRAMServerOptions{
				RateLimit:             SCRAMRateLimit{AddrBurst: 2, AddrInterval: time.Hour},
				UnknownUserIterations: MinSCRAMIterations, // keeps the clients' PBKDF2 quick
			})
			if err != nil {
				t.Fatal(err)
			}
			server := &Config{Key: key, Mode: mode, Users: users, Require: RequireKeyAndUser}
			// Three wrong passwords, each for another user name so that
			// only the address can tie them together.
			for i, user := range []string{"u1", "u2", "u3"} {
				_, _, cerr, serr := handshakePair(t, &Config{Key: key, Mode: mode, User: user, Password: "x"}, server)
				if i < 2 && !errors.Is(serr, ErrSCRAMAuth) {
					t.Fatalf("attempt %d: server %v", i+1, serr)
				}
				if i == 2 && (!errors.Is(serr, ErrSCRAMRateLimited) || !errors.Is(cerr, ErrAuthFailed)) {
					t.Fatalf("attempt 3: client %v, server %v", cerr, serr)
				}
			}
			// Even the right password waits now.
			_, _, _, serr := handshakePair(t, &Config{Key: key, Mode: mode, User: "alice", Password: "pencil"}, server)
			if !errors.Is(serr, ErrSCRAMRateLimited) {
				t.Fatalf("right password while limited: %v", serr)
			}
		})
	}
}

// TestNativeAuthorize: a server's policy sees who the client proved to be
// and can refuse it; the client hears ErrNotAllowed, never the reason.
func TestNativeAuthorize(t *testing.T) {
	users := userServer(t)
	key := testKey(t)
	var seen ConnectionState
	scfg := &Config{Key: key, Users: users, Require: RequireKeyAndUser, Authorize: func(st ConnectionState) error {
		seen = st
		if st.PeerName == "intruder" {
			return errors.New("secret policy detail")
		}
		return nil
	}}
	_, _, cerr, serr := handshakePair(t, &Config{Key: key, Name: "w1", User: "alice", Password: "pencil"}, scfg)
	if cerr != nil || serr != nil {
		t.Fatalf("allowed: client %v, server %v", cerr, serr)
	}
	if seen.PeerName != "w1" || seen.PeerUser != "alice" || strings.Join(seen.PeerRoles, ",") != "worker,client" {
		t.Fatalf("Authorize saw %+v", seen)
	}
	_, _, cerr, serr = handshakePair(t, &Config{Key: key, Name: "intruder", User: "alice", Password: "pencil"}, scfg)
	if !errors.Is(cerr, ErrNotAllowed) || errors.Is(cerr, ErrAuthFailed) || strings.Contains(cerr.Error(), "secret") {
		t.Fatalf("refused client: %v", cerr)
	}
	if !errors.Is(serr, ErrNotAllowed) || !strings.Contains(serr.Error(), "secret policy detail") {
		t.Fatalf("refusing server: %v", serr)
	}
	// A client that fails authentication never reaches the policy.
	seen = ConnectionState{}
	_, _, cerr, _ = handshakePair(t, &Config{Key: key, Name: "w2", User: "alice", Password: "wrong"}, scfg)
	if !errors.Is(cerr, ErrAuthFailed) || seen.PeerName != "" {
		t.Fatalf("wrong password: %v, Authorize saw %+v", cerr, seen)
	}
}

// TestSCRAMServerAuthenticate: an in-process login gives the user's roles
// and rules, and refuses a wrong password and an unknown user alike.
func TestSCRAMServerAuthenticate(t *testing.T) {
	users := userServer(t)
	login, err := users.Authenticate("alice", "pencil")
	if err != nil || login.User != "alice" || strings.Join(login.Roles, ",") != "worker,client" || login.Topics.String() != "jobs.*" {
		t.Fatalf("Authenticate: %+v, %v", login, err)
	}
	for _, tc := range [][2]string{{"alice", "pencil!"}, {"bob", "pencil"}} {
		if _, err := users.Authenticate(tc[0], tc[1]); !errors.Is(err, ErrSCRAMAuth) {
			t.Errorf("Authenticate(%q, %q): %v, want ErrSCRAMAuth", tc[0], tc[1], err)
		}
	}
	if _, err := users.Authenticate("9bad", "x"); !errors.Is(err, ErrSCRAMUserName) {
		t.Errorf("bad name: %v", err)
	}
}

// cutConn closes its connection on the write after its first writes, as
// a client that gives up in the middle of a handshake does.
type cutConn struct {
	net.Conn
	writes int
}

func (c *cutConn) Write(p []byte) (int, error) {
	if c.writes == 0 {
		c.Conn.Close()
		return 0, net.ErrClosed
	}
	c.writes--
	return c.Conn.Write(p)
}

// TestAbortedLoginsFreeTheirPlace: a handshake that fails after the server
// started a login conversation drops it at once. Left to expire (30 s),
// aborted handshakes filled the server's table of pending conversations
// and pushed honest logins out of it.
func TestAbortedLoginsFreeTheirPlace(t *testing.T) {
	users := userServer(t)
	key := testKey(t)
	for _, mode := range []Mode{ModeNative, ModePython} {
		// Cut the client after 0, 1, ... writes, until it has written all
		// it needs to log in.
		for writes := 0; ; writes++ {
			rc, rs := tcpPair(t)
			c := Client(&cutConn{Conn: rc, writes: writes}, &Config{Mode: mode, Key: key, User: "alice", Password: "pencil"})
			s := Server(rs, &Config{Mode: mode, Key: key, Users: users, Require: RequireKeyAndUser})
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			done := make(chan error, 1)
			go func() { done <- s.HandshakeContext(ctx) }()
			cerr := c.HandshakeContext(ctx)
			c.Close()
			serr := <-done
			cancel()
			s.Close()
			if cerr == nil {
				if writes < 2 {
					t.Fatalf("%v: a client cut after %d writes logged in", mode, writes)
				}
				break
			}
			if serr == nil {
				t.Fatalf("%v: the server finished a handshake cut after %d writes", mode, writes)
			}
		}
	}
	users.mu.Lock()
	defer users.mu.Unlock()
	if len(users.pending) != 0 {
		t.Fatalf("%d login conversations of failed handshakes are still pending", len(users.pending))
	}
}

// TestConnPrintsNoSecrets: whatever the verb, a Conn prints its addresses,
// not the session's traffic secrets.
func TestConnPrintsNoSecrets(t *testing.T) {
	c, s := sealedPair(t)
	for _, conn := range []*Conn{c, s} {
		secrets := []string{fmt.Sprint(conn.out.secret[:4]), fmt.Sprint(conn.in.secret[:4]), fmt.Sprintf("%x", conn.out.secret[:4])}
		var out strings.Builder
		for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%x"} {
			out.WriteString(fmt.Sprintf(verb, conn))
		}
		for _, sec := range secrets {
			if strings.Contains(out.String(), sec) {
				t.Fatalf("a Conn prints a secret:\n%s", out.String())
			}
		}
		if !strings.Contains(out.String(), conn.RemoteAddr().String()) {
			t.Fatalf("a Conn prints too little: %s", out.String())
		}
	}
}
