package auth

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/md5"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"hash"
	"io"
	"net"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/seed0811993b/conclave/internal/frame"
)

// Known answers from facts.md section 1, checked against CPython: authkey
// "secret", server random 00 01 .. 27, client random ff fe .. d8.
var (
	katKey          = Key("secret")
	katServerRandom = pySeq(0x00, 1, 40)
	katClientRandom = pySeq(0xff, -1, 40)

	katServerM             = "{sha256}" + string(katServerRandom) // the challenge proper
	katServerChallengeWire = pyUnhex("0000003b") + "#CHALLENGE#" + katServerM
	katClientAnswerWire    = pyUnhex("00000028") + "{sha256}" + pyUnhex("fc57fbe650d6124b98215e7b5d197d5807ad69982d275a9735ea2d56f1fa6989")
	katClientM             = "{sha256}" + string(katClientRandom)
	katClientChallenge     = "#CHALLENGE#" + katClientM
	katServerAnswer        = "{sha256}" + pyUnhex("028d83f1775c7dfc3616a19ab3e530c75cc81b7dace91ade0ad87ffe6ee0ef28")

	// A Python 3.11 client's answer to katServerChallenge: raw HMAC-MD5 over
	// all 48 bytes.
	katLegacyClientAnswer = pyUnhex("8e48d2bb349b4b72b9382999ed5b62eb")
	// A Python 3.11 server's 20-byte challenge and a client's answer to it.
	katLegacyChallenge = "#CHALLENGE#" + string(pySeq(0x00, 1, 20))
	katLegacyAnswer    = pyUnhex("7defa9cc46abc3583325d17ccda75190")
	// A Python 3.11 server's answer to katClientChallenge (computed with
	// CPython's hmac module).
	katLegacyServerAnswer = pyUnhex("d7c772a76c5a989df98e369369dcef98")
)

func pySeq(start byte, step, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(int(start) + step*i)
	}
	return b
}

func pyUnhex(s string) string {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return string(b)
}

func pyWire(payload string) []byte { return frame.Append(nil, []byte(payload)) }

// pyPayloadOf strips the frame header from one whole frame.
func pyPayloadOf(t testing.TB, w []byte) string {
	t.Helper()
	n, hdr, need, err := frame.ParseHeader(w, len(w))
	if err != nil || need > 0 || hdr+n != len(w) {
		t.Fatalf("not one whole frame: %x (n=%d hdr=%d need=%d err=%v)", w, n, hdr, need, err)
	}
	return string(w[hdr:])
}

func katConfig(random []byte, legacy bool) *Config {
	return &Config{Key: katKey, Mode: ModePython, Rand: bytes.NewReader(random), PythonLegacyMD5: legacy}
}

// katServer and katClient return state machines with pinned randomness; they
// bypass Config.check, whose MinKeyLen the 6-byte KAT key does not meet. The
// cleanup matters: a pinned challenge left registered would make other tests
// see a reflection.
func katServer(t testing.TB, legacy bool) *pythonServer {
	t.Helper()
	s := newPythonServer(katConfig(katServerRandom, legacy), endpoints{}).(*pythonServer)
	t.Cleanup(s.release)
	return s
}

func katClient(t testing.TB, legacy bool) *pythonClient {
	t.Helper()
	c := newPythonClient(katConfig(katClientRandom, legacy), endpoints{}).(*pythonClient)
	t.Cleanup(c.release)
	return c
}

// pyWantStep runs one step and checks its outcome exactly.
func pyWantStep(t *testing.T, h handshaker, in string, wantOut []byte, wantDone bool) {
	t.Helper()
	var inb []byte
	if in != "" {
		inb = []byte(in)
	}
	out, done, err := h.step(inb)
	if err != nil {
		t.Fatalf("step: %v", err)
	}
	if !bytes.Equal(out, wantOut) || done != wantDone {
		t.Fatalf("step = %x, done %v; want %x, done %v", out, done, wantOut, wantDone)
	}
}

// pyWantStepErr runs one step and checks that it fails with target, sends
// exactly notice (nil for nothing) and leaks no secret into the message.
func pyWantStepErr(t *testing.T, h handshaker, in []byte, target error, notice []byte) error {
	t.Helper()
	out, done, err := h.step(in)
	if !errors.Is(err, target) {
		t.Fatalf("step err = %v, want %v", err, target)
	}
	if done {
		t.Fatal("step reported done with an error")
	}
	if !bytes.Equal(out, notice) {
		t.Fatalf("step sent %x, want %x", out, notice)
	}
	pyAssertNoSecrets(t, err)
	return err
}

func pyAssertNoSecrets(t *testing.T, err error) {
	t.Helper()
	msg := err.Error()
	for _, secret := range []string{string(katKey), string(katServerRandom), string(katClientRandom),
		hex.EncodeToString(katServerRandom), hex.EncodeToString(katClientRandom), katServerAnswer[8:],
		hex.EncodeToString([]byte(katServerAnswer[8:]))} {
		if strings.Contains(msg, secret) {
			t.Fatalf("error message %q leaks secret bytes", msg)
		}
	}
}

func TestPythonServerKnownAnswers(t *testing.T) {
	s := katServer(t, false)
	pyWantStep(t, s, "", []byte(katServerChallengeWire), false)
	if len(katServerChallengeWire) != 63 {
		t.Fatalf("challenge frame is %d bytes, want 63", len(katServerChallengeWire))
	}
	if !issuedChallenges.contains([]byte(katServerM)) {
		t.Fatal("issued challenge is not registered")
	}
	pyWantStep(t, s, katClientAnswerWire[4:], pyWire(pyWelcome), false)
	pyWantStep(t, s, katClientChallenge, pyWire(katServerAnswer), false)
	pyWantStep(t, s, pyWelcome, nil, true)
	if issuedChallenges.contains([]byte(katServerM)) {
		t.Fatal("challenge still registered after the handshake")
	}
	want := ConnectionState{Mode: ModePython, PythonDigest: "sha256",
		MaxFrameSize: DefaultMaxFrameSize, PeerMaxFrameSize: DefaultMaxFrameSize}
	if got := s.result().state; !reflect.DeepEqual(got, want) {
		t.Fatalf("state = %+v, want %+v", got, want)
	}
	if r := s.result(); r.readSecret != nil || r.writeSecret != nil {
		t.Fatal("python mode produced record secrets")
	}
	if s.readLimit() != 256 {
		t.Fatalf("readLimit = %d, want Python's 256", s.readLimit())
	}
	pyWantStepErr(t, s, []byte(pyWelcome), ErrProtocol, nil)
}

func TestPythonClientKnownAnswers(t *testing.T) {
	c := katClient(t, false)
	pyWantStep(t, c, "", nil, false)
	// The client sends its challenge along with its answer (one round trip
	// saved); the bytes are those Python's client sends in two writes.
	pyWantStep(t, c, katServerChallengeWire[4:], append([]byte(katClientAnswerWire), pyWire(katClientChallenge)...), false)
	pyWantStep(t, c, pyWelcome, nil, false)
	if !issuedChallenges.contains([]byte(katClientM)) {
		t.Fatal("issued challenge is not registered")
	}
	pyWantStep(t, c, katServerAnswer, pyWire(pyWelcome), true)
	if issuedChallenges.contains([]byte(katClientM)) {
		t.Fatal("challenge still registered after the handshake")
	}
	if got := c.result().state; got.PythonDigest != "sha256" || got.Mode != ModePython || got.Sealed {
		t.Fatalf("state = %+v", got)
	}
}

func TestPythonLegacyKnownAnswers(t *testing.T) {
	t.Run("server", func(t *testing.T) {
		s := katServer(t, true)
		pyWantStep(t, s, "", []byte(katServerChallengeWire), false)
		pyWantStep(t, s, katLegacyClientAnswer, pyWire(pyWelcome), false)
		pyWantStep(t, s, katLegacyChallenge, pyWire(katLegacyAnswer), false)
		pyWantStep(t, s, pyWelcome, nil, true)
		if d := s.result().state.PythonDigest; d != "md5" {
			t.Fatalf("PythonDigest = %q, want md5", d)
		}
	})
	t.Run("client", func(t *testing.T) {
		c := katClient(t, true)
		pyWantStep(t, c, "", nil, false)
		pyWantStep(t, c, katLegacyChallenge, append(pyWire(katLegacyAnswer), pyWire(katClientChallenge)...), false)
		pyWantStep(t, c, pyWelcome, nil, false)
		pyWantStep(t, c, katLegacyServerAnswer, pyWire(pyWelcome), true)
		if d := c.result().state.PythonDigest; d != "md5" {
			t.Fatalf("PythonDigest = %q, want md5", d)
		}
	})
	t.Run("modern peer keeps sha256", func(t *testing.T) {
		s := katServer(t, true)
		pyWantStep(t, s, "", []byte(katServerChallengeWire), false)
		pyWantStep(t, s, katClientAnswerWire[4:], pyWire(pyWelcome), false)
		pyWantStep(t, s, katClientChallenge, pyWire(katServerAnswer), false)
		pyWantStep(t, s, pyWelcome, nil, true)
		if d := s.result().state.PythonDigest; d != "sha256" {
			t.Fatalf("PythonDigest = %q, want sha256", d)
		}
	})
}

func TestPythonLegacyRefusedByDefault(t *testing.T) {
	t.Run("server", func(t *testing.T) {
		s := katServer(t, false)
		pyWantStep(t, s, "", []byte(katServerChallengeWire), false)
		err := pyWantStepErr(t, s, []byte(katLegacyClientAnswer), ErrLegacyDigest, pyWire(pyFailure))
		if !strings.Contains(err.Error(), "PythonLegacyMD5") {
			t.Fatalf("error %q does not name Config.PythonLegacyMD5", err)
		}
		if issuedChallenges.contains([]byte(katServerM)) {
			t.Fatal("challenge still registered after a failure")
		}
	})
	t.Run("client", func(t *testing.T) {
		c := katClient(t, false)
		pyWantStep(t, c, "", nil, false)
		err := pyWantStepErr(t, c, []byte(katLegacyChallenge), ErrLegacyDigest, nil)
		if !strings.Contains(err.Error(), "PythonLegacyMD5") {
			t.Fatalf("error %q does not name Config.PythonLegacyMD5", err)
		}
	})
}

// TestPythonServerRejectsAnswers feeds bad answers to the server's challenge.
// Every one of them gets #FAILURE#, as Python's own Listener does.
func TestPythonServerRejectsAnswers(t *testing.T) {
	goodMAC := katClientAnswerWire[4+8:]
	md5MAC := func(msg string) string {
		m := hmac.New(md5.New, katKey)
		m.Write([]byte(msg))
		return string(m.Sum(nil))
	}
	challenge := katServerM
	tests := []struct {
		name   string
		answer string
		legacy bool
		want   error
	}{
		{"empty", "", false, ErrProtocol},
		{"no prefix", goodMAC + "12345678", false, ErrProtocol},
		{"short mac", "{sha256}" + goodMAC[:31], false, ErrProtocol},
		{"long mac", "{sha256}" + goodMAC + "x", false, ErrProtocol},
		{"wrong mac", "{sha256}" + strings.Repeat("x", 32), false, ErrAuthFailed},
		{"md5 downgrade", "{md5}" + md5MAC(challenge), false, ErrAuthFailed},
		{"md5 downgrade with legacy on", "{md5}" + md5MAC(challenge), true, ErrAuthFailed},
		{"sha384", "{sha384}" + strings.Repeat("x", 48), false, ErrAuthFailed},
		{"sha3_256", "{sha3_256}" + strings.Repeat("x", 32), false, ErrAuthFailed},
		{"unknown digest", "{blake2b}" + strings.Repeat("x", 64), false, ErrProtocol},
		{"empty digest name", "{}" + strings.Repeat("x", 38), false, ErrProtocol},
		{"brace beyond index 9", "{sha3_256xx}" + strings.Repeat("x", 32), false, ErrProtocol},
		{"20 bytes", strings.Repeat("x", 20), false, ErrProtocol},
		{"wrong legacy mac", strings.Repeat("x", 16), true, ErrAuthFailed},
		{"sha256 over the nonce only", "{sha256}" + string(pyMAC(sha256.New, katKey, katServerRandom)), false, ErrAuthFailed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := katServer(t, tt.legacy)
			if _, _, err := s.step(nil); err != nil {
				t.Fatal(err)
			}
			err := pyWantStepErr(t, s, []byte(tt.answer), tt.want, pyWire(pyFailure))
			if strings.Contains(tt.name, "downgrade") && !strings.Contains(err.Error(), "md5") {
				t.Fatalf("downgrade error %q does not say which digest the peer wanted", err)
			}
		})
	}
}

// TestPythonRejectsChallenges feeds bad challenges to both roles. Nothing is
// sent back: Python's answer_challenge just raises, so do we.
func TestPythonRejectsChallenges(t *testing.T) {
	nonce := string(pySeq(0x40, 1, 40))
	tests := []struct {
		name      string
		challenge string
		legacy    bool
		want      error
	}{
		{"empty", "", false, ErrProtocol},
		{"no tag", "{sha256}" + nonce, false, ErrProtocol},
		{"welcome instead", pyWelcome, false, ErrProtocol},
		{"tag only", "#CHALLENGE#", false, ErrProtocol},
		{"16 bytes", "#CHALLENGE#" + nonce[:16], true, ErrProtocol},
		{"19 bytes", "#CHALLENGE#" + nonce[:19], true, ErrProtocol},
		{"no prefix", "#CHALLENGE#" + nonce, false, ErrProtocol},
		{"short nonce", "#CHALLENGE#{sha256}" + nonce[:19], false, ErrProtocol},
		{"md5 downgrade", "#CHALLENGE#{md5}" + nonce, false, ErrAuthFailed},
		{"sha384", "#CHALLENGE#{sha384}" + nonce, false, ErrAuthFailed},
		{"sha3_384", "#CHALLENGE#{sha3_384}" + nonce, false, ErrAuthFailed},
		{"unknown digest", "#CHALLENGE#{sha1}" + nonce, false, ErrProtocol},
		{"legacy refused", "#CHALLENGE#" + nonce[:20], false, ErrLegacyDigest},
	}
	for _, tt := range tests {
		t.Run("client/"+tt.name, func(t *testing.T) {
			c := katClient(t, tt.legacy)
			if _, _, err := c.step(nil); err != nil {
				t.Fatal(err)
			}
			pyWantStepErr(t, c, []byte(tt.challenge), tt.want, nil)
		})
		t.Run("server/"+tt.name, func(t *testing.T) {
			s := katServer(t, tt.legacy)
			pyWantStep(t, s, "", []byte(katServerChallengeWire), false)
			answer := katClientAnswerWire[4:]
			if tt.legacy {
				answer = katLegacyClientAnswer
			}
			pyWantStep(t, s, answer, pyWire(pyWelcome), false)
			err := pyWantStepErr(t, s, []byte(tt.challenge), tt.want, nil)
			if tt.want == ErrLegacyDigest && !strings.Contains(err.Error(), "PythonLegacyMD5") {
				t.Fatalf("error %q does not name Config.PythonLegacyMD5", err)
			}
		})
	}
}

func TestPythonVerdicts(t *testing.T) {
	t.Run("client told failure", func(t *testing.T) {
		c := katClient(t, false)
		pyWantStep(t, c, "", nil, false)
		pyWantStep(t, c, katServerChallengeWire[4:], append([]byte(katClientAnswerWire), pyWire(katClientChallenge)...), false)
		pyWantStepErr(t, c, []byte(pyFailure), ErrAuthFailed, nil)
	})
	t.Run("client told nonsense", func(t *testing.T) {
		c := katClient(t, false)
		pyWantStep(t, c, "", nil, false)
		pyWantStep(t, c, katServerChallengeWire[4:], append([]byte(katClientAnswerWire), pyWire(katClientChallenge)...), false)
		pyWantStepErr(t, c, []byte("#WELCOME"), ErrProtocol, nil)
	})
	t.Run("client gets a wrong answer", func(t *testing.T) {
		c := katClient(t, false)
		pyWantStep(t, c, "", nil, false)
		pyWantStep(t, c, katServerChallengeWire[4:], append([]byte(katClientAnswerWire), pyWire(katClientChallenge)...), false)
		pyWantStep(t, c, pyWelcome, nil, false)
		pyWantStepErr(t, c, []byte("{sha256}"+strings.Repeat("\x00", 32)), ErrAuthFailed, pyWire(pyFailure))
		if issuedChallenges.contains([]byte(katClientM)) {
			t.Fatal("challenge still registered after a failure")
		}
	})
	t.Run("server told failure", func(t *testing.T) {
		s := katServer(t, false)
		pyWantStep(t, s, "", []byte(katServerChallengeWire), false)
		pyWantStep(t, s, katClientAnswerWire[4:], pyWire(pyWelcome), false)
		pyWantStep(t, s, katClientChallenge, pyWire(katServerAnswer), false)
		pyWantStepErr(t, s, []byte(pyFailure), ErrAuthFailed, nil)
	})
	t.Run("digest switch", func(t *testing.T) {
		s := katServer(t, true)
		pyWantStep(t, s, "", []byte(katServerChallengeWire), false)
		pyWantStep(t, s, katLegacyClientAnswer, pyWire(pyWelcome), false)
		pyWantStepErr(t, s, []byte(katClientChallenge), ErrProtocol, nil)
	})
}

func TestPythonRandomFailure(t *testing.T) {
	cfg := &Config{Key: katKey, Mode: ModePython, Rand: bytes.NewReader(make([]byte, 39))}
	s := newPythonServer(cfg, endpoints{})
	if _, _, err := s.step(nil); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("short random: err = %v", err)
	}
}

// TestPythonStateMachineReflection checks the registry across roles: a
// client must not answer the challenge a server of this process issued.
func TestPythonStateMachineReflection(t *testing.T) {
	s := newPythonServer(&Config{Key: katKey, Mode: ModePython}, endpoints{}).(*pythonServer)
	t.Cleanup(s.release)
	out, _, err := s.step(nil)
	if err != nil {
		t.Fatal(err)
	}
	c := newPythonClient(&Config{Key: Key("another key entirely"), Mode: ModePython}, endpoints{}).(*pythonClient)
	t.Cleanup(c.release)
	if _, _, err := c.step(nil); err != nil {
		t.Fatal(err)
	}
	pyWantStepErr(t, c, []byte(pyPayloadOf(t, out)), ErrReflected, nil)
}

// --- over loopback TCP through the public API ---

func pyTestKey(t testing.TB) Key {
	t.Helper()
	k, err := GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func pyCfg(key Key) *Config { return &Config{Key: key, Mode: ModePython} }

// pyTestCtx bounds a test's handshakes and child processes. It only guards
// against hangs: a loaded two-core machine can take seconds to start Python.
func pyTestCtx(t testing.TB) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// pyListen starts a ModePython listener whose first accepted connection is
// handshaken; the result arrives on the returned channel.
func pyListen(t testing.TB, cfg *Config) (addr string, accepted <-chan pyResult) {
	t.Helper()
	ln, err := Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := pyTestCtx(t)
	return ln.Addr().String(), pyBackground(t, ln.Close, func() (*Conn, error) {
		c, err := ln.Accept()
		if err != nil {
			return nil, err
		}
		return c.(*Conn), c.(*Conn).HandshakeContext(ctx)
	})
}

// pyDial runs auth.Dial in the background.
func pyDial(t testing.TB, addr string, cfg *Config) <-chan pyResult {
	t.Helper()
	ctx := pyTestCtx(t)
	return pyBackground(t, nil, func() (*Conn, error) { return Dial(ctx, "tcp", addr, cfg) })
}

type pyResult struct {
	c   *Conn
	err error
}

// pyBackground runs one handshake in a goroutine. Cleanup calls stop, waits
// for the goroutine (the test context is cancelled by then, so it ends) and
// closes the Conn.
func pyBackground(t testing.TB, stop func() error, run func() (*Conn, error)) <-chan pyResult {
	t.Helper()
	ch := make(chan pyResult, 1)
	var (
		mu   sync.Mutex
		conn *Conn
	)
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := run()
		mu.Lock()
		conn = c
		mu.Unlock()
		ch <- pyResult{c, err}
	}()
	t.Cleanup(func() {
		if stop != nil {
			_ = stop()
		}
		<-done
		mu.Lock()
		defer mu.Unlock()
		if conn != nil {
			conn.Close()
		}
	})
	return ch
}

// pyFakePeer is a hand-driven Python peer on a raw TCP connection.
type pyFakePeer struct {
	t testing.TB
	net.Conn
}

func newPyFakePeer(t testing.TB, c net.Conn) *pyFakePeer {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	t.Cleanup(func() { c.Close() })
	return &pyFakePeer{t, c}
}

func (p *pyFakePeer) send(payload string) {
	p.t.Helper()
	if _, err := p.Write(pyWire(payload)); err != nil {
		p.t.Fatalf("fake peer send: %v", err)
	}
}

func (p *pyFakePeer) recv() string {
	p.t.Helper()
	b, err := frame.Read(p, 1<<20)
	if err != nil {
		p.t.Fatalf("fake peer recv: %v", err)
	}
	return string(b)
}

// expectClose checks that the other side closed without sending more.
func (p *pyFakePeer) expectClose() {
	p.t.Helper()
	if b, err := frame.Read(p, 1<<20); err == nil {
		p.t.Fatalf("fake peer got %q, want the connection closed", b)
	}
}

// pyFakeClient connects a fake peer to addr.
func pyFakeClient(t testing.TB, addr string) *pyFakePeer {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	return newPyFakePeer(t, c)
}

// pyFakeServer listens for Go dialers and hands out fake peers.
type pyFakeServer struct {
	t  testing.TB
	ln net.Listener
}

func newPyFakeServer(t testing.TB) *pyFakeServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return &pyFakeServer{t, ln}
}

func (s *pyFakeServer) addr() string { return s.ln.Addr().String() }

func (s *pyFakeServer) accept() *pyFakePeer {
	s.t.Helper()
	_ = s.ln.(*net.TCPListener).SetDeadline(time.Now().Add(10 * time.Second))
	c, err := s.ln.Accept()
	if err != nil {
		s.t.Fatal(err)
	}
	return newPyFakePeer(s.t, c)
}

func pyMACOf(h func() hash.Hash, key []byte, msg string) string {
	return string(pyMAC(h, key, []byte(msg)))
}

// pyWantErr receives a handshake result and checks its error.
func pyWantErr(t testing.TB, ch <-chan pyResult, target error) error {
	t.Helper()
	r := <-ch
	if !errors.Is(r.err, target) {
		t.Fatalf("err = %v, want %v", r.err, target)
	}
	return r.err
}

// TestPythonModeGoToGo runs both roles against a Go peer in a child process
// (see TestPythonModeSelfConnection for why not in this one).
func TestPythonModeGoToGo(t *testing.T) {
	t.Parallel()
	check := func(t *testing.T, c *Conn, p *peerProc) {
		t.Helper()
		st := c.ConnectionState()
		if !st.HandshakeComplete || st.Mode != ModePython || st.PythonDigest != "sha256" || st.Sealed ||
			st.MaxFrameSize != DefaultMaxFrameSize || st.PeerMaxFrameSize != DefaultMaxFrameSize {
			t.Errorf("state %+v", st)
		}
		if got := p.line("HANDSHAKE"); got != "ok sha256" {
			t.Fatalf("peer handshake: %s", got)
		}
		pyEchoCheck(t, c)
		c.Close()
		p.expectExit(0, "ECHOED 2 <nil>")
	}
	t.Run("we listen", func(t *testing.T) {
		t.Parallel()
		key := pyTestKey(t)
		addr, accepted := pyListen(t, pyCfg(key))
		p := runGoPeer(t, key, "dial", addr)
		r := <-accepted
		if r.err != nil {
			t.Fatal(r.err)
		}
		check(t, r.c, p)
	})
	t.Run("we dial", func(t *testing.T) {
		t.Parallel()
		key := pyTestKey(t)
		p := runGoPeer(t, key, "listen", "")
		r := <-pyDial(t, "127.0.0.1:"+p.line("PORT"), pyCfg(key))
		if r.err != nil {
			t.Fatal(r.err)
		}
		check(t, r.c, p)
	})
}

func TestPythonModeWrongKey(t *testing.T) {
	t.Parallel()
	t.Run("we listen", func(t *testing.T) {
		t.Parallel()
		addr, accepted := pyListen(t, pyCfg(pyTestKey(t)))
		p := runGoPeer(t, pyTestKey(t), "dial", addr)
		pyWantErr(t, accepted, ErrAuthFailed)
		if got := p.line("HANDSHAKE error"); got != ErrAuthFailed.Error() {
			t.Fatalf("peer: %s", got)
		}
	})
	t.Run("we dial", func(t *testing.T) {
		t.Parallel()
		p := runGoPeer(t, pyTestKey(t), "listen", "")
		pyWantErr(t, pyDial(t, "127.0.0.1:"+p.line("PORT"), pyCfg(pyTestKey(t))), ErrAuthFailed)
		if got := p.line("HANDSHAKE error"); got != ErrAuthFailed.Error() {
			t.Fatalf("peer: %s", got)
		}
	})
}

// TestPythonModeSelfConnection checks that a Go client and a Go listener in
// one process complete a ModePython handshake: each answers the other's
// challenge because it arrives on the very connection it was issued on,
// while the reflection tests show the same challenge refused on any other.
func TestPythonModeSelfConnection(t *testing.T) {
	t.Parallel()
	key := pyTestKey(t)
	addr, accepted := pyListen(t, pyCfg(key))
	r := <-pyDial(t, addr, pyCfg(key))
	if r.err != nil {
		t.Fatalf("dial: %v", r.err)
	}
	defer r.c.Close()
	s := <-accepted
	if s.err != nil {
		t.Fatalf("accept: %v", s.err)
	}
	defer s.c.Close()
	if st := r.c.ConnectionState(); st.PythonDigest != "sha256" || !st.HandshakeComplete {
		t.Fatalf("client state %+v", st)
	}
}

// TestPythonModeLegacyPeer plays a Python 3.11 peer by hand.
func TestPythonModeLegacyPeer(t *testing.T) {
	t.Parallel()
	key := pyTestKey(t)
	legacyCfg := pyCfg(key)
	legacyCfg.PythonLegacyMD5 = true
	nonce := string(pySeq(0x80, 1, 20))

	t.Run("client refused", func(t *testing.T) {
		t.Parallel()
		addr, accepted := pyListen(t, pyCfg(key))
		p := pyFakeClient(t, addr)
		m := strings.TrimPrefix(p.recv(), "#CHALLENGE#")
		p.send(pyMACOf(md5.New, key, m))
		if v := p.recv(); v != pyFailure {
			t.Fatalf("got %q, want #FAILURE#", v)
		}
		err := pyWantErr(t, accepted, ErrLegacyDigest)
		if !strings.Contains(err.Error(), "PythonLegacyMD5") {
			t.Fatalf("error %q does not name the option", err)
		}
	})
	t.Run("client allowed", func(t *testing.T) {
		t.Parallel()
		addr, accepted := pyListen(t, legacyCfg)
		p := pyFakeClient(t, addr)
		m := strings.TrimPrefix(p.recv(), "#CHALLENGE#")
		p.send(pyMACOf(md5.New, key, m))
		if v := p.recv(); v != pyWelcome {
			t.Fatalf("got %q, want #WELCOME#", v)
		}
		p.send("#CHALLENGE#" + nonce)
		if got := p.recv(); got != pyMACOf(md5.New, key, nonce) {
			t.Fatalf("legacy answer %x", got)
		}
		p.send(pyWelcome)
		r := <-accepted
		if r.err != nil || r.c.ConnectionState().PythonDigest != "md5" {
			t.Fatalf("err %v, state %+v", r.err, r.c.ConnectionState())
		}
	})
	t.Run("server refused", func(t *testing.T) {
		t.Parallel()
		fs := newPyFakeServer(t)
		dialed := pyDial(t, fs.addr(), pyCfg(key))
		p := fs.accept()
		p.send("#CHALLENGE#" + nonce)
		pyWantErr(t, dialed, ErrLegacyDigest)
		p.expectClose()
	})
	t.Run("server allowed", func(t *testing.T) {
		t.Parallel()
		fs := newPyFakeServer(t)
		dialed := pyDial(t, fs.addr(), legacyCfg)
		p := fs.accept()
		p.send("#CHALLENGE#" + nonce)
		if got := p.recv(); got != pyMACOf(md5.New, key, nonce) {
			t.Fatalf("legacy answer %x", got)
		}
		p.send(pyWelcome)
		m := strings.TrimPrefix(p.recv(), "#CHALLENGE#")
		p.send(pyMACOf(md5.New, key, m))
		if v := p.recv(); v != pyWelcome {
			t.Fatalf("got %q, want #WELCOME#", v)
		}
		r := <-dialed
		if r.err != nil || r.c.ConnectionState().PythonDigest != "md5" {
			t.Fatalf("err %v", r.err)
		}
	})
}

// TestPythonModeReflection plays the attack of facts.md section 1, weakness 1,
// against a Go client: a fake server holding two connections from it feeds it
// its own challenge on the second.
func TestPythonModeReflection(t *testing.T) {
	t.Parallel()
	key := pyTestKey(t)
	fs := newPyFakeServer(t)
	dialedA := pyDial(t, fs.addr(), pyCfg(key))
	a := fs.accept()
	a.send("#CHALLENGE#{sha256}" + string(pySeq(0x10, 3, 40)))
	a.recv() // the client's answer, worthless to us
	a.send(pyWelcome)
	own := a.recv()
	if !strings.HasPrefix(own, "#CHALLENGE#{sha256}") {
		t.Fatalf("client challenge %q", own)
	}

	dialedB := pyDial(t, fs.addr(), pyCfg(key))
	b := fs.accept()
	b.send(own)
	pyWantErr(t, dialedB, ErrReflected)
	b.expectClose()

	a.Close()
	if r := <-dialedA; r.err == nil {
		t.Fatal("first connection succeeded")
	}
}

// TestPythonModeRelay covers weakness 2 within one process: an attacker
// forwards our listener's challenge to our own client.
func TestPythonModeRelay(t *testing.T) {
	t.Parallel()
	key := pyTestKey(t)
	addr, accepted := pyListen(t, pyCfg(key))
	attacker := pyFakeClient(t, addr)
	challenge := attacker.recv()

	fs := newPyFakeServer(t)
	dialed := pyDial(t, fs.addr(), pyCfg(key))
	victim := fs.accept()
	victim.send(challenge)
	pyWantErr(t, dialed, ErrReflected)

	attacker.send("{sha256}" + strings.Repeat("?", 32))
	if v := attacker.recv(); v != pyFailure {
		t.Fatalf("got %q", v)
	}
	pyWantErr(t, accepted, ErrAuthFailed)
}

func TestPythonModeDowngrade(t *testing.T) {
	t.Parallel()
	key := pyTestKey(t)
	t.Run("server asks for md5", func(t *testing.T) {
		t.Parallel()
		fs := newPyFakeServer(t)
		dialed := pyDial(t, fs.addr(), pyCfg(key))
		fs.accept().send("#CHALLENGE#{md5}" + string(pySeq(1, 1, 40)))
		pyWantErr(t, dialed, ErrAuthFailed)
	})
	t.Run("client answers md5", func(t *testing.T) {
		t.Parallel()
		addr, accepted := pyListen(t, pyCfg(key))
		p := pyFakeClient(t, addr)
		m := strings.TrimPrefix(p.recv(), "#CHALLENGE#")
		p.send("{md5}" + pyMACOf(md5.New, key, m))
		if v := p.recv(); v != pyFailure {
			t.Fatalf("got %q, want #FAILURE#", v)
		}
		pyWantErr(t, accepted, ErrAuthFailed)
	})
}

func TestPythonModeMalformed(t *testing.T) {
	t.Parallel()
	key := pyTestKey(t)
	t.Run("server sends nonsense", func(t *testing.T) {
		t.Parallel()
		fs := newPyFakeServer(t)
		dialed := pyDial(t, fs.addr(), pyCfg(key))
		fs.accept().send("#HELLO#")
		pyWantErr(t, dialed, ErrProtocol)
	})
	t.Run("client sends nonsense", func(t *testing.T) {
		t.Parallel()
		addr, accepted := pyListen(t, pyCfg(key))
		p := pyFakeClient(t, addr)
		p.recv()
		p.send("#HELLO#")
		pyWantErr(t, accepted, ErrProtocol)
	})
}

// TestPythonModeBadLengths sends frame headers alone: a side that tried to
// read the payload would hang until the deadline and report a timeout.
func TestPythonModeBadLengths(t *testing.T) {
	t.Parallel()
	key := pyTestKey(t)
	headers := []struct {
		name   string
		header string
		want   error
	}{
		{"oversized", pyUnhex("000186a0"), frame.ErrTooLarge},
		{"257", pyUnhex("00000101"), frame.ErrTooLarge},
		{"escaped oversized", pyUnhex("ffffffff00000000000186a0"), frame.ErrTooLarge},
		{"negative", pyUnhex("fffffffe"), frame.ErrNegativeLength},
	}
	for _, h := range headers {
		t.Run("to client/"+h.name, func(t *testing.T) {
			t.Parallel()
			fs := newPyFakeServer(t)
			dialed := pyDial(t, fs.addr(), pyCfg(key))
			p := fs.accept()
			if _, err := p.Write([]byte(h.header)); err != nil {
				t.Fatal(err)
			}
			err := pyWantErr(t, dialed, ErrProtocol)
			if !errors.Is(err, h.want) {
				t.Fatalf("err = %v, want %v", err, h.want)
			}
		})
		t.Run("to server/"+h.name, func(t *testing.T) {
			t.Parallel()
			addr, accepted := pyListen(t, pyCfg(key))
			p := pyFakeClient(t, addr)
			p.recv()
			if _, err := p.Write([]byte(h.header)); err != nil {
				t.Fatal(err)
			}
			err := pyWantErr(t, accepted, ErrProtocol)
			if !errors.Is(err, h.want) {
				t.Fatalf("err = %v, want %v", err, h.want)
			}
		})
	}
}

func TestPythonModeSilentPeer(t *testing.T) {
	t.Parallel()
	cfg := pyCfg(pyTestKey(t))
	cfg.HandshakeTimeout = 200 * time.Millisecond
	t.Run("silent server", func(t *testing.T) {
		t.Parallel()
		fs := newPyFakeServer(t)
		dialed := pyDial(t, fs.addr(), cfg)
		p := fs.accept()
		pyWantErr(t, dialed, ErrHandshakeTimeout)
		p.expectClose()
	})
	t.Run("silent client", func(t *testing.T) {
		t.Parallel()
		addr, accepted := pyListen(t, cfg)
		p := pyFakeClient(t, addr)
		p.recv()
		pyWantErr(t, accepted, ErrHandshakeTimeout)
		p.expectClose()
	})
}

// A native client that reaches a Python-mode server says so: the server's
// first message is Python's challenge.
func TestNativeClientToPythonServerSaysSo(t *testing.T) {
	key := testKey(t)
	_, _, cerr, _ := handshakePair(t, &Config{Key: key}, &Config{Key: key, Mode: ModePython, HandshakeTimeout: 2 * time.Second})
	if !errors.Is(cerr, ErrProtocol) || !strings.Contains(cerr.Error(), "ModePython") {
		t.Fatalf("native client to a Python-mode server: %v", cerr)
	}
}
