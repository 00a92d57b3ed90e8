package transport_test

// Attack tests on availability: hostile lengths, silent peers and a flood of
// unauthenticated connections. Helpers: attack_proxy_test.go.

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/seed0811993b/conclave/auth"
	"github.com/seed0811993b/conclave/internal/frame"
	"github.com/seed0811993b/conclave/transport"
)

// TestAttackHostileLengthsBeforeAuth: frame headers that claim absurd sizes.
// Before authentication the Listener hangs up at once; after it, a key
// holder's hostile header fails the receiving Link without an allocation.
func TestAttackHostileLengthsBeforeAuth(t *testing.T) {
	key := attackKey(t)
	cfg := attackConfig(key)
	srv := startServer(t, cfg)
	escaped := func(n uint64) []byte { return binary.BigEndian.AppendUint64([]byte{0xff, 0xff, 0xff, 0xff}, n) }
	for _, tc := range []struct {
		name string
		hdr  []byte
	}{
		{"1 GiB", binary.BigEndian.AppendUint32(nil, 1<<30)},
		{"5000 bytes, over the 4096-byte pre-auth cap", binary.BigEndian.AppendUint32(nil, 5000)},
		{"4097 bytes", binary.BigEndian.AppendUint32(nil, 4097)},
		{"negative -2", []byte{0xff, 0xff, 0xff, 0xfe}},
		{"most negative", []byte{0x80, 0, 0, 0}},
		{"escaped 2^62", escaped(1 << 62)},
		{"escaped 2^64-1", escaped(^uint64(0))},
	} {
		t.Run("pre-auth/"+tc.name, func(t *testing.T) {
			c := rawDial(t, srv.addr)
			mustWrite(t, c, tc.hdr)
			got, closed := drain(c, 3*time.Second)
			if !closed {
				t.Fatal("the listener did not close the connection within 3s")
			}
			if len(got) != 0 && !bytes.Equal(got, failureFrame(failProtocol)) {
				t.Fatalf("the listener sent %x, want nothing or a protocol failure notice", got)
			}
			if err := srv.nextErr(t); !errors.Is(err, auth.ErrProtocol) {
				t.Fatalf("listener handshake error = %v, want auth.ErrProtocol", err)
			}
			// And it keeps serving.
			exchange(t, dialLink(t, srv.addr, cfg), srv.accept(t))
		})
	}

	// The same headers from a fake server, answering a dialer's hello.
	for _, tc := range []struct {
		name string
		hdr  []byte
	}{
		{"1 GiB", binary.BigEndian.AppendUint32(nil, 1<<30)},
		{"5000 bytes", binary.BigEndian.AppendUint32(nil, 5000)},
		{"negative -2", []byte{0xff, 0xff, 0xff, 0xfe}},
		{"escaped 2^62", escaped(1 << 62)},
	} {
		t.Run("pre-auth against a dialer/"+tc.name, func(t *testing.T) {
			ln := rawListen(t)
			start := time.Now()
			wait := dialAsync(t, ln.Addr().String(), cfg)
			c := rawAccept(t, ln)
			if msgType(mustReadMsg(t, c)) != msgClientHello {
				t.Fatal("expected a ClientHello")
			}
			mustWrite(t, c, tc.hdr)
			lk, err := wait()
			if lk != nil || !errors.Is(err, auth.ErrProtocol) {
				t.Fatalf("Dial = %v, %v; want no Link and auth.ErrProtocol", lk, err)
			}
			if d := time.Since(start); d > 3*time.Second {
				t.Fatalf("the dialer took %v to give up", d)
			}
		})
	}

	// After auth: a peer holding the key writes raw bytes through its own
	// *auth.Conn, so they arrive properly sealed but carry a hostile header.
	const limit = 64 << 10
	small := attackConfig(key)
	small.Auth.MaxFrameSize = limit
	ssrv := startServer(t, small)
	for _, tc := range []struct {
		name string
		hdr  []byte
		want error
	}{
		{"over MaxFrameSize", binary.BigEndian.AppendUint32(nil, limit+1), transport.ErrFrameTooLarge},
		{"2 GiB-1", binary.BigEndian.AppendUint32(nil, 1<<31-1), transport.ErrFrameTooLarge},
		{"escaped 2^62", escaped(1 << 62), transport.ErrFrameTooLarge},
		{"negative -2", []byte{0xff, 0xff, 0xff, 0xfe}, transport.ErrProtocol},
		{"most negative", []byte{0x80, 0, 0, 0}, transport.ErrProtocol},
	} {
		t.Run("post-auth/"+tc.name, func(t *testing.T) {
			ctx := attackCtx(t, attackWait)
			raw := rawDial(t, ssrv.addr)
			ac := auth.Client(raw, cfg.Auth)
			hostile, err := transport.NewLink(ctx, ac, cfg)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = hostile.Close() })
			if got := hostile.ConnectionState().PeerMaxFrameSize; got != limit {
				t.Fatalf("listener announced max frame %d, want %d", got, limit)
			}
			s := ssrv.accept(t)
			if err := hostile.Send(ctx, []byte("hello")); err != nil {
				t.Fatal(err)
			}
			if err := hostile.Flush(ctx); err != nil {
				t.Fatal(err)
			}
			if got, err := s.Recv(ctx); err != nil || string(got) != "hello" {
				t.Fatalf("Recv = %q, %v", got, err)
			}
			if _, err := ac.Write(tc.hdr); err != nil {
				t.Fatal(err)
			}
			got, err := s.Recv(ctx)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Recv after a hostile header = %d bytes, %v; want %v", len(got), err, tc.want)
			}
			if !errors.Is(s.Err(), tc.want) {
				t.Fatalf("Link.Err = %v, want %v", s.Err(), tc.want)
			}
		})
	}
}

// TestAttackSilentPeer: a connection that says nothing, or starts a hello and
// stalls, is closed at the handshake deadline (Python weakness 5), while a
// legitimate client is served in the meantime.
func TestAttackSilentPeer(t *testing.T) {
	const timeout = 300 * time.Millisecond
	key := attackKey(t)
	cfg := attackConfig(key)
	cfg.Auth.HandshakeTimeout = timeout
	srv := startServer(t, cfg)

	start := time.Now()
	silent := rawDial(t, srv.addr)
	stalled := rawDial(t, srv.addr)
	ch, err := attackerClientHello()
	if err != nil {
		t.Fatal(err)
	}
	mustWrite(t, stalled, frame.Append(nil, ch.marshal())[:100])

	// Served while both attackers hold their connections.
	exchange(t, dialLink(t, srv.addr, attackConfig(key)), srv.accept(t))

	for _, c := range []struct {
		name string
		conn net.Conn
	}{{"silent", silent}, {"stalled mid-hello", stalled}} {
		got, closed := drain(c.conn, 3*time.Second-time.Since(start))
		elapsed := time.Since(start)
		if !closed {
			t.Fatalf("%s connection still open after %v", c.name, elapsed)
		}
		if len(got) != 0 {
			t.Errorf("%s connection got %x before the close", c.name, got)
		}
		if elapsed < timeout-50*time.Millisecond {
			t.Errorf("%s connection closed after %v, before the %v deadline", c.name, elapsed, timeout)
		}
	}
	for range 2 {
		if err := srv.nextErr(t); !errors.Is(err, auth.ErrHandshakeTimeout) {
			t.Fatalf("listener handshake error = %v, want auth.ErrHandshakeTimeout", err)
		}
	}

	// The dialer's side: a fake server that takes the hello and says nothing.
	t.Run("silent server", func(t *testing.T) {
		ln := rawListen(t)
		start := time.Now()
		wait := dialAsync(t, ln.Addr().String(), cfg)
		c := rawAccept(t, ln)
		if msgType(mustReadMsg(t, c)) != msgClientHello {
			t.Fatal("expected a ClientHello")
		}
		lk, err := wait()
		if lk != nil || !errors.Is(err, auth.ErrHandshakeTimeout) {
			t.Fatalf("Dial to a silent server = %v, %v; want no Link and auth.ErrHandshakeTimeout", lk, err)
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Fatalf("the dialer waited %v, want about %v", d, timeout)
		}
	})
}

// TestAttackFloodOfUnauthenticatedConnections: a thousand silent connections
// do not lock a legitimate client out, and the Listener holds at most
// MaxPendingHandshakes of them.
func TestAttackFloodOfUnauthenticatedConnections(t *testing.T) {
	const flood = 1000
	key := attackKey(t)
	cfg := attackConfig(key)
	srv := startServer(t, cfg)

	conns := make([]net.Conn, flood)
	t.Cleanup(func() {
		for _, c := range conns {
			if c != nil {
				_ = c.Close()
			}
		}
	})
	var wg sync.WaitGroup
	var dialErr atomic.Value
	const workers = 16
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < flood; i += workers {
				c, err := net.DialTimeout("tcp", srv.addr, attackWait)
				if err != nil {
					dialErr.CompareAndSwap(nil, err)
					return
				}
				conns[i] = c
			}
		}()
	}
	wg.Wait()
	if err := dialErr.Load(); err != nil {
		t.Fatalf("flood dial: %v", err)
	}

	// All 1000 are queued ahead of it; the legitimate client still gets in.
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := transport.Dial(ctx, "tcp", srv.addr, cfg)
	if err != nil {
		t.Fatalf("legitimate Dial during the flood: %v (after %v)", err, time.Since(start))
	}
	t.Cleanup(func() { _ = c.Close() })
	s, err := srv.ln.Accept(ctx)
	if err != nil {
		t.Fatalf("Accept during the flood: %v (after %v)", err, time.Since(start))
	}
	t.Cleanup(func() { _ = s.Close() })
	exchange(t, c, s)
	t.Logf("legitimate client served in %v with %d silent connections open", time.Since(start), flood)

	// The Listener dropped the oldest silent connections to make room: at
	// most DefaultMaxPendingHandshakes of them are still held open.
	wantClosed := int64(flood - transport.DefaultMaxPendingHandshakes)
	var closed atomic.Int64
	enough := make(chan struct{})
	var once sync.Once
	// The evictions happened before the legitimate connection was admitted;
	// wait well under the 10 s handshake timeout, which would close them all.
	const evictionWait = 3 * time.Second
	readDeadline := time.Now().Add(evictionWait)
	for _, conn := range conns {
		_ = conn.SetReadDeadline(readDeadline) // here, so that the release below cannot be overwritten
		wg.Add(1)
		go func() {
			defer wg.Done()
			var b [1]byte
			if _, err := conn.Read(b[:]); peerClosed(err) {
				if closed.Add(1) >= wantClosed {
					once.Do(func() { close(enough) })
				}
			}
		}()
	}
	select {
	case <-enough:
	case <-time.After(evictionWait):
	}
	for _, conn := range conns {
		_ = conn.SetReadDeadline(time.Now()) // release the readers of open connections
	}
	wg.Wait()
	if n := closed.Load(); n < wantClosed {
		t.Fatalf("the Listener closed %d of %d silent connections; want at least %d (MaxPendingHandshakes %d)",
			n, flood, wantClosed, transport.DefaultMaxPendingHandshakes)
	}
}

// gatedConn holds a dialer's handshake between its messages: heard closes
// when the first bytes arrive from the server, and the second write (the
// ClientFinished, after a user login's slow password step) waits for gate.
type gatedConn struct {
	net.Conn
	heard, gate chan struct{}
	once        sync.Once
	writes      atomic.Int32
}

func (c *gatedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.once.Do(func() { close(c.heard) })
	}
	return n, err
}

func (c *gatedConn) Write(p []byte) (int, error) {
	if c.writes.Add(1) == 2 {
		<-c.gate
	}
	return c.Conn.Write(p)
}

// TestAttackFloodDuringSlowLogin: while a user login's client derives its
// password key, between ServerHello and ClientFinished, a flood of silent
// connections fills the pending set many times over. The Listener drops
// silent connections first, so the login, which has spoken, keeps its place.
func TestAttackFloodDuringSlowLogin(t *testing.T) {
	const maxPending = 8
	cred, err := auth.NewCredential("pw-alice", auth.MinSCRAMIterations, nil)
	if err != nil {
		t.Fatal(err)
	}
	cred.Roles = []string{auth.RoleClient}
	users, err := auth.NewSCRAMServer(auth.CredentialMap{"alice": cred}, auth.SCRAMServerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	srv := startServer(t, &transport.Config{MaxPendingHandshakes: maxPending,
		Auth: &auth.Config{Users: users, Require: auth.RequireUser}})

	raw, err := net.Dial("tcp", srv.addr)
	if err != nil {
		t.Fatal(err)
	}
	g := &gatedConn{Conn: raw, heard: make(chan struct{}), gate: make(chan struct{})}
	t.Cleanup(sync.OnceFunc(func() { close(g.gate) }))
	login := auth.Client(g, &auth.Config{User: "alice", Password: "pw-alice"})
	t.Cleanup(func() { _ = login.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), attackWait)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- login.HandshakeContext(ctx) }()
	select {
	case <-g.heard: // the server has the ClientHello and answered it
	case err := <-done:
		t.Fatalf("login ended before the ServerHello: %v", err)
	case <-ctx.Done():
		t.Fatal("no ServerHello")
	}

	// Three times the pending set in silent connections; wait until the
	// Listener has dropped two sets' worth of them.
	const flood = 3 * maxPending
	var dropped sync.WaitGroup
	dropped.Add(2 * maxPending)
	var count atomic.Int32
	for range flood {
		c, err := net.DialTimeout("tcp", srv.addr, attackWait)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		_ = c.SetReadDeadline(time.Now().Add(attackWait))
		go func() {
			var b [1]byte
			if _, err := c.Read(b[:]); peerClosed(err) && count.Add(1) <= 2*maxPending {
				dropped.Done()
			}
		}()
	}
	evicted := make(chan struct{})
	go func() { dropped.Wait(); close(evicted) }()
	select {
	case <-evicted:
	case err := <-done:
		t.Fatalf("the login failed during the flood: %v", err)
	case <-ctx.Done():
		t.Fatalf("the Listener dropped %d of %d silent connections", count.Load(), flood)
	}

	g.gate <- struct{}{} // the ClientFinished goes out now
	if err := <-done; err != nil {
		t.Fatalf("the login after the flood: %v", err)
	}
	if lk := srv.accept(t); lk.ConnectionState().PeerUser != "alice" {
		t.Fatalf("accepted a link for %q", lk.ConnectionState().PeerUser)
	}
}

// TestAttackHelloHoldersAreEvicted: an attacker without the key can fill
// the pending set with connections that sent a valid ClientHello and then
// wait. While fewer than half the pending connections are silent, new
// arrivals push out the oldest of all, so such holders keep at most half
// the slots instead of all but the one a flood of silent connections
// churns through.
func TestAttackHelloHoldersAreEvicted(t *testing.T) {
	const maxPending = 8
	key := attackKey(t)
	srv := startServer(t, &transport.Config{MaxPendingHandshakes: maxPending, Auth: attackConfig(key).Auth})
	ctx, cancel := context.WithTimeout(context.Background(), attackWait)
	defer cancel()
	evicted := make(chan struct{}, maxPending)
	for range maxPending - 1 {
		raw, err := net.Dial("tcp", srv.addr)
		if err != nil {
			t.Fatal(err)
		}
		g := &gatedConn{Conn: raw, heard: make(chan struct{}), gate: make(chan struct{})}
		t.Cleanup(sync.OnceFunc(func() { close(g.gate) }))
		t.Cleanup(func() { _ = raw.Close() })
		holder := auth.Client(g, &auth.Config{Key: attackKey(t)}) // not the server's key
		go func() { _ = holder.HandshakeContext(ctx) }()          // stops at the gate, before ClientFinished
		select {
		case <-g.heard: // it has spoken: the server answered its hello
		case <-ctx.Done():
			t.Fatal("no ServerHello for a holder")
		}
		go func() { // the client waits at the gate, so nothing else reads now
			var b [1]byte
			_ = raw.SetReadDeadline(time.Now().Add(attackWait))
			if _, err := raw.Read(b[:]); peerClosed(err) {
				evicted <- struct{}{}
			}
		}()
	}
	// Silent arrivals: at first each one takes the free slot or evicts the
	// one silent connection, then the holders go, oldest first.
	for range 2 * maxPending {
		c, err := net.DialTimeout("tcp", srv.addr, attackWait)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
	}
	const want = maxPending - 1 - maxPending/2 // until holders are half the set
	for i := range want {
		select {
		case <-evicted:
		case <-time.After(5 * time.Second): // well under the 10 s handshake timeout
			t.Fatalf("%d of %d hello holders were evicted, want %d", i, maxPending-1, want)
		}
	}
}
