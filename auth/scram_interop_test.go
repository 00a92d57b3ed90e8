package auth

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	xdg "github.com/xdg-go/scram"
)

// Interop with an independent SCRAM implementation, github.com/xdg-go/scram,
// speaking real RFC 5802 messages, and with a Python client written from the
// seed's own algorithm.

// xdgNonce16 makes xdg-go's nonces follow the seed's rule (it defaults to
// 24 bytes).
func xdgNonce16() string {
	b := make([]byte, 16)
	rand.Read(b)
	return base64.StdEncoding.EncodeToString(b)
}

// scramAttrs parses "k=v,k=v" SCRAM attributes; values may contain '='.
func scramAttrs(t testing.TB, msg string) map[string]string {
	t.Helper()
	m := make(map[string]string)
	for _, f := range strings.Split(msg, ",") {
		k, v, ok := strings.Cut(f, "=")
		if !ok {
			t.Fatalf("bad SCRAM attribute %q in %q", f, msg)
		}
		m[k] = v
	}
	return m
}

// xdgClientAgainstUs logs in with xdg-go's client to our server, carrying
// its messages through Start and Finish. binding nil is an unbound login.
func xdgClientAgainstUs(t *testing.T, s *SCRAMServer, user, password string, binding []byte) error {
	t.Helper()
	client, err := xdg.SHA256.NewClient(user, password, "")
	if err != nil {
		t.Fatal(err)
	}
	client = client.WithNonceGenerator(xdgNonce16)
	conv := client.NewConversation()
	wantGS2 := "n,,"
	if binding != nil {
		conv = client.NewConversationWithChannelBinding(xdg.ChannelBinding{Type: SCRAMChannelBindingName, Data: binding})
		wantGS2 = "p=" + SCRAMChannelBindingName + ",,"
	}
	c1, err := conv.Step("")
	if err != nil {
		t.Fatal(err)
	}
	bare, ok := strings.CutPrefix(c1, wantGS2)
	if !ok {
		t.Fatalf("xdg client-first %q lacks GS2 header %q", c1, wantGS2)
	}
	a1 := scramAttrs(t, bare)
	ch, err := s.Start(SCRAMStart{User: a1["n"], ClientNonce: a1["r"]})
	if err != nil {
		return err
	}
	c2, err := conv.Step(fmt.Sprintf("r=%s,s=%s,i=%d", ch.CombinedNonce, ch.Salt, ch.Iterations))
	if err != nil {
		t.Fatalf("xdg client refused our challenge: %v", err)
	}
	a2 := scramAttrs(t, c2)
	if a2["r"] != ch.CombinedNonce {
		t.Fatalf("xdg client-final %q has another nonce", c2)
	}
	// Our server never sees c=: it rebuilds it, and the proof covers it.
	login, err := s.Finish(SCRAMProof{User: a1["n"], CombinedNonce: a2["r"], ClientProof: a2["p"], ChannelBinding: binding})
	if err != nil {
		return err
	}
	if _, err := conv.Step("v=" + login.ServerSignature); err != nil || !conv.Valid() {
		return fmt.Errorf("xdg client refused our server signature: %v", err)
	}
	return nil
}

// usAgainstXDGServer logs in with our client to xdg-go's server holding
// cred for user.
func usAgainstXDGServer(t *testing.T, cred Credential, user, password string, opts SCRAMClientOptions) error {
	t.Helper()
	srv, err := xdg.SHA256.NewServer(func(u string) (xdg.StoredCredentials, error) {
		if u != user {
			return xdg.StoredCredentials{}, errors.New("unknown user")
		}
		return xdg.StoredCredentials{
			KeyFactors: xdg.KeyFactors{Salt: string(cred.Salt), Iters: cred.Iterations},
			StoredKey:  cred.StoredKey, ServerKey: cred.ServerKey,
		}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	conv := srv.NewConversation()
	c, err := NewSCRAMClient(user, password, opts)
	if err != nil {
		t.Fatal(err)
	}
	u, cnonce := c.First()
	s1, err := conv.Step("n,,n=" + u + ",r=" + cnonce)
	if err != nil {
		t.Fatalf("xdg server refused our client-first: %v (%s)", err, s1)
	}
	a := scramAttrs(t, s1)
	var iter int
	fmt.Sscan(a["i"], &iter)
	proof, err := c.Final(a["s"], iter, a["r"])
	if err != nil {
		return err
	}
	s2, err := conv.Step("c=biws,r=" + a["r"] + ",p=" + proof)
	if err != nil {
		return fmt.Errorf("%w: xdg server: %v (%s)", ErrSCRAMAuth, err, s2)
	}
	sig, ok := strings.CutPrefix(s2, "v=")
	if !ok {
		t.Fatalf("xdg server-final %q", s2)
	}
	return c.VerifyServer(sig)
}

func TestSCRAMInteropXDGClient(t *testing.T) {
	s := newTestSCRAMServer(t, CredentialMap{"alice": scramCred(t, "correct horse", RoleWorker)}, SCRAMServerOptions{})
	if err := xdgClientAgainstUs(t, s, "alice", "correct horse", nil); err != nil {
		t.Fatalf("unbound: %v", err)
	}
	h := sha256.Sum256([]byte("handshake transcript"))
	if err := xdgClientAgainstUs(t, s, "alice", "correct horse", h[:]); err != nil {
		t.Fatalf("bound (SCRAM-SHA-256-PLUS, %s): %v", SCRAMChannelBindingName, err)
	}
	wantErrIs(t, "wrong password", xdgClientAgainstUs(t, s, "alice", "wrong horse", nil), ErrSCRAMAuth)
	wantErrIs(t, "unknown user", xdgClientAgainstUs(t, s, "bob", "correct horse", nil), ErrSCRAMAuth)
	// The binding is checked: xdg's client bound to one transcript, our
	// server to another (a relayed login).
	client, _ := xdg.SHA256.NewClient("alice", "correct horse", "")
	conv := client.WithNonceGenerator(xdgNonce16).NewConversationWithChannelBinding(
		xdg.ChannelBinding{Type: SCRAMChannelBindingName, Data: []byte("transcript A")})
	c1, _ := conv.Step("")
	a1 := scramAttrs(t, strings.TrimPrefix(c1, "p="+SCRAMChannelBindingName+",,"))
	ch, err := s.Start(SCRAMStart{User: a1["n"], ClientNonce: a1["r"]})
	if err != nil {
		t.Fatal(err)
	}
	c2, _ := conv.Step(fmt.Sprintf("r=%s,s=%s,i=%d", ch.CombinedNonce, ch.Salt, ch.Iterations))
	a2 := scramAttrs(t, c2)
	_, err = s.Finish(SCRAMProof{User: "alice", CombinedNonce: a2["r"], ClientProof: a2["p"], ChannelBinding: []byte("transcript B")})
	wantErrIs(t, "relayed bound login", err, ErrSCRAMAuth)
	// And an xdg client refuses a server signature that is not ours.
	client, _ = xdg.SHA256.NewClient("alice", "correct horse", "")
	conv = client.WithNonceGenerator(xdgNonce16).NewConversation()
	c1, _ = conv.Step("")
	a1 = scramAttrs(t, strings.TrimPrefix(c1, "n,,"))
	ch, _ = s.Start(SCRAMStart{User: a1["n"], ClientNonce: a1["r"]})
	c2, _ = conv.Step(fmt.Sprintf("r=%s,s=%s,i=%d", ch.CombinedNonce, ch.Salt, ch.Iterations))
	a2 = scramAttrs(t, c2)
	login, err := s.Finish(SCRAMProof{User: "alice", CombinedNonce: a2["r"], ClientProof: a2["p"]})
	if err != nil {
		t.Fatal(err)
	}
	sig, _ := base64.StdEncoding.DecodeString(login.ServerSignature)
	sig[0] ^= 1
	if _, err := conv.Step("v=" + base64.StdEncoding.EncodeToString(sig)); err == nil || conv.Valid() {
		t.Fatal("xdg client accepted a tampered server signature")
	}
}

func TestSCRAMInteropXDGServer(t *testing.T) {
	cred := scramCred(t, "correct horse")
	if err := usAgainstXDGServer(t, cred, "alice", "correct horse", SCRAMClientOptions{}); err != nil {
		t.Fatalf("login: %v", err)
	}
	wantErrIs(t, "wrong password", usAgainstXDGServer(t, cred, "alice", "wrong horse", SCRAMClientOptions{}), ErrSCRAMAuth)
	// xdg's server holding the right StoredKey but a wrong ServerKey accepts
	// the proof but cannot sign: our client refuses it.
	impostor := cred
	impostor.ServerKey = bytes.Repeat([]byte{7}, 32)
	wantErrIs(t, "impostor", usAgainstXDGServer(t, impostor, "alice", "correct horse", SCRAMClientOptions{}), ErrSCRAMServerSignature)
	weak := cred
	weak.Iterations = 1000
	wantErrIs(t, "1000 iterations", usAgainstXDGServer(t, weak, "alice", "correct horse", SCRAMClientOptions{}), ErrSCRAMIterations)
}

// TestSCRAMInteropCredentials: xdg-go derives the same verifier from the
// same password, salt and count.
func TestSCRAMInteropCredentials(t *testing.T) {
	salt := scramSeq(0xa0, 16)
	ours, err := NewCredential("pencil", 4096, bytes.NewReader(salt))
	if err != nil {
		t.Fatal(err)
	}
	client, _ := xdg.SHA256.NewClient("node_1", "pencil", "")
	theirs, err := client.GetStoredCredentialsWithError(xdg.KeyFactors{Salt: string(salt), Iters: 4096})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(ours.StoredKey, theirs.StoredKey) || !bytes.Equal(ours.ServerKey, theirs.ServerKey) {
		t.Fatal("xdg-go derives other keys")
	}
}

// --- a Python client over TCP ---

// scramLineServer serves the line protocol testdata/scram_client.py speaks:
// one JSON object a line, the seed's two calls. It exists for this test
// only; the real transport is the native handshake.
type scramLineServer struct {
	srv     *SCRAMServer
	tamper  bool       // flip a bit of the server signature
	results chan error // Finish's outcome for each login
}

func startSCRAMLineServer(t *testing.T, srv *SCRAMServer, tamper bool) (string, *scramLineServer) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ls := &scramLineServer{srv: srv, tamper: tamper, results: make(chan error, 16)}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				ls.serve(c)
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	return port(t, ln.Addr().String()), ls
}

func (ls *scramLineServer) serve(c net.Conn) {
	c.SetDeadline(time.Now().Add(30 * time.Second))
	r := bufio.NewReader(c)
	enc := json.NewEncoder(c)
	read := func(v any) bool {
		line, err := r.ReadBytes('\n')
		return err == nil && json.Unmarshal(line, v) == nil
	}
	var first struct {
		User   string `json:"user"`
		Cnonce string `json:"cnonce"`
	}
	if !read(&first) {
		return
	}
	remote := SCRAMRemoteKey(c.RemoteAddr())
	ch, err := ls.srv.Start(SCRAMStart{User: first.User, ClientNonce: first.Cnonce, Remote: remote})
	if err != nil {
		ls.results <- err
		enc.Encode(map[string]string{"error": err.Error()})
		return
	}
	enc.Encode(map[string]any{"salt": ch.Salt, "iterations": ch.Iterations, "combined_nonce": ch.CombinedNonce})
	var final struct {
		User          string `json:"user"`
		CombinedNonce string `json:"combined_nonce"`
		Proof         string `json:"proof"`
	}
	if !read(&final) {
		return
	}
	login, err := ls.srv.Finish(SCRAMProof{User: final.User, CombinedNonce: final.CombinedNonce, ClientProof: final.Proof, Remote: remote})
	ls.results <- err
	if err != nil {
		enc.Encode(map[string]string{"error": err.Error()})
		return
	}
	sig := login.ServerSignature
	if ls.tamper {
		b, _ := base64.StdEncoding.DecodeString(sig)
		b[0] ^= 1
		sig = base64.StdEncoding.EncodeToString(b)
	}
	enc.Encode(map[string]string{"signature": sig})
}

func TestSCRAMPythonClient(t *testing.T) {
	t.Parallel()
	for _, py := range findPythons(t) {
		t.Run(py.String(), func(t *testing.T) {
			t.Parallel()
			store := CredentialMap{"alice": scramCred(t, "correct horse", RoleClient)}
			srv := newTestSCRAMServer(t, store, SCRAMServerOptions{})
			port, ls := startSCRAMLineServer(t, srv, false)
			for _, tc := range []struct {
				name, user, password string
				code                 int
				line                 string
				want                 error // Finish's or Start's outcome
			}{
				{"login", "alice", "correct horse", 0, "OK alice", nil},
				{"wrong password", "alice", "wrong horse", 2, "REFUSED " + ErrSCRAMAuth.Error(), ErrSCRAMAuth},
				{"unknown user", "mallory", "correct horse", 2, "REFUSED " + ErrSCRAMAuth.Error(), ErrSCRAMAuth},
				{"bad name", "1alice", "correct horse", 2, "REFUSED auth: invalid user name", ErrSCRAMUserName},
			} {
				p := startPeer(t, pyTestCtx(t), tc.user+"\n"+tc.password, []string{pyenvVersions}, py.path, "testdata/scram_client.py", port)
				p.expectExit(tc.code, tc.line)
				err := <-ls.results
				if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
					t.Fatalf("%s: server side %v, want %v", tc.name, err, tc.want)
				}
			}
			// A server that cannot sign is refused by the client.
			tport, tamperLS := startSCRAMLineServer(t, srv, true)
			p := startPeer(t, pyTestCtx(t), "alice\ncorrect horse", []string{pyenvVersions}, py.path, "testdata/scram_client.py", tport)
			p.expectExit(3, "BAD SERVER SIGNATURE")
			if err := <-tamperLS.results; err != nil {
				t.Fatal(err)
			}
		})
	}
}
