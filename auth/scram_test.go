package auth

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// scramClock is an injectable clock for expiry and rate-limit tests.
type scramClock struct {
	mu sync.Mutex
	t  time.Time
}

func newSCRAMClock() *scramClock {
	return &scramClock{t: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)}
}

func (c *scramClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *scramClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// scramSeq returns n bytes start, start+1, ...
func scramSeq(start byte, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = start + byte(i)
	}
	return b
}

// scramCred makes a credential at the minimum iteration count (0.6 ms).
func scramCred(t testing.TB, password string, roles ...string) Credential {
	t.Helper()
	c, err := NewCredential(password, MinSCRAMIterations, nil)
	if err != nil {
		t.Fatal(err)
	}
	c.Roles = roles
	return c
}

func scramTestSecret() []byte { return scramSeq(0x40, 32) }

func newTestSCRAMServer(t testing.TB, store CredentialLookup, opts SCRAMServerOptions) *SCRAMServer {
	t.Helper()
	if opts.Secret == nil {
		opts.Secret = scramTestSecret()
	}
	if opts.UnknownUserIterations == 0 {
		opts.UnknownUserIterations = MinSCRAMIterations
	}
	s, err := NewSCRAMServer(store, opts)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// scramLogin runs a whole login through the seed-shaped API and returns the
// first error and which side reported it.
func scramLogin(t testing.TB, s *SCRAMServer, user, password string) (side string, err error) {
	t.Helper()
	c, err := NewSCRAMClient(user, password, SCRAMClientOptions{})
	if err != nil {
		t.Fatal(err)
	}
	u, cnonce := c.First()
	salt, iter, combined, err := s.ClientFirst(u, cnonce)
	if err != nil {
		return "server first", err
	}
	proof, err := c.Final(salt, iter, combined)
	if err != nil {
		return "client final", err
	}
	sig, err := s.ClientFinal(u, combined, proof)
	if err != nil {
		return "server final", err
	}
	if err := c.VerifyServer(sig); err != nil {
		return "client verify", err
	}
	return "", nil
}

func wantErrIs(t testing.TB, what string, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("%s: error %v, want %v", what, err, target)
	}
}

func TestSCRAMKnownAnswerRFC7677(t *testing.T) {
	const (
		user     = "user"
		cnonce   = "rOprNGfwEbeRWgbNEkqO"
		combined = "rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
		saltB64  = "W22ZaJ0SNY7soEsUEjb6gQ=="
		proofB64 = "dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
		sigB64   = "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
		verifier = "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU="
	)
	salt, _ := base64.StdEncoding.DecodeString(saltB64)
	clientKey, storedKey, serverKey, err := scramClientKeys("pencil", salt, 4096)
	if err != nil {
		t.Fatal(err)
	}
	cred := Credential{Iterations: 4096, Salt: salt, StoredKey: storedKey, ServerKey: serverKey}
	if got := FormatVerifier(cred); got != verifier {
		t.Errorf("verifier\n got %s\nwant %s", got, verifier)
	}
	parsed, err := ParseVerifier(verifier)
	if err != nil || !bytes.Equal(parsed.StoredKey, storedKey) || !bytes.Equal(parsed.ServerKey, serverKey) ||
		!bytes.Equal(parsed.Salt, salt) || parsed.Iterations != 4096 {
		t.Fatalf("ParseVerifier = %v, %v", parsed.Iterations, err)
	}
	am := scramAuthMessage(user, cnonce, combined, saltB64, 4096, "biws")
	if want := "n=user,r=" + cnonce + ",r=" + combined + ",s=" + saltB64 + ",i=4096,c=biws,r=" + combined; am != want {
		t.Fatalf("AuthMessage %q", am)
	}
	proof := scramClientProof(clientKey, storedKey, am)
	if got := encodeB64(proof); got != proofB64 {
		t.Errorf("proof %s, want %s", got, proofB64)
	}
	if !scramVerifyProof(parsed.StoredKey, am, proof) {
		t.Error("server side rejects the RFC proof")
	}
	proof[0] ^= 1
	if scramVerifyProof(parsed.StoredKey, am, proof) {
		t.Error("server side accepts a tampered proof")
	}
	if got := encodeB64(scramServerSignature(parsed.ServerKey, am)); got != sigB64 {
		t.Errorf("server signature %s, want %s", got, sigB64)
	}
}

// TestSCRAMKnownAnswerSeed runs the seed-shaped vector through the public
// API on both sides, with every random byte pinned.
func TestSCRAMKnownAnswerSeed(t *testing.T) {
	const (
		cnonceB64 = "AAECAwQFBgcICQoLDA0ODw=="
		combined  = "AAECAwQFBgcICQoLDA0ODw==EBESExQVFhcYGRobHB0eHyAh"
		saltB64   = "oKGio6SlpqeoqaqrrK2urw=="
		proofB64  = "cTOYR6iEchVLoF96lSjEI1lXLhhI2WlVyVgu49A/bVk="
		sigB64    = "HXESqClBfmcW3Axz7PSlXFqsbw7vsVB1KncXfVkxcKU="
	)
	cred, err := NewCredential("pencil", 4096, bytes.NewReader(scramSeq(0xa0, 16)))
	if err != nil {
		t.Fatal(err)
	}
	cred.Roles = []string{RoleWorker}
	s := newTestSCRAMServer(t, CredentialMap{"node_1": cred}, SCRAMServerOptions{Rand: bytes.NewReader(scramSeq(0x10, 18))})
	c, err := NewSCRAMClient("node_1", "pencil", SCRAMClientOptions{Rand: bytes.NewReader(scramSeq(0, 16))})
	if err != nil {
		t.Fatal(err)
	}
	user, cnonce := c.First()
	if user != "node_1" || cnonce != cnonceB64 {
		t.Fatalf("First = %q, %q", user, cnonce)
	}
	salt, iter, comb, err := s.ClientFirst(user, cnonce)
	if err != nil || salt != saltB64 || iter != 4096 || comb != combined {
		t.Fatalf("ClientFirst = %q, %d, %q, %v", salt, iter, comb, err)
	}
	proof, err := c.Final(salt, iter, comb)
	if err != nil || proof != proofB64 {
		t.Fatalf("Final = %q, %v; want %q", proof, err, proofB64)
	}
	sig, err := s.ClientFinal(user, comb, proof)
	if err != nil || sig != sigB64 {
		t.Fatalf("ClientFinal = %q, %v; want %q", sig, err, sigB64)
	}
	if err := c.VerifyServer(sig); err != nil || !c.Verified() {
		t.Fatalf("VerifyServer: %v", err)
	}
}

func TestSCRAMLoginAndRoles(t *testing.T) {
	s := newTestSCRAMServer(t, CredentialMap{"alice": scramCred(t, "s3cret pass", RoleAdmin, RoleMonitor)}, SCRAMServerOptions{})
	if side, err := scramLogin(t, s, "alice", "s3cret pass"); err != nil {
		t.Fatalf("%s: %v", side, err)
	}
	c, _ := NewSCRAMClient("alice", "s3cret pass", SCRAMClientOptions{})
	user, cnonce := c.First()
	ch, err := s.Start(SCRAMStart{User: user, ClientNonce: cnonce, Remote: "192.0.2.1"})
	if err != nil {
		t.Fatal(err)
	}
	proof, err := c.Final(ch.Salt, ch.Iterations, ch.CombinedNonce)
	if err != nil {
		t.Fatal(err)
	}
	login, err := s.Finish(SCRAMProof{User: user, CombinedNonce: ch.CombinedNonce, ClientProof: proof, Remote: "192.0.2.1"})
	if err != nil {
		t.Fatal(err)
	}
	if login.User != "alice" || strings.Join(login.Roles, ",") != "admin,monitor" {
		t.Fatalf("login = %+v", login)
	}
	if err := c.VerifyServer(login.ServerSignature); err != nil {
		t.Fatal(err)
	}
	if s.pendingLen() != 0 {
		t.Fatalf("%d conversations left pending", s.pendingLen())
	}
}

// TestSCRAMChannelBinding: a proof covers the binding, so a login made for
// one channel fails on another, and bound and unbound never mix.
func TestSCRAMChannelBinding(t *testing.T) {
	s := newTestSCRAMServer(t, CredentialMap{"alice": scramCred(t, "pw")}, SCRAMServerOptions{})
	h1 := sha256.Sum256([]byte("transcript 1"))
	h2 := sha256.Sum256([]byte("transcript 2"))
	for _, tc := range []struct {
		name           string
		client, server []byte // nil: unbound
		ok             bool
	}{
		{"same binding", h1[:], h1[:], true},
		{"spliced", h1[:], h2[:], false},
		{"client bound, server not", h1[:], nil, false},
		{"server bound, client not", nil, h1[:], false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, _ := NewSCRAMClient("alice", "pw", SCRAMClientOptions{})
			user, cnonce := c.First()
			ch, err := s.Start(SCRAMStart{User: user, ClientNonce: cnonce})
			if err != nil {
				t.Fatal(err)
			}
			var proof string
			if tc.client != nil {
				proof, err = c.FinalBound(ch.Salt, ch.Iterations, ch.CombinedNonce, tc.client)
			} else {
				proof, err = c.Final(ch.Salt, ch.Iterations, ch.CombinedNonce)
			}
			if err != nil {
				t.Fatal(err)
			}
			login, err := s.Finish(SCRAMProof{User: user, CombinedNonce: ch.CombinedNonce, ClientProof: proof, ChannelBinding: tc.server})
			if !tc.ok {
				wantErrIs(t, "Finish", err, ErrSCRAMAuth)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if err := c.VerifyServer(login.ServerSignature); err != nil {
				t.Fatal(err)
			}
		})
	}
	t.Run("empty binding refused", func(t *testing.T) {
		c, _ := NewSCRAMClient("alice", "pw", SCRAMClientOptions{})
		user, cnonce := c.First()
		ch, _ := s.Start(SCRAMStart{User: user, ClientNonce: cnonce})
		if _, err := c.FinalBound(ch.Salt, ch.Iterations, ch.CombinedNonce, nil); err == nil {
			t.Fatal("FinalBound accepted a nil binding")
		}
		if _, err := s.Finish(SCRAMProof{User: user, CombinedNonce: ch.CombinedNonce, ClientProof: encodeB64(make([]byte, 32)),
			ChannelBinding: []byte{}}); err == nil || errors.Is(err, ErrSCRAMAuth) {
			t.Fatalf("Finish with an empty binding: %v", err)
		}
	})
}

func TestSCRAMUserNames(t *testing.T) {
	s := newTestSCRAMServer(t, CredentialMap{}, SCRAMServerOptions{})
	cnonce := encodeB64(make([]byte, 16))
	for _, name := range []string{"a", "_", "A1_", "node_1", "_9", strings.Repeat("x", 30)} {
		if err := CheckUserName(name); err != nil {
			t.Errorf("CheckUserName(%q): %v", name, err)
		}
		if _, err := s.Start(SCRAMStart{User: name, ClientNonce: cnonce}); err != nil {
			t.Errorf("Start(%q): %v", name, err)
		}
	}
	for _, name := range []string{"", "1abc", "9", "a-b", "a b", "a.b", "é", "alice\x00", "a,b", "a=b", strings.Repeat("x", 31)} {
		wantErrIs(t, fmt.Sprintf("CheckUserName(%q)", name), CheckUserName(name), ErrSCRAMUserName)
		_, err := s.Start(SCRAMStart{User: name, ClientNonce: cnonce})
		wantErrIs(t, fmt.Sprintf("Start(%q)", name), err, ErrSCRAMUserName)
		_, err = NewSCRAMClient(name, "pw", SCRAMClientOptions{})
		wantErrIs(t, fmt.Sprintf("NewSCRAMClient(%q)", name), err, ErrSCRAMUserName)
		_, err = s.Finish(SCRAMProof{User: name, CombinedNonce: "x", ClientProof: "x"})
		wantErrIs(t, fmt.Sprintf("Finish(%q)", name), err, ErrSCRAMUserName)
	}
	if err := CheckUserName(strings.Repeat("x", 31)); !strings.Contains(err.Error(), "at most 30") {
		t.Errorf("error %q does not give the limit", err)
	}
}

func TestSCRAMClientNonceRule(t *testing.T) {
	s := newTestSCRAMServer(t, CredentialMap{}, SCRAMServerOptions{})
	for _, tc := range []struct{ name, cnonce string }{
		{"empty", ""},
		{"12 bytes", encodeB64(make([]byte, 12))},
		{"24 bytes (xdg-go's default)", encodeB64(make([]byte, 24))},
		{"17 bytes", encodeB64(make([]byte, 17))},
		{"unpadded", strings.TrimRight(encodeB64(make([]byte, 16)), "=")},
		{"not base64", "!!!!!!!!!!!!!!!!!!!!!!=="},
		{"url alphabet", "-_-_-_-_-_-_-_-_-_-_-_=="},
		{"nonzero padding bits", "AAECAwQFBgcICQoLDA0ODx=="},
		{"comma", "AAECAwQFBgcICQoLDA0OD,=="},
	} {
		_, err := s.Start(SCRAMStart{User: "alice", ClientNonce: tc.cnonce})
		wantErrIs(t, tc.name, err, ErrSCRAMNonce)
	}
	if _, err := s.Start(SCRAMStart{User: "alice", ClientNonce: "AAECAwQFBgcICQoLDA0ODw=="}); err != nil {
		t.Fatal(err)
	}
}

func TestSCRAMConversationSingleUse(t *testing.T) {
	s := newTestSCRAMServer(t, CredentialMap{"alice": scramCred(t, "pw")}, SCRAMServerOptions{})
	c, _ := NewSCRAMClient("alice", "pw", SCRAMClientOptions{})
	user, cnonce := c.First()
	salt, iter, combined, err := s.ClientFirst(user, cnonce)
	if err != nil {
		t.Fatal(err)
	}
	proof, _ := c.Final(salt, iter, combined)
	if _, err := s.ClientFinal(user, combined, proof); err != nil {
		t.Fatal(err)
	}
	_, err = s.ClientFinal(user, combined, proof) // a replay of a good login
	wantErrIs(t, "replay", err, ErrSCRAMConversation)
	_, err = s.ClientFinal(user, combined+"x", proof)
	wantErrIs(t, "unknown nonce", err, ErrSCRAMConversation)

	// A failed proof ends the conversation too: no second guess on it.
	c2, _ := NewSCRAMClient("alice", "wrong", SCRAMClientOptions{})
	user, cnonce = c2.First()
	salt, iter, combined, _ = s.ClientFirst(user, cnonce)
	bad, _ := c2.Final(salt, iter, combined)
	_, err = s.ClientFinal(user, combined, bad)
	wantErrIs(t, "wrong password", err, ErrSCRAMAuth)
	_, err = s.ClientFinal(user, combined, bad)
	wantErrIs(t, "second try", err, ErrSCRAMConversation)
}

func TestSCRAMConversationExpires(t *testing.T) {
	clock := newSCRAMClock()
	s := newTestSCRAMServer(t, CredentialMap{"alice": scramCred(t, "pw")}, SCRAMServerOptions{Now: clock.Now})
	start := func() (*SCRAMClient, string, string) {
		c, _ := NewSCRAMClient("alice", "pw", SCRAMClientOptions{})
		user, cnonce := c.First()
		salt, iter, combined, err := s.ClientFirst(user, cnonce)
		if err != nil {
			t.Fatal(err)
		}
		proof, err := c.Final(salt, iter, combined)
		if err != nil {
			t.Fatal(err)
		}
		return c, combined, proof
	}
	_, combined, proof := start()
	clock.Advance(DefaultSCRAMTimeout - time.Millisecond)
	if _, err := s.ClientFinal("alice", combined, proof); err != nil {
		t.Fatalf("just before the timeout: %v", err)
	}
	_, combined, proof = start()
	clock.Advance(DefaultSCRAMTimeout)
	_, err := s.ClientFinal("alice", combined, proof)
	wantErrIs(t, "expired", err, ErrSCRAMConversation)
	if !strings.Contains(err.Error(), "expired") {
		t.Errorf("error %q does not say it expired", err)
	}

	// Expired conversations are dropped when the next one starts.
	start()
	start()
	clock.Advance(DefaultSCRAMTimeout)
	start()
	if n := s.pendingLen(); n != 1 {
		t.Fatalf("%d pending after expiry, want 1", n)
	}

	s2 := newTestSCRAMServer(t, CredentialMap{"alice": scramCred(t, "pw")}, SCRAMServerOptions{Now: clock.Now, ConversationTimeout: 5 * time.Second})
	s = s2
	_, combined, proof = start()
	clock.Advance(5 * time.Second)
	_, err = s.ClientFinal("alice", combined, proof)
	wantErrIs(t, "custom timeout", err, ErrSCRAMConversation)
}

func TestSCRAMConversationBelongsToItsUser(t *testing.T) {
	s := newTestSCRAMServer(t, CredentialMap{"alice": scramCred(t, "pw"), "bob": scramCred(t, "pw")}, SCRAMServerOptions{})
	c, _ := NewSCRAMClient("alice", "pw", SCRAMClientOptions{})
	user, cnonce := c.First()
	salt, iter, combined, _ := s.ClientFirst(user, cnonce)
	proof, _ := c.Final(salt, iter, combined)
	_, err := s.ClientFinal("bob", combined, proof)
	wantErrIs(t, "alice's nonce used by bob", err, ErrSCRAMConversation)
	_, err = s.ClientFinal("alice", combined, proof)
	wantErrIs(t, "after misuse", err, ErrSCRAMConversation)
}

func TestSCRAMPendingBound(t *testing.T) {
	s := newTestSCRAMServer(t, CredentialMap{"alice": scramCred(t, "pw")}, SCRAMServerOptions{MaxPending: 3})
	type conv struct {
		c        *SCRAMClient
		combined string
		proof    string
	}
	var convs []conv
	for range 4 {
		c, _ := NewSCRAMClient("alice", "pw", SCRAMClientOptions{})
		user, cnonce := c.First()
		salt, iter, combined, err := s.ClientFirst(user, cnonce)
		if err != nil {
			t.Fatal(err) // never refused: the oldest makes room
		}
		proof, _ := c.Final(salt, iter, combined)
		convs = append(convs, conv{c, combined, proof})
	}
	if n := s.pendingLen(); n != 3 {
		t.Fatalf("%d pending, want 3", n)
	}
	s.Abandon(convs[3].combined)
	if n := s.pendingLen(); n != 2 {
		t.Fatalf("%d pending after Abandon, want 2", n)
	}
	_, err := s.ClientFinal("alice", convs[3].combined, convs[3].proof)
	wantErrIs(t, "abandoned", err, ErrSCRAMConversation)
	convs = convs[:3]
	_, err = s.ClientFinal("alice", convs[0].combined, convs[0].proof)
	wantErrIs(t, "oldest, evicted", err, ErrSCRAMConversation)
	for i, cv := range convs[1:] {
		sig, err := s.ClientFinal("alice", cv.combined, cv.proof)
		if err != nil {
			t.Fatalf("conversation %d: %v", i+1, err)
		}
		if err := cv.c.VerifyServer(sig); err != nil {
			t.Fatal(err)
		}
	}
}

// TestSCRAMUnknownUser: an unknown name gets stable, real-looking answers
// and fails exactly as a wrong password does.
func TestSCRAMUnknownUser(t *testing.T) {
	store := CredentialMap{"alice": scramCred(t, "pw")}
	s := newTestSCRAMServer(t, store, SCRAMServerOptions{})
	first := func(s *SCRAMServer, user string) (string, int) {
		t.Helper()
		salt, iter, _, err := s.ClientFirst(user, encodeB64(make([]byte, 16)))
		if err != nil {
			t.Fatal(err)
		}
		return salt, iter
	}
	salt1, iter1 := first(s, "mallory")
	salt2, iter2 := first(s, "mallory")
	if salt1 != salt2 || iter1 != iter2 {
		t.Fatalf("unknown user's answers change: %s/%d then %s/%d", salt1, iter1, salt2, iter2)
	}
	realSalt, _ := first(s, "alice")
	if len(salt1) != len(realSalt) {
		t.Errorf("fake salt %q does not look like a real one %q", salt1, realSalt)
	}
	if other, _ := first(s, "trudy"); other == salt1 {
		t.Error("two unknown users share a salt")
	}
	same := newTestSCRAMServer(t, CredentialMap{}, SCRAMServerOptions{})
	if got, _ := first(same, "mallory"); got != salt1 {
		t.Error("a server with the same secret answers differently")
	}
	other := newTestSCRAMServer(t, CredentialMap{}, SCRAMServerOptions{Secret: scramSeq(1, 32)})
	if got, _ := first(other, "mallory"); got == salt1 {
		t.Error("the fake salt does not depend on the secret")
	}
	def, err := NewSCRAMServer(CredentialMap{}, SCRAMServerOptions{Secret: scramTestSecret()})
	if err != nil {
		t.Fatal(err)
	}
	if _, iter := first(def, "mallory"); iter != DefaultSCRAMIterations {
		t.Errorf("unknown user announced %d iterations, want the default %d", iter, DefaultSCRAMIterations)
	}

	side, errUnknown := scramLogin(t, s, "mallory", "pw")
	if side != "server final" {
		t.Fatalf("unknown user failed at %s: %v", side, errUnknown)
	}
	side, errWrong := scramLogin(t, s, "alice", "not pw")
	if side != "server final" {
		t.Fatalf("wrong password failed at %s: %v", side, errWrong)
	}
	wantErrIs(t, "unknown user", errUnknown, ErrSCRAMAuth)
	wantErrIs(t, "wrong password", errWrong, ErrSCRAMAuth)
	wantErrIs(t, "wrong password", errWrong, ErrAuthFailed)
	if errUnknown.Error() != errWrong.Error() {
		t.Fatalf("distinguishable failures: %q vs %q", errUnknown, errWrong)
	}
}

// TestSCRAMCredentialChangesMidLogin: Finish looks the user up again, so a
// deleted user or a changed password ends logins in flight, and the roles
// are the current ones.
func TestSCRAMCredentialChangesMidLogin(t *testing.T) {
	cred := scramCred(t, "pw", RoleClient)
	store := CredentialMap{"alice": cred}
	s := newTestSCRAMServer(t, store, SCRAMServerOptions{})
	begin := func() (string, string) {
		c, _ := NewSCRAMClient("alice", "pw", SCRAMClientOptions{})
		user, cnonce := c.First()
		salt, iter, combined, _ := s.ClientFirst(user, cnonce)
		proof, err := c.Final(salt, iter, combined)
		if err != nil {
			t.Fatal(err)
		}
		return combined, proof
	}
	combined, proof := begin()
	promoted := cred
	promoted.Roles = []string{RoleAdmin}
	store["alice"] = promoted
	login, err := s.Finish(SCRAMProof{User: "alice", CombinedNonce: combined, ClientProof: proof})
	if err != nil || strings.Join(login.Roles, ",") != RoleAdmin {
		t.Fatalf("login %+v, %v; want the new roles", login, err)
	}
	combined, proof = begin()
	store["alice"] = scramCred(t, "pw") // same password, new salt: a `user passwd`
	_, err = s.ClientFinal("alice", combined, proof)
	wantErrIs(t, "password changed", err, ErrSCRAMAuth)
	combined, proof = begin()
	delete(store, "alice")
	_, err = s.ClientFinal("alice", combined, proof)
	wantErrIs(t, "user deleted", err, ErrSCRAMAuth)
}

func TestSCRAMMalformedProof(t *testing.T) {
	s := newTestSCRAMServer(t, CredentialMap{"alice": scramCred(t, "pw")}, SCRAMServerOptions{})
	for _, proof := range []string{"", "not base64!", encodeB64(make([]byte, 31)), encodeB64(make([]byte, 33))} {
		_, _, combined, _ := s.ClientFirst("alice", encodeB64(make([]byte, 16)))
		_, err := s.ClientFinal("alice", combined, proof)
		wantErrIs(t, fmt.Sprintf("proof %q", proof), err, ErrProtocol)
	}
}

func TestSCRAMClientRefusals(t *testing.T) {
	newClient := func(opts SCRAMClientOptions) (*SCRAMClient, string) {
		c, err := NewSCRAMClient("alice", "pw", opts)
		if err != nil {
			t.Fatal(err)
		}
		_, cnonce := c.First()
		return c, cnonce
	}
	salt := encodeB64(make([]byte, 16))
	for _, tc := range []struct {
		name   string
		opts   SCRAMClientOptions
		salt   string
		iter   int
		suffix string // appended to the client nonce; "!" replaces it
		want   error
	}{
		{"too few iterations", SCRAMClientOptions{}, salt, MinSCRAMIterations - 1, "x", ErrSCRAMIterations},
		{"absurd iterations", SCRAMClientOptions{}, salt, MaxSCRAMIterations + 1, "x", ErrSCRAMIterations},
		{"above own max", SCRAMClientOptions{MaxIterations: 5000}, salt, 5001, "x", ErrSCRAMIterations},
		{"nonce not ours", SCRAMClientOptions{}, salt, 4096, "!", ErrSCRAMNonce},
		{"nonce not extended", SCRAMClientOptions{}, salt, 4096, "", ErrSCRAMNonce},
		{"nonce with comma", SCRAMClientOptions{}, salt, 4096, "a,b", ErrSCRAMNonce},
		{"nonce too long", SCRAMClientOptions{}, salt, 4096, strings.Repeat("x", 300), ErrSCRAMNonce},
		{"salt not base64", SCRAMClientOptions{}, "%%%", 4096, "x", ErrProtocol},
		{"empty salt", SCRAMClientOptions{}, "", 4096, "x", ErrProtocol},
	} {
		c, cnonce := newClient(tc.opts)
		combined := cnonce + tc.suffix
		if tc.suffix == "!" {
			combined = encodeB64(make([]byte, 16)) + "x"
		}
		_, err := c.Final(tc.salt, tc.iter, combined)
		wantErrIs(t, tc.name, err, tc.want)
		if err := c.VerifyServer(encodeB64(make([]byte, 32))); !errors.Is(err, ErrSCRAMServerSignature) {
			t.Fatalf("%s: VerifyServer after a refused Final: %v", tc.name, err)
		}
	}

	c, cnonce := newClient(SCRAMClientOptions{})
	wantErrIs(t, "VerifyServer before Final", c.VerifyServer("x"), ErrSCRAMServerSignature)
	if _, err := c.Final(salt, 4096, cnonce+"x"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Final(salt, 4096, cnonce+"x"); err == nil {
		t.Fatal("Final ran twice")
	}
	wantErrIs(t, "wrong signature", c.VerifyServer(encodeB64(make([]byte, 32))), ErrSCRAMServerSignature)
	wantErrIs(t, "garbage signature", c.VerifyServer("%%"), ErrSCRAMServerSignature)
	wantErrIs(t, "wrong signature", c.VerifyServer(encodeB64(make([]byte, 32))), ErrAuthFailed)
	if c.Verified() {
		t.Fatal("Verified after refusals")
	}
	_, err := NewSCRAMClient("alice", "", SCRAMClientOptions{})
	wantErrIs(t, "empty password", err, ErrSCRAMPassword)
	if _, err := NewSCRAMClient("alice", "pw", SCRAMClientOptions{MaxIterations: 100}); err == nil {
		t.Fatal("MaxIterations below the minimum accepted")
	}
	if _, err := NewSCRAMClient("alice", "pw", SCRAMClientOptions{Rand: bytes.NewReader(nil)}); err == nil {
		t.Fatal("client nonce from an empty reader")
	}
}

// TestSCRAMServerImpostor: a server that holds the StoredKey (it can check
// proofs) but not the ServerKey cannot sign, and the client refuses it.
func TestSCRAMServerImpostor(t *testing.T) {
	cred := scramCred(t, "pw")
	stolen := cred
	stolen.ServerKey = make([]byte, 32)
	s := newTestSCRAMServer(t, CredentialMap{"alice": stolen}, SCRAMServerOptions{})
	side, err := scramLogin(t, s, "alice", "pw")
	if side != "client verify" {
		t.Fatalf("failed at %q: %v", side, err)
	}
	wantErrIs(t, "impostor", err, ErrSCRAMServerSignature)
}

func TestSCRAMRateLimitPerUser(t *testing.T) {
	clock := newSCRAMClock()
	s := newTestSCRAMServer(t, CredentialMap{"alice": scramCred(t, "pw")}, SCRAMServerOptions{
		Now:       clock.Now,
		RateLimit: SCRAMRateLimit{UserBurst: 3, UserInterval: 10 * time.Second, AddrBurst: 1000},
	})
	// Failures come from different addresses: the user's own limit engages.
	attempt := func(user, password, remote string) error {
		t.Helper()
		c, err := NewSCRAMClient(user, password, SCRAMClientOptions{})
		if err != nil {
			t.Fatal(err)
		}
		u, cnonce := c.First()
		ch, err := s.Start(SCRAMStart{User: u, ClientNonce: cnonce, Remote: remote})
		if err != nil {
			return err
		}
		proof, err := c.Final(ch.Salt, ch.Iterations, ch.CombinedNonce)
		if err != nil {
			t.Fatal(err)
		}
		l, err := s.Finish(SCRAMProof{User: u, CombinedNonce: ch.CombinedNonce, ClientProof: proof, Remote: remote})
		if err != nil {
			return err
		}
		return c.VerifyServer(l.ServerSignature)
	}
	for i := range 10 {
		if err := attempt("alice", "pw", "192.0.2.1"); err != nil {
			t.Fatalf("success %d: %v (successes must not count)", i, err)
		}
	}
	for i := range 3 {
		wantErrIs(t, fmt.Sprintf("failure %d", i), attempt("alice", "guess", fmt.Sprintf("198.51.100.%d", i)), ErrSCRAMAuth)
	}
	err := attempt("alice", "pw", "192.0.2.1")
	wantErrIs(t, "after the burst, even the right password", err, ErrSCRAMRateLimited)
	if !strings.Contains(err.Error(), "retry in 10s") {
		t.Errorf("error %q does not say when to retry", err)
	}
	clock.Advance(9 * time.Second)
	wantErrIs(t, "9 s later", attempt("alice", "pw", "192.0.2.1"), ErrSCRAMRateLimited)
	clock.Advance(time.Second)
	wantErrIs(t, "10 s later, one more guess", attempt("alice", "guess", "198.51.100.9"), ErrSCRAMAuth)
	wantErrIs(t, "and no more", attempt("alice", "pw", "192.0.2.1"), ErrSCRAMRateLimited)
	clock.Advance(10 * time.Second)
	if err := attempt("alice", "pw", "192.0.2.1"); err != nil {
		t.Fatalf("the real user, once the interval passed: %v", err)
	}
	// The bound decays: after Burst intervals without failures, a full burst.
	clock.Advance(30 * time.Second)
	for i := range 3 {
		wantErrIs(t, fmt.Sprintf("decayed failure %d", i), attempt("alice", "guess", "198.51.100.1"), ErrSCRAMAuth)
	}
	wantErrIs(t, "limited again", attempt("alice", "pw", "192.0.2.1"), ErrSCRAMRateLimited)

	// Unknown names are limited alike: the limiter is no oracle.
	for range 3 {
		wantErrIs(t, "unknown user", attempt("mallory", "guess", "198.51.100.1"), ErrSCRAMAuth)
	}
	wantErrIs(t, "unknown user limited", attempt("mallory", "guess", "198.51.100.1"), ErrSCRAMRateLimited)
}

func TestSCRAMRateLimitPerAddress(t *testing.T) {
	clock := newSCRAMClock()
	store := CredentialMap{}
	for i := range 10 {
		store[fmt.Sprintf("user%d", i)] = scramCred(t, "pw")
	}
	s := newTestSCRAMServer(t, store, SCRAMServerOptions{
		Now:       clock.Now,
		RateLimit: SCRAMRateLimit{AddrBurst: 4, AddrInterval: time.Second},
	})
	start := func(user, remote string) (SCRAMChallenge, error) {
		return s.Start(SCRAMStart{User: user, ClientNonce: encodeB64(make([]byte, 16)), Remote: remote})
	}
	bad := encodeB64(make([]byte, 32))
	for i := range 4 {
		ch, err := start(fmt.Sprintf("user%d", i), "203.0.113.7")
		if err != nil {
			t.Fatal(err)
		}
		_, err = s.Finish(SCRAMProof{User: fmt.Sprintf("user%d", i), CombinedNonce: ch.CombinedNonce, ClientProof: bad, Remote: "203.0.113.7"})
		wantErrIs(t, "guess", err, ErrSCRAMAuth)
	}
	_, err := start("user9", "203.0.113.7")
	wantErrIs(t, "fifth user from the same address", err, ErrSCRAMRateLimited)
	if _, err := start("user9", "203.0.113.8"); err != nil {
		t.Fatalf("another address: %v", err)
	}
	if _, err := start("user9", ""); err != nil {
		t.Fatalf("no address: %v", err)
	}
	clock.Advance(time.Second)
	if _, err := start("user9", "203.0.113.7"); err != nil {
		t.Fatalf("after the interval: %v", err)
	}
}

// TestSCRAMRateLimitAtFinish: conversations started while the bucket was
// full cannot all be spent on guesses.
func TestSCRAMRateLimitAtFinish(t *testing.T) {
	clock := newSCRAMClock()
	s := newTestSCRAMServer(t, CredentialMap{"alice": scramCred(t, "pw")}, SCRAMServerOptions{
		Now: clock.Now, RateLimit: SCRAMRateLimit{UserBurst: 2},
	})
	var combined []string
	for range 5 {
		_, _, c, err := s.ClientFirst("alice", encodeB64(make([]byte, 16)))
		if err != nil {
			t.Fatal(err)
		}
		combined = append(combined, c)
	}
	bad := encodeB64(make([]byte, 32))
	for i, c := range combined {
		_, err := s.ClientFinal("alice", c, bad)
		if i < 2 {
			wantErrIs(t, "guess", err, ErrSCRAMAuth)
		} else {
			wantErrIs(t, "guess beyond the burst", err, ErrSCRAMRateLimited)
		}
	}
}

// TestSCRAMRateLimitMemory: each table stays bounded, and flooding it with
// fresh names evicts the least restricted entries, not the victim.
func TestSCRAMRateLimitMemory(t *testing.T) {
	clock := newSCRAMClock()
	l := newSCRAMLimiter(SCRAMRateLimit{UserBurst: 3, UserInterval: time.Minute, MaxEntries: 16}, clock.Now)
	for range 3 {
		l.fail("victim", "")
	}
	wantErrIs(t, "victim", l.allow("victim", ""), ErrSCRAMRateLimited)
	for i := range 1000 {
		l.fail(fmt.Sprintf("flood%d", i), fmt.Sprintf("10.0.%d.%d", i/256, i%256))
		if len(l.users.tat) > 16 || len(l.addrs.tat) > 16 {
			t.Fatalf("tables grew to %d users, %d addresses", len(l.users.tat), len(l.addrs.tat))
		}
	}
	wantErrIs(t, "victim after the flood", l.allow("victim", ""), ErrSCRAMRateLimited)
	clock.Advance(3 * time.Minute)
	if err := l.allow("victim", ""); err != nil {
		t.Fatalf("after decay: %v", err)
	}
	if _, ok := l.users.tat["victim"]; ok {
		t.Error("a refilled entry is kept")
	}
	none := newSCRAMLimiter(SCRAMRateLimit{Disabled: true}, clock.Now)
	for range 100 {
		none.fail("victim", "10.0.0.1")
	}
	if err := none.allow("victim", "10.0.0.1"); err != nil {
		t.Fatalf("disabled limiter: %v", err)
	}
}

func TestSCRAMRemoteKey(t *testing.T) {
	for _, tc := range []struct {
		addr net.Addr
		want string
	}{
		{&net.TCPAddr{IP: net.ParseIP("192.0.2.7"), Port: 4000}, "192.0.2.7"},
		{&net.TCPAddr{IP: net.ParseIP("::ffff:192.0.2.7"), Port: 4000}, "192.0.2.7"},
		{&net.TCPAddr{IP: net.ParseIP("2001:db8:1:2:3:4:5:6"), Port: 4000}, "2001:db8:1:2::/64"},
		{&net.TCPAddr{IP: net.ParseIP("fe80::1"), Port: 1, Zone: "eth0"}, "fe80::/64"},
		{&net.UDPAddr{IP: net.ParseIP("127.0.0.1"), Port: 1}, "127.0.0.1"},
		{&net.UnixAddr{Name: "/run/conclave.sock", Net: "unix"}, ""},
		{nil, ""},
	} {
		if got := SCRAMRemoteKey(tc.addr); got != tc.want {
			t.Errorf("SCRAMRemoteKey(%v) = %q, want %q", tc.addr, got, tc.want)
		}
	}
}

func TestNewCredential(t *testing.T) {
	c, err := NewCredential("pencil", 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Iterations != DefaultSCRAMIterations || DefaultSCRAMIterations != 600_000 || len(c.Salt) != SCRAMSaltLen {
		t.Fatalf("default credential: %d iterations, %d-byte salt", c.Iterations, len(c.Salt))
	}
	if err := c.check(); err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{1, MinSCRAMIterations - 1, MaxSCRAMIterations + 1, -5} {
		_, err := NewCredential("pencil", n, nil)
		wantErrIs(t, fmt.Sprint(n, " iterations"), err, ErrSCRAMIterations)
	}
	_, err = NewCredential("", 4096, nil)
	wantErrIs(t, "empty password", err, ErrSCRAMPassword)
	if _, err := NewCredential("pencil", 4096, io.LimitReader(bytes.NewReader(make([]byte, 64)), 3)); err == nil {
		t.Fatal("short salt read accepted")
	}
	a, _ := NewCredential("pencil", 4096, nil)
	b, _ := NewCredential("pencil", 4096, nil)
	if bytes.Equal(a.Salt, b.Salt) || bytes.Equal(a.StoredKey, b.StoredKey) {
		t.Fatal("two credentials share a salt")
	}
}

func TestParseVerifierRefusals(t *testing.T) {
	const good = "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU="
	if _, err := ParseVerifier(good); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, v string
		want    error
	}{
		{"empty", "", ErrSCRAMVerifier},
		{"md5", "md5abcdef", ErrSCRAMVerifier},
		{"sha1", strings.Replace(good, "SHA-256", "SHA-1", 1), ErrSCRAMVerifier},
		{"no keys", "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==", ErrSCRAMVerifier},
		{"no colon", strings.Replace(good, "4096:", "4096", 1), ErrSCRAMVerifier},
		{"low count", strings.Replace(good, "$4096:", "$4095:", 1), ErrSCRAMIterations},
		{"huge count", strings.Replace(good, "$4096:", "$999999999:", 1), ErrSCRAMIterations},
		{"signed count", strings.Replace(good, "$4096:", "$+4096:", 1), ErrSCRAMVerifier},
		{"leading zero", strings.Replace(good, "$4096:", "$04096:", 1), ErrSCRAMVerifier},
		{"empty salt", strings.Replace(good, "W22ZaJ0SNY7soEsUEjb6gQ==", "", 1), ErrSCRAMVerifier},
		{"bad salt", strings.Replace(good, "W22ZaJ0SNY7soEsUEjb6gQ==", "W22ZaJ0SNY7soEsUEjb6gQ", 1), ErrSCRAMVerifier},
		{"short key", strings.Replace(good, "WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=", "WG5d", 1), ErrSCRAMVerifier},
		{"space", good + " ", ErrSCRAMVerifier},
	} {
		_, err := ParseVerifier(tc.v)
		wantErrIs(t, tc.name, err, tc.want)
	}
}

func TestSCRAMServerOptionsRefused(t *testing.T) {
	if _, err := NewSCRAMServer(nil, SCRAMServerOptions{}); err == nil {
		t.Error("nil store accepted")
	}
	if _, err := NewSCRAMServer(CredentialMap{}, SCRAMServerOptions{Secret: make([]byte, 15)}); err == nil {
		t.Error("short secret accepted")
	}
	if _, err := NewSCRAMServer(CredentialMap{}, SCRAMServerOptions{UnknownUserIterations: 10}); err == nil {
		t.Error("10 fake iterations accepted")
	}
	if _, err := NewSCRAMServer(CredentialMap{}, SCRAMServerOptions{Rand: bytes.NewReader(nil)}); err == nil {
		t.Error("a secret from an empty reader")
	}
	s, err := NewSCRAMServer(CredentialMap{}, SCRAMServerOptions{Secret: scramTestSecret(), Rand: bytes.NewReader(nil)})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := s.ClientFirst("alice", encodeB64(make([]byte, 16))); err == nil {
		t.Error("a server nonce from an empty reader")
	}
}

// TestSCRAMSecretsNeverPrinted: no verb, no logger shows a credential's keys
// or a client's password.
func TestSCRAMSecretsNeverPrinted(t *testing.T) {
	cred := scramCred(t, "hunter2-password", RoleAdmin)
	c, _ := NewSCRAMClient("alice", "hunter2-password", SCRAMClientOptions{})
	secrets := []string{"hunter2", encodeB64(cred.StoredKey), encodeB64(cred.ServerKey),
		fmt.Sprintf("%x", cred.StoredKey), fmt.Sprintf("%x", cred.ServerKey), fmt.Sprint(cred.StoredKey[:4])}
	srv, err := NewSCRAMServer(CredentialMap{"alice": cred}, SCRAMServerOptions{Secret: scramTestSecret()})
	if err != nil {
		t.Fatal(err)
	}
	secrets = append(secrets, fmt.Sprint(scramTestSecret()[:4]), fmt.Sprintf("%x", scramTestSecret()[:4]))
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	log.Info("x", "cred", cred, "client", c, "server", srv, "password", Password("hunter2"))
	for _, v := range []any{cred, &cred, c, *c, srv, Password("hunter2"), []Credential{cred}, map[string]Credential{"alice": cred}, StoreUser{"alice", cred}} {
		for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%x", "%q", "%d"} {
			buf.WriteString(fmt.Sprintf(verb, v))
		}
	}
	out := buf.String()
	for _, s := range secrets {
		if strings.Contains(out, s) {
			t.Fatalf("output shows a secret %q:\n%s", s, out)
		}
	}
	if !strings.Contains(out, "4096 iterations") || !strings.Contains(out, "alice") {
		t.Fatalf("redacted output says too little:\n%s", out)
	}
}

// --- benchmarks ---

// benchSCRAMSetup returns a server holding a credential at the default
// 600 000 iterations and the client keys for it, derived once.
func benchSCRAMSetup(b *testing.B) (s *SCRAMServer, clientKey, storedKey []byte) {
	b.Helper()
	cred, err := NewCredential("pencil", DefaultSCRAMIterations, nil)
	if err != nil {
		b.Fatal(err)
	}
	s = newTestSCRAMServer(b, CredentialMap{"alice": cred}, SCRAMServerOptions{})
	clientKey, storedKey, _, err = scramClientKeys("pencil", cred.Salt, cred.Iterations)
	if err != nil {
		b.Fatal(err)
	}
	return s, clientKey, storedKey
}

// BenchmarkSCRAMServerLogin is one whole server-side login (Start and Finish)
// for a 600 000-iteration credential; the client's per-login work (one HMAC,
// its keys derived once) is included.
func BenchmarkSCRAMServerLogin(b *testing.B) {
	s, clientKey, storedKey := benchSCRAMSetup(b)
	nonce := make([]byte, 16)
	b.ReportAllocs()
	i := 0
	for ; b.Loop(); i++ {
		nonce[0], nonce[1], nonce[2] = byte(i), byte(i>>8), byte(i>>16)
		cnonce := encodeB64(nonce)
		ch, err := s.Start(SCRAMStart{User: "alice", ClientNonce: cnonce, Remote: "192.0.2.1"})
		if err != nil {
			b.Fatal(err)
		}
		am := scramAuthMessage("alice", cnonce, ch.CombinedNonce, ch.Salt, ch.Iterations, "biws")
		proof := encodeB64(scramClientProof(clientKey, storedKey, am))
		if _, err := s.Finish(SCRAMProof{User: "alice", CombinedNonce: ch.CombinedNonce, ClientProof: proof, Remote: "192.0.2.1"}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(i)/b.Elapsed().Seconds(), "logins/s")
}

// BenchmarkSCRAMServerLoginParallel is BenchmarkSCRAMServerLogin on every CPU.
func BenchmarkSCRAMServerLoginParallel(b *testing.B) {
	s, clientKey, storedKey := benchSCRAMSetup(b)
	var mu sync.Mutex
	next := 0
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		mu.Lock()
		id := next
		next++
		mu.Unlock()
		nonce := make([]byte, 16)
		nonce[15] = byte(id)
		for i := 0; pb.Next(); i++ {
			nonce[0], nonce[1], nonce[2] = byte(i), byte(i>>8), byte(i>>16)
			cnonce := encodeB64(nonce)
			ch, err := s.Start(SCRAMStart{User: "alice", ClientNonce: cnonce})
			if err != nil {
				b.Error(err)
				return
			}
			am := scramAuthMessage("alice", cnonce, ch.CombinedNonce, ch.Salt, ch.Iterations, "biws")
			proof := encodeB64(scramClientProof(clientKey, storedKey, am))
			if _, err := s.Finish(SCRAMProof{User: "alice", CombinedNonce: ch.CombinedNonce, ClientProof: proof}); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "logins/s")
}

// BenchmarkSCRAMServerFailure compares a failed login for a wrong password
// with one for an unknown user: they should cost the same.
func BenchmarkSCRAMServerFailure(b *testing.B) {
	s, _, _ := benchSCRAMSetup(b)
	s.limiter = nil // measure the check, not the refusal
	bad := encodeB64(make([]byte, 32))
	for _, user := range []string{"alice", "mallory"} {
		name := "wrong password"
		if user == "mallory" {
			name = "unknown user"
		}
		b.Run(name, func(b *testing.B) {
			nonce := make([]byte, 16)
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				nonce[0], nonce[1], nonce[2] = byte(i), byte(i>>8), byte(i>>16)
				ch, err := s.Start(SCRAMStart{User: user, ClientNonce: encodeB64(nonce)})
				if err != nil {
					b.Fatal(err)
				}
				if _, err := s.Finish(SCRAMProof{User: user, CombinedNonce: ch.CombinedNonce, ClientProof: bad}); !errors.Is(err, ErrSCRAMAuth) {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkSCRAMClientLogin is a whole first login as the client sees it,
// at the default 600 000 iterations: PBKDF2 dominates.
func BenchmarkSCRAMClientLogin(b *testing.B) {
	s, _, _ := benchSCRAMSetup(b)
	b.ReportAllocs()
	n := 0
	for ; b.Loop(); n++ {
		scramKeys.reset()
		if side, err := scramLogin(b, s, "alice", "pencil"); err != nil {
			b.Fatalf("%s: %v", side, err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(n), "ms/login")
}

// BenchmarkSCRAMClientLoginAgain is a login by a process that has logged
// in as the same user before: the derived keys are cached.
func BenchmarkSCRAMClientLoginAgain(b *testing.B) {
	s, _, _ := benchSCRAMSetup(b)
	if side, err := scramLogin(b, s, "alice", "pencil"); err != nil {
		b.Fatalf("%s: %v", side, err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if side, err := scramLogin(b, s, "alice", "pencil"); err != nil {
			b.Fatalf("%s: %v", side, err)
		}
	}
}
