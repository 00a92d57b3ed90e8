package transport_test

// Helpers for the attack tests (attack_*_test.go): honest endpoints and a
// man-in-the-middle proxy on real loopback TCP. Hand-built conclave/1
// messages and records are in attack_wire_test.go.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/seed0811993b/conclave/auth"
	"github.com/seed0811993b/conclave/internal/frame"
	"github.com/seed0811993b/conclave/transport"
)

// Wire constants of conclave/1, restated here: an attacker works from the
// spec, not from the package's unexported names.
const (
	wireMagic         = "conclave"
	msgClientHello    = 0x01
	msgServerHello    = 0x02
	msgClientFinished = 0x03
	msgServerFinished = 0x04
	msgFailure        = 0x7f
	failAuth          = 0x01
	failProtocol      = 0x04
	recordData        = 0x17
	recordClose       = 0x15
	recordHeaderLen   = 4
	aeadTagLen        = 16
	macLen            = 32
	randomLen         = 32
	x25519Len         = 32
	attackFrameLimit  = 1 << 16 // what the attacker's own frame reader accepts
	attackWait        = 10 * time.Second
	noLinkWait        = 200 * time.Millisecond
	mechSharedKey     = 0x01
	protocolVersion1  = 0x01
	attackerMaxFrame  = 1 << 20 // the max frame size the attacker announces
)

// ---- honest endpoints ----

func attackKey(t *testing.T) auth.Key {
	t.Helper()
	k, err := auth.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// attackConfig is an honest configuration. The cipher order is pinned so that
// the downgrade tests know what both sides prefer whatever the CPU.
func attackConfig(key auth.Key) *transport.Config {
	return &transport.Config{Auth: &auth.Config{
		Key:     key,
		Ciphers: []auth.CipherSuite{auth.AES256GCM, auth.ChaCha20Poly1305},
	}}
}

func attackCtx(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// errSink is a slog.Handler that collects the errors a Listener logs for its
// failed handshakes, so tests can assert the server side with errors.Is.
type errSink struct{ ch chan error }

func (h *errSink) Enabled(context.Context, slog.Level) bool { return true }
func (h *errSink) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *errSink) WithGroup(string) slog.Handler            { return h }
func (h *errSink) Handle(_ context.Context, r slog.Record) error {
	r.Attrs(func(a slog.Attr) bool {
		if e, ok := a.Value.Any().(error); ok && a.Key == "err" {
			select {
			case h.ch <- e:
			default: // a flood may log more than we keep
			}
		}
		return true
	})
	return nil
}

// honestServer is a transport.Listener plus the errors it logs.
type honestServer struct {
	ln   *transport.Listener
	errs *errSink
	addr string
}

func startServer(t *testing.T, cfg *transport.Config) *honestServer {
	t.Helper()
	sink := &errSink{ch: make(chan error, 64)}
	c := *cfg
	c.Logger = slog.New(sink)
	ln, err := transport.Listen("tcp", "127.0.0.1:0", &c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	return &honestServer{ln: ln, errs: sink, addr: ln.Addr().String()}
}

// accept returns the next Link, closed when the test ends.
func (s *honestServer) accept(t *testing.T) *transport.Link {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), attackWait)
	defer cancel()
	lk, err := s.ln.Accept(ctx)
	if err != nil {
		t.Fatalf("honest Listener: Accept = %v", err)
	}
	t.Cleanup(func() { _ = lk.Close() })
	return lk
}

// expectNoLink asserts that the Listener has no Link to hand out. Call it
// after the handshake in question has been seen to fail (nextErr), so that
// the short wait is a confirmation rather than a guess.
func (s *honestServer) expectNoLink(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), noLinkWait)
	defer cancel()
	lk, err := s.ln.Accept(ctx)
	if err == nil {
		_ = lk.Close()
		t.Fatalf("the Listener handed out a Link to the attacker (peer %v)", lk.RemoteAddr())
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Accept = %v, want context.DeadlineExceeded", err)
	}
}

// nextErr waits for the next handshake failure the Listener logs.
func (s *honestServer) nextErr(t *testing.T) error {
	t.Helper()
	select {
	case err := <-s.errs.ch:
		return err
	case <-time.After(attackWait):
		t.Fatal("the Listener logged no handshake failure")
		return nil
	}
}

func dialLink(t *testing.T, addr string, cfg *transport.Config) *transport.Link {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), attackWait)
	defer cancel()
	lk, err := transport.Dial(ctx, "tcp", addr, cfg)
	if err != nil {
		t.Fatalf("honest Dial: %v", err)
	}
	t.Cleanup(func() { _ = lk.Close() })
	return lk
}

// dialAsync starts an honest Dial and returns a function that waits for it.
// A Link it returns is closed when the test ends.
func dialAsync(t *testing.T, addr string, cfg *transport.Config) func() (*transport.Link, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), attackWait)
	done := make(chan struct{})
	var lk *transport.Link
	var err error
	go func() {
		defer close(done)
		lk, err = transport.Dial(ctx, "tcp", addr, cfg)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		if lk != nil {
			_ = lk.Close()
		}
	})
	return func() (*transport.Link, error) {
		t.Helper()
		select {
		case <-done:
			return lk, err
		case <-time.After(2 * attackWait):
			t.Fatal("Dial did not return")
			return nil, nil
		}
	}
}

// exchange proves two Links work: one frame each way.
func exchange(t *testing.T, a, b *transport.Link) {
	t.Helper()
	ctx := attackCtx(t, attackWait)
	for _, p := range []struct {
		from, to *transport.Link
		msg      string
	}{{a, b, "ping"}, {b, a, "pong"}} {
		if err := p.from.Send(ctx, []byte(p.msg)); err != nil {
			t.Fatalf("Send %s: %v", p.msg, err)
		}
		got, err := p.to.Recv(ctx)
		if err != nil || string(got) != p.msg {
			t.Fatalf("Recv = %q, %v; want %q", got, err, p.msg)
		}
	}
}

// ---- raw sockets ----

func rawListen(t *testing.T) *net.TCPListener {
	t.Helper()
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	return ln
}

func rawAccept(t *testing.T, ln *net.TCPListener) net.Conn {
	t.Helper()
	_ = ln.SetDeadline(time.Now().Add(attackWait))
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func rawDial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, attackWait)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// readMsg reads one handshake frame under a deadline.
func readMsg(c net.Conn) ([]byte, error) {
	_ = c.SetReadDeadline(time.Now().Add(attackWait))
	defer c.SetReadDeadline(time.Time{})
	return frame.Read(c, attackFrameLimit)
}

func mustReadMsg(t *testing.T, c net.Conn) []byte {
	t.Helper()
	p, err := readMsg(c)
	if err != nil {
		t.Fatalf("attacker: read handshake frame: %v", err)
	}
	return p
}

func mustWrite(t *testing.T, c net.Conn, b []byte) {
	t.Helper()
	if _, err := c.Write(b); err != nil {
		t.Fatalf("attacker: write: %v", err)
	}
}

// drain reads c until the peer ends the stream or d passes. closed is true
// when the peer closed (EOF) or reset the connection; false means the
// deadline passed with the connection still open.
func drain(c net.Conn, d time.Duration) (data []byte, closed bool) {
	_ = c.SetReadDeadline(time.Now().Add(d))
	buf := make([]byte, 4096)
	for {
		n, err := c.Read(buf)
		data = append(data, buf[:n]...)
		if err != nil {
			return data, peerClosed(err)
		}
	}
}

// peerClosed reports whether a read error means the peer ended the stream.
func peerClosed(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET)
}

// ---- conclave/1 handshake messages ----

// mitm accepts connections from honest dialers, dials the honest target for
// each and runs handle on the pair. Everything it starts ends at cleanup.
type mitm struct {
	ln       net.Listener
	target   string
	handle   func(*session)
	sessions chan *session
	done     chan struct{}
	wg       sync.WaitGroup
	mu       sync.Mutex
	conns    []net.Conn
}

// session is one intercepted connection.
type session struct {
	m      *mitm
	client net.Conn // accepted from the honest dialer
	server net.Conn // dialled to the honest listener
	ended  chan struct{}

	// Filled by relay.
	hsDone chan struct{} // closed once the four handshake frames passed
	recs   chan []byte   // client->server records, in order, when not auto-forwarded

	mu          sync.Mutex
	c2s, s2c    []byte // every byte the attacker saw, per direction
	serverHello []byte // the ServerHello as the server sent it
	serverReply []byte // what the server sent after the ClientFinished (splices)
	err         error  // why the handler stopped early
}

func startMITM(t *testing.T, target string, handle func(*session)) *mitm {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m := &mitm{ln: ln, target: target, handle: handle,
		sessions: make(chan *session, 16), done: make(chan struct{})}
	m.wg.Add(1)
	go m.acceptLoop()
	t.Cleanup(m.close)
	return m
}

func (m *mitm) addr() string { return m.ln.Addr().String() }

func (m *mitm) acceptLoop() {
	defer m.wg.Done()
	for {
		c, err := m.ln.Accept()
		if err != nil {
			return
		}
		s, err := net.DialTimeout("tcp", m.target, attackWait)
		if err != nil {
			_ = c.Close()
			continue
		}
		m.mu.Lock()
		m.conns = append(m.conns, c, s)
		m.mu.Unlock()
		sess := &session{m: m, client: c, server: s, ended: make(chan struct{}),
			hsDone: make(chan struct{}), recs: make(chan []byte, 64)}
		m.goTrack(func() {
			defer close(sess.ended)
			m.handle(sess)
		})
		select {
		case m.sessions <- sess:
		case <-m.done:
		}
	}
}

func (m *mitm) goTrack(f func()) {
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		f()
	}()
}

func (m *mitm) close() {
	close(m.done)
	_ = m.ln.Close()
	m.mu.Lock()
	for _, c := range m.conns {
		_ = c.Close()
	}
	m.mu.Unlock()
	m.wg.Wait()
}

// next returns the next intercepted session.
func (m *mitm) next(t *testing.T) *session {
	t.Helper()
	select {
	case s := <-m.sessions:
		return s
	case <-time.After(attackWait):
		t.Fatal("no connection reached the attacker")
		return nil
	}
}

func (s *session) fail(err error) {
	s.mu.Lock()
	if s.err == nil {
		s.err = err
	}
	s.mu.Unlock()
	s.closeBoth()
}

func (s *session) closeBoth() {
	_ = s.client.Close()
	_ = s.server.Close()
}

func (s *session) log(toServer bool, b []byte) {
	s.mu.Lock()
	if toServer {
		s.c2s = append(s.c2s, b...)
	} else {
		s.s2c = append(s.s2c, b...)
	}
	s.mu.Unlock()
}

// seen returns copies of everything the attacker relayed so far.
func (s *session) seen() (c2s, s2c []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return bytes.Clone(s.c2s), bytes.Clone(s.s2c)
}

// fromClient and fromServer read one handshake frame and log it.
func (s *session) fromClient() ([]byte, error) { return s.readLogged(s.client, true) }
func (s *session) fromServer() ([]byte, error) { return s.readLogged(s.server, false) }

func (s *session) readLogged(c net.Conn, toServer bool) ([]byte, error) {
	p, err := readMsg(c)
	if err == nil {
		s.log(toServer, frame.Append(nil, p))
	}
	return p, err
}

func (s *session) toServer(p []byte) error {
	_, err := s.server.Write(frame.Append(nil, p))
	return err
}

func (s *session) toClient(p []byte) error {
	_, err := s.client.Write(frame.Append(nil, p))
	return err
}

// waitEnded waits for the session's handler to return.
func (s *session) waitEnded(t *testing.T) {
	t.Helper()
	select {
	case <-s.ended:
	case <-time.After(attackWait):
		t.Fatal("the attacker's handler did not finish")
	}
}

// takeRecords returns the next n client->server records the proxy parsed.
func (s *session) takeRecords(t *testing.T, n int) [][]byte {
	t.Helper()
	var recs [][]byte
	for range n {
		select {
		case r, ok := <-s.recs:
			if !ok {
				t.Fatalf("client stream ended after %d records, want %d", len(recs), n)
			}
			recs = append(recs, r)
		case <-time.After(attackWait):
			t.Fatalf("got %d records from the client, want %d", len(recs), n)
		}
	}
	return recs
}

type relayOpts struct {
	rewriteCH func(*clientHelloMsg) // rewrites the ClientHello on its way to the server
	rewriteSH func(*serverHelloMsg) // rewrites the ServerHello on its way to the client
	// autoForward relays records straight on; otherwise client->server
	// records go to session.recs and the test writes what it likes.
	autoForward bool
	// tamperS2C, when set, parses server->client records and passes the
	// i-th (from 0) through it; otherwise those bytes are copied as they come.
	tamperS2C func(i int, rec []byte) []byte
}

// relay is an on-path attacker that passes the four handshake frames (maybe
// rewritten), then copies server->client bytes and parses client->server
// records.
func relay(o relayOpts) func(*session) {
	return func(s *session) {
		if err := s.relayHandshake(o); err != nil {
			s.fail(err)
			close(s.recs)
			return
		}
		close(s.hsDone)
		if o.tamperS2C != nil {
			s.m.goTrack(func() { s.pumpServerRecords(o.tamperS2C) })
		} else {
			s.m.goTrack(s.copyServerToClient)
		}
		s.pumpRecords(o.autoForward)
	}
}

func (s *session) relayHandshake(o relayOpts) error {
	ch, err := s.fromClient()
	if err != nil {
		return err
	}
	if o.rewriteCH != nil {
		m, err := parseClientHello(ch)
		if err != nil {
			return fmt.Errorf("parse ClientHello: %w", err)
		}
		o.rewriteCH(m)
		ch = m.marshal()
	}
	if err := s.toServer(ch); err != nil {
		return err
	}
	sh, err := s.fromServer()
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.serverHello = bytes.Clone(sh)
	s.mu.Unlock()
	if o.rewriteSH != nil && msgType(sh) == msgServerHello {
		m, err := parseServerHello(sh)
		if err != nil {
			return fmt.Errorf("parse ServerHello: %w", err)
		}
		o.rewriteSH(m)
		sh = m.marshal()
	}
	if err := s.toClient(sh); err != nil {
		return err
	}
	cf, err := s.fromClient()
	if err != nil {
		return err
	}
	if err := s.toServer(cf); err != nil {
		return err
	}
	sf, err := s.fromServer()
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.serverReply = bytes.Clone(sf)
	s.mu.Unlock()
	if err := s.toClient(sf); err != nil {
		return err
	}
	if msgType(sf) != msgServerFinished {
		return fmt.Errorf("server answered the ClientFinished with message type %#x", msgType(sf))
	}
	return nil
}

func (s *session) copyServerToClient() {
	buf := make([]byte, 32<<10)
	for {
		n, err := s.server.Read(buf)
		if n > 0 {
			s.log(false, buf[:n])
			if _, werr := s.client.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			_ = s.client.Close()
			return
		}
	}
}

func (s *session) pumpServerRecords(tamper func(int, []byte) []byte) {
	defer s.client.Close()
	for i := 0; ; i++ {
		rec, err := readRecord(s.server)
		if err != nil {
			return
		}
		s.log(false, rec)
		if _, err := s.client.Write(tamper(i, rec)); err != nil {
			return
		}
	}
}

func (s *session) pumpRecords(auto bool) {
	defer close(s.recs)
	for {
		rec, err := readRecord(s.client)
		if err != nil {
			if auto {
				_ = s.server.Close()
			}
			return
		}
		s.log(true, rec)
		if auto {
			if _, err := s.server.Write(rec); err != nil {
				return
			}
			continue
		}
		select {
		case s.recs <- rec:
		case <-s.m.done:
			return
		}
	}
}
