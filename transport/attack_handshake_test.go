package transport_test

// Attack tests: an attacker program on real loopback TCP against honest
// conclave endpoints (transport.Listen / transport.Dial, native mode),
// asserting what a user relies on. The properties come from the design
// brief ("Two handshakes, one framing": native conclave/1) and the weaknesses
// of Python's multiprocessing handshake that it must not share (facts.md,
// section 1). This file holds the attacks on the handshake;
// attack_records_test.go and attack_dos_test.go hold the rest, and
// attack_proxy_test.go and attack_wire_test.go the tools.

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/seed0811993b/conclave/auth"
	"github.com/seed0811993b/conclave/internal/frame"
	"github.com/seed0811993b/conclave/transport"
)

// TestAttackReflection: a fake server cannot make an honest dialer accept it
// by reflecting the dialer's own proof (Python weakness 1), and an honest
// Listener proves nothing to a peer that has not proved itself first.
func TestAttackReflection(t *testing.T) {
	for _, tc := range []struct {
		name          string
		reflectRandom bool // also echo the client's own challenge as the server's
	}{
		{"fresh server random", false},
		{"client challenge reflected", true},
	} {
		t.Run("fake server reflects the ClientFinished/"+tc.name, func(t *testing.T) {
			key := attackKey(t)
			ln := rawListen(t)
			wait := dialAsync(t, ln.Addr().String(), attackConfig(key))
			c := rawAccept(t, ln)

			ch, err := parseClientHello(mustReadMsg(t, c))
			if err != nil {
				t.Fatalf("ClientHello: %v", err)
			}
			sh, err := attackerServerHello(ch)
			if err != nil {
				t.Fatal(err)
			}
			if tc.reflectRandom {
				sh.random = ch.random
			}
			mustWrite(t, c, frame.Append(nil, sh.marshal()))
			cf := mustReadMsg(t, c)
			if msgType(cf) != msgClientFinished || len(cf) != len(wireMagic)+1+macLen {
				t.Fatalf("expected a ClientFinished, got %x", cf)
			}
			// The client's own MAC, sent back as the server's proof.
			mustWrite(t, c, frame.Append(nil, finishedMsg(msgServerFinished, cf[len(wireMagic)+1:])))

			lk, err := wait()
			if lk != nil || !errors.Is(err, auth.ErrAuthFailed) {
				t.Fatalf("Dial to a reflecting fake server = %v, %v; want no Link and auth.ErrAuthFailed", lk, err)
			}
			// The dialer sends nothing more: no record, no data, just a close.
			if rest, closed := drain(c, attackWait); !closed || len(rest) != 0 {
				t.Fatalf("after the reflected proof the dialer sent %x (closed %v), want a bare close", rest, closed)
			}
		})
	}

	// The attacker dials an honest Listener, speaks a well-formed hello with
	// its own ephemeral keys (so it knows every exchanged secret) and tries to
	// get any server proof out of it without the cluster key.
	for _, tc := range []struct {
		name string
		msg  func(sh []byte) []byte
		code byte
	}{
		{"random MAC", func([]byte) []byte { return finishedMsg(msgClientFinished, randomBytes(macLen)) }, failAuth},
		{"zero MAC", func([]byte) []byte { return finishedMsg(msgClientFinished, make([]byte, macLen)) }, failAuth},
		{"server's own challenge reflected as proof", func(sh []byte) []byte {
			m, err := parseServerHello(sh)
			if err != nil {
				return nil
			}
			return finishedMsg(msgClientFinished, m.random)
		}, failAuth},
		{"ServerFinished sent in place of ClientFinished", func([]byte) []byte {
			return finishedMsg(msgServerFinished, randomBytes(macLen))
		}, failProtocol},
		{"short MAC", func([]byte) []byte { return finishedMsg(msgClientFinished, randomBytes(macLen-1)) }, failProtocol},
		{"ServerHello echoed back", func(sh []byte) []byte { return sh }, failProtocol},
	} {
		t.Run("listener never proves first/"+tc.name, func(t *testing.T) {
			key := attackKey(t)
			srv := startServer(t, attackConfig(key))
			c := rawDial(t, srv.addr)
			ch, err := attackerClientHello()
			if err != nil {
				t.Fatal(err)
			}
			mustWrite(t, c, frame.Append(nil, ch.marshal()))
			sh := mustReadMsg(t, c)
			if msgType(sh) != msgServerHello {
				t.Fatalf("listener answered the hello with %x, want a ServerHello", sh)
			}
			mustWrite(t, c, frame.Append(nil, tc.msg(sh)))
			// Everything the Listener sends from here on: exactly one failure
			// notice, then the end of the stream. No ServerFinished, ever.
			rest, closed := drain(c, attackWait)
			if !closed {
				t.Fatal("the listener kept the connection open after a bad ClientFinished")
			}
			if want := failureFrame(tc.code); !bytes.Equal(rest, want) {
				msgs, _ := splitFrames(rest)
				for _, m := range msgs {
					if msgType(m) == msgServerFinished {
						t.Fatalf("the listener sent a ServerFinished to an unauthenticated peer: %x", m)
					}
				}
				t.Fatalf("listener sent %x after the bad ClientFinished, want exactly %x then EOF", rest, want)
			}
			if err := srv.nextErr(t); (tc.code == failAuth) != errors.Is(err, auth.ErrAuthFailed) ||
				(tc.code == failProtocol) != errors.Is(err, auth.ErrProtocol) {
				t.Fatalf("listener handshake error = %v, want code %#x's sentinel", err, tc.code)
			}
			srv.expectNoLink(t)
		})
	}
}

// TestAttackRelay: a key-less attacker between a dialer and a Listener
// (Python weakness 2) can at most relay bytes it cannot read or extend.
func TestAttackRelay(t *testing.T) {
	t.Run("transparent relay cannot read or inject", func(t *testing.T) {
		key := attackKey(t)
		cfg := attackConfig(key)
		srv := startServer(t, cfg)
		m := startMITM(t, srv.addr, relay(relayOpts{}))
		c := dialLink(t, m.addr(), cfg)
		sess := m.next(t)
		s := srv.accept(t)
		if st := c.ConnectionState(); !st.Sealed || st.CipherSuite != auth.AES256GCM {
			t.Fatalf("relayed handshake state %+v, want sealed AES-256-GCM", st)
		}
		ctx := attackCtx(t, attackWait)

		c2sMarker := []byte("MARKER:client-to-server:wire-transfer-to-acct-0042")
		s2cMarker := []byte("MARKER:server-to-client:the-launch-code-is-31337")
		if err := c.Send(ctx, c2sMarker); err != nil {
			t.Fatal(err)
		}
		if err := c.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		rec := sess.takeRecords(t, 1)[0]
		mustWrite(t, sess.server, rec)
		if got, err := s.Recv(ctx); err != nil || !bytes.Equal(got, c2sMarker) {
			t.Fatalf("server Recv = %q, %v", got, err)
		}
		if err := s.Send(ctx, s2cMarker); err != nil {
			t.Fatal(err)
		}
		if got, err := c.Recv(ctx); err != nil || !bytes.Equal(got, s2cMarker) {
			t.Fatalf("client Recv = %q, %v", got, err)
		}

		// Injection: a record with a valid header and made-up ciphertext.
		mustWrite(t, sess.server, forgedRecord(recordData, 4+len(c2sMarker)+aeadTagLen))
		got, err := s.Recv(ctx)
		if !errors.Is(err, auth.ErrProtocol) {
			t.Fatalf("server Recv after an injected record = %q, %v; want auth.ErrProtocol", got, err)
		}
		if !errors.Is(s.Err(), auth.ErrProtocol) {
			t.Fatalf("server Link.Err = %v, want auth.ErrProtocol", s.Err())
		}

		c2s, s2c := sess.seen()
		for _, tc := range []struct {
			what   string
			stream []byte
			secret []byte
		}{
			{"client->server marker", c2s, c2sMarker}, {"server->client marker", s2c, s2cMarker},
			{"client->server marker", s2c, c2sMarker}, {"server->client marker", c2s, s2cMarker},
			{"cluster key", c2s, key}, {"cluster key", s2c, key},
		} {
			if bytes.Contains(tc.stream, tc.secret[:16]) {
				t.Errorf("the relay saw the %s in plaintext", tc.what)
			}
		}
	})

	// Every node of a cluster holds the same key, so a relay can steer a
	// dialer to a different key holder than it meant to reach (or back to
	// itself). The handshake cannot tell, but the proved PeerName does: it
	// names the real endpoint, and callers must check it.
	t.Run("redirect to another key holder is visible in PeerName", func(t *testing.T) {
		key := attackKey(t)
		named := func(name string) *transport.Config {
			c := attackConfig(key)
			c.Auth.Name = name
			return c
		}
		srv := startServer(t, named("node-c"))
		m := startMITM(t, srv.addr, relay(relayOpts{autoForward: true}))
		c := dialLink(t, m.addr(), named("node-a")) // node-a thinks m is node-b
		s := srv.accept(t)
		if got := c.ConnectionState().PeerName; got != "node-c" {
			t.Fatalf("dialer's PeerName = %q, want the real endpoint node-c", got)
		}
		if got := s.ConnectionState().PeerName; got != "node-a" {
			t.Fatalf("listener's PeerName = %q, want node-a", got)
		}
		exchange(t, c, s)
	})

	// Splices: the attacker runs half a handshake of its own, so the two
	// honest sides see different transcripts.
	for _, tc := range []struct {
		name   string
		handle func(*session)
	}{
		{"attacker's own ClientHello to the server", spliceOwnClientHello},
		{"attacker's own ServerHello to the client", spliceOwnServerHello},
	} {
		t.Run("splice/"+tc.name, func(t *testing.T) {
			key := attackKey(t)
			cfg := attackConfig(key)
			srv := startServer(t, cfg)
			m := startMITM(t, srv.addr, tc.handle)
			lk, err := transport.Dial(attackCtx(t, attackWait), "tcp", m.addr(), cfg)
			if lk != nil {
				_ = lk.Close()
			}
			if lk != nil || !(errors.Is(err, auth.ErrAuthFailed) || errors.Is(err, auth.ErrProtocol)) {
				t.Fatalf("dialer through a splicing attacker = %v, %v; want no Link, ErrAuthFailed or ErrProtocol", lk, err)
			}
			if err := srv.nextErr(t); !errors.Is(err, auth.ErrAuthFailed) {
				t.Fatalf("listener handshake error = %v, want auth.ErrAuthFailed", err)
			}
			sess := m.next(t)
			sess.waitEnded(t)
			sess.mu.Lock()
			reply, serr := sess.serverReply, sess.err
			sess.mu.Unlock()
			if serr != nil {
				t.Fatalf("attacker: %v", serr)
			}
			if want := failureFrame(failAuth); !bytes.Equal(frame.Append(nil, reply), want) {
				t.Fatalf("listener answered the spliced ClientFinished with %x, want %x", reply, want)
			}
			srv.expectNoLink(t)
		})
	}
}

// spliceOwnClientHello sends the server a ClientHello of the attacker's own
// (same options as the client's, the attacker's key shares) and gives the
// client the server's answer to it.
func spliceOwnClientHello(s *session) {
	defer s.closeBoth()
	chRaw, err := s.fromClient()
	if err != nil {
		s.fail(err)
		return
	}
	ch, err := parseClientHello(chRaw)
	if err != nil {
		s.fail(err)
		return
	}
	mine, err := attackerClientHello()
	if err != nil {
		s.fail(err)
		return
	}
	mine.versions, mine.ciphers, mine.maxFrame, mine.name = ch.versions, ch.ciphers, ch.maxFrame, ch.name
	s.finishSplice(mine.marshal(), nil)
}

// spliceOwnServerHello passes the ClientHello to the server but answers the
// client with a ServerHello of its own, then passes the client's proof on.
func spliceOwnServerHello(s *session) {
	defer s.closeBoth()
	chRaw, err := s.fromClient()
	if err != nil {
		s.fail(err)
		return
	}
	ch, err := parseClientHello(chRaw)
	if err != nil {
		s.fail(err)
		return
	}
	sh, err := attackerServerHello(ch)
	if err != nil {
		s.fail(err)
		return
	}
	s.finishSplice(chRaw, sh.marshal())
}

// finishSplice sends toServer as the ClientHello, relays (or, when
// clientSH is set, replaces) the ServerHello, relays the ClientFinished and
// records and relays the server's answer.
func (s *session) finishSplice(toServer, clientSH []byte) {
	if err := s.toServer(toServer); err != nil {
		s.fail(err)
		return
	}
	sh, err := s.fromServer()
	if err != nil {
		s.fail(err)
		return
	}
	if clientSH != nil {
		sh = clientSH
	}
	if err := s.toClient(sh); err != nil {
		s.fail(err)
		return
	}
	cf, err := s.fromClient()
	if err != nil {
		s.fail(err)
		return
	}
	if err := s.toServer(cf); err != nil {
		s.fail(err)
		return
	}
	reply, err := s.fromServer()
	if err != nil {
		s.fail(err)
		return
	}
	s.mu.Lock()
	s.serverReply = reply
	s.mu.Unlock()
	_ = s.toClient(reply)
	_, _ = drain(s.client, attackWait) // let the client read it and hang up
}

// TestAttackRecordedHandshakeReplay: what a legitimate client sent in a whole
// session, replayed verbatim on a fresh connection, gets nothing.
func TestAttackRecordedHandshakeReplay(t *testing.T) {
	key := attackKey(t)
	cfg := attackConfig(key)
	srv := startServer(t, cfg)
	m := startMITM(t, srv.addr, relay(relayOpts{autoForward: true}))

	// Record a complete legitimate session.
	c := dialLink(t, m.addr(), cfg)
	sess := m.next(t)
	s := srv.accept(t)
	ctx := attackCtx(t, attackWait)
	msgs := []string{"transfer 100 to alice", "transfer 200 to bob", "commit"}
	for _, msg := range msgs {
		if err := c.Send(ctx, []byte(msg)); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	_ = c.Close()
	for _, msg := range msgs {
		if got, err := s.Recv(ctx); err != nil || string(got) != msg {
			t.Fatalf("legitimate session: Recv = %q, %v", got, err)
		}
	}
	if _, err := s.Recv(ctx); !errors.Is(err, io.EOF) {
		t.Fatalf("legitimate session end = %v, want io.EOF", err)
	}
	sess.waitEnded(t)
	recorded, recordedS2C := sess.seen()
	sess.mu.Lock()
	oldSH := sess.serverHello
	sess.mu.Unlock()
	clientFlight, rest := splitFrames(recorded)
	if len(clientFlight) < 2 || msgType(clientFlight[0]) != msgClientHello || msgType(clientFlight[1]) != msgClientFinished || len(rest) == 0 {
		t.Fatalf("recorded client stream: %d frames, %d trailing bytes; want ClientHello, ClientFinished, records", len(clientFlight), len(rest))
	}

	t.Run("lockstep", func(t *testing.T) {
		r := rawDial(t, srv.addr)
		mustWrite(t, r, frame.Append(nil, clientFlight[0]))
		sh := mustReadMsg(t, r)
		if msgType(sh) != msgServerHello || bytes.Equal(sh, oldSH) {
			t.Fatalf("listener answered a replayed ClientHello with %x; want a fresh ServerHello", sh[:16])
		}
		mustWrite(t, r, frame.Append(nil, clientFlight[1]))
		got, closed := drain(r, attackWait)
		if want := failureFrame(failAuth); !closed || !bytes.Equal(got, want) {
			t.Fatalf("after the replayed ClientFinished the listener sent %x (closed %v), want %x then EOF", got, closed, want)
		}
		if err := srv.nextErr(t); !errors.Is(err, auth.ErrAuthFailed) {
			t.Fatalf("listener handshake error = %v, want auth.ErrAuthFailed", err)
		}
		srv.expectNoLink(t)
	})
	t.Run("whole session at once", func(t *testing.T) {
		r := rawDial(t, srv.addr)
		mustWrite(t, r, recorded)
		got, closed := drain(r, attackWait)
		if !closed {
			t.Fatal("the listener kept a replayed session open")
		}
		frames, _ := splitFrames(got)
		for _, f := range frames {
			if msgType(f) == msgServerFinished {
				t.Fatalf("the listener proved itself to a replayed session: %x", f)
			}
		}
		if err := srv.nextErr(t); !errors.Is(err, auth.ErrAuthFailed) {
			t.Fatalf("listener handshake error = %v, want auth.ErrAuthFailed", err)
		}
		srv.expectNoLink(t)
	})
	t.Run("server flight replayed to a fresh dialer", func(t *testing.T) {
		flight, _ := splitFrames(recordedS2C)
		if len(flight) < 2 || msgType(flight[0]) != msgServerHello || msgType(flight[1]) != msgServerFinished {
			t.Fatalf("recorded server stream: %d frames, want ServerHello, ServerFinished", len(flight))
		}
		ln := rawListen(t)
		wait := dialAsync(t, ln.Addr().String(), cfg)
		r := rawAccept(t, ln)
		if msgType(mustReadMsg(t, r)) != msgClientHello {
			t.Fatal("expected a ClientHello")
		}
		mustWrite(t, r, frame.Append(nil, flight[0]))
		if msgType(mustReadMsg(t, r)) != msgClientFinished {
			t.Fatal("expected a ClientFinished")
		}
		mustWrite(t, r, frame.Append(nil, flight[1]))
		if lk, err := wait(); lk != nil || !errors.Is(err, auth.ErrAuthFailed) {
			t.Fatalf("Dial to a replayed server flight = %v, %v; want no Link and auth.ErrAuthFailed", lk, err)
		}
	})
}

// TestAttackDowngrade: an on-path attacker rewrites the negotiated options
// (Python weakness 3). Whatever the Listener agrees to on the strength of a
// rewritten hello, the proofs catch it: both sides fail, no Link.
func TestAttackDowngrade(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    relayOpts
		// check inspects the ServerHello the Listener sent, to show that the
		// rewrite did steer its choice before the proofs caught it.
		check func(*serverHelloMsg) error
	}{
		{"client offers ChaCha20 only", relayOpts{rewriteCH: func(m *clientHelloMsg) {
			m.ciphers = []byte{byte(auth.ChaCha20Poly1305)}
		}}, func(sh *serverHelloMsg) error {
			if sh.cipher != byte(auth.ChaCha20Poly1305) {
				return fmt.Errorf("server chose cipher %d", sh.cipher)
			}
			return nil
		}},
		{"client cipher preference reversed", relayOpts{rewriteCH: func(m *clientHelloMsg) {
			m.ciphers = []byte{byte(auth.ChaCha20Poly1305), byte(auth.AES256GCM)}
		}}, nil},
		{"bogus version 0 offered ahead of 1", relayOpts{rewriteCH: func(m *clientHelloMsg) {
			m.versions = []byte{0x00, protocolVersion1}
		}}, nil},
		{"unknown version offered ahead of 1", relayOpts{rewriteCH: func(m *clientHelloMsg) {
			m.versions = []byte{0x02, protocolVersion1}
		}}, nil},
		{"client max frame lowered", relayOpts{rewriteCH: func(m *clientHelloMsg) { m.maxFrame = 1024 }}, nil},
		{"client max frame raised", relayOpts{rewriteCH: func(m *clientHelloMsg) { m.maxFrame = 1 << 30 }}, nil},
		{"client name changed", relayOpts{rewriteCH: func(m *clientHelloMsg) { m.name = "coordinator" }}, nil},
		{"server cipher switched to ChaCha20", relayOpts{rewriteSH: func(m *serverHelloMsg) {
			m.cipher = byte(auth.ChaCha20Poly1305)
		}}, func(sh *serverHelloMsg) error {
			if sh.cipher != byte(auth.AES256GCM) {
				return fmt.Errorf("server chose cipher %d before the rewrite", sh.cipher)
			}
			return nil
		}},
		{"server max frame raised", relayOpts{rewriteSH: func(m *serverHelloMsg) { m.maxFrame = 1 << 30 }}, nil},
		{"server name changed", relayOpts{rewriteSH: func(m *serverHelloMsg) { m.name = "someone-else" }}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			key := attackKey(t)
			cfg := attackConfig(key)
			srv := startServer(t, cfg)
			m := startMITM(t, srv.addr, relay(tc.o))
			lk, err := transport.Dial(attackCtx(t, attackWait), "tcp", m.addr(), cfg)
			if lk != nil {
				_ = lk.Close()
			}
			if lk != nil || !errors.Is(err, auth.ErrAuthFailed) {
				t.Fatalf("dialer under a downgrade = %v, %v; want no Link and auth.ErrAuthFailed", lk, err)
			}
			if err := srv.nextErr(t); !errors.Is(err, auth.ErrAuthFailed) {
				t.Fatalf("listener handshake error = %v, want auth.ErrAuthFailed", err)
			}
			srv.expectNoLink(t)
			sess := m.next(t)
			sess.waitEnded(t)
			sess.mu.Lock()
			shRaw, reply := sess.serverHello, sess.serverReply
			sess.mu.Unlock()
			if want := failureFrame(failAuth); !bytes.Equal(frame.Append(nil, reply), want) {
				t.Fatalf("listener answered the ClientFinished with %x, want %x", reply, want)
			}
			if tc.check != nil {
				sh, err := parseServerHello(shRaw)
				if err != nil {
					t.Fatal(err)
				}
				if err := tc.check(sh); err != nil {
					t.Fatalf("the rewrite did not steer the negotiation as intended: %v", err)
				}
			}
		})
	}
}

// TestAttackModeConfusion: a native dialer never falls back to Python's
// handshake, whose traffic is plaintext: pointed at a Python-mode Listener
// (or an attacker speaking Python's protocol), it fails, and neither side
// gets a Link.
func TestAttackModeConfusion(t *testing.T) {
	key := attackKey(t)
	pyCfg := attackConfig(key)
	pyCfg.Auth.Mode = auth.ModePython
	srv := startServer(t, pyCfg)
	lk, err := transport.Dial(attackCtx(t, attackWait), "tcp", srv.addr, attackConfig(key))
	if lk != nil {
		_ = lk.Close()
	}
	if lk != nil || !errors.Is(err, auth.ErrProtocol) {
		t.Fatalf("native Dial to a Python-mode Listener = %v, %v; want no Link and auth.ErrProtocol", lk, err)
	}
	if err := srv.nextErr(t); err == nil {
		t.Fatal("the Python-mode Listener logged a nil error")
	}
	srv.expectNoLink(t)
}
