package auth

import (
	"crypto/ecdh"
	"crypto/hmac"
	"crypto/mlkem"
	"fmt"
	"io"
	"slices"

	"github.com/seed0811993b/conclave/internal/frame"
)

// handshaker is one side of a handshake as a pure state machine: step takes
// the payload of the frame the peer sent (nil to start; valid only during the
// call) and returns the wire bytes to send next. When err is non-nil, out may still hold a failure notice
// that should reach the peer before the connection closes. Only conn.go does
// I/O.
type handshaker interface {
	step(in []byte) (out []byte, done bool, err error)
	// readLimit caps the next frame read from the peer.
	readLimit() int
	result() *handshakeResult
}

// handshakeResult is what a finished handshake hands to the Conn.
type handshakeResult struct {
	state       ConnectionState
	readSecret  []byte // nil in Python mode: no records
	writeSecret []byte
}

// supportedVersions lists the versions this build speaks, best first.
var supportedVersions = []byte{version1}

type nativeClient struct {
	cfg   *Config
	tr    *transcript
	stage int
	ch    *clientHello
	keys  *clientKeys // ephemeral keys; preset only by known-answer tests
	hs    []byte
	scram *SCRAMClient // the user login, in the user mechanisms
	// sigPad hides the server's SCRAM signature on the wire (scramMasks).
	sigPad []byte
	res    handshakeResult
}

type nativeServer struct {
	cfg   *Config
	tr    *transcript
	stage int
	xk    *ecdh.PrivateKey // ephemeral key; preset only by known-answer tests
	// encapsulate is ek.Encapsulate; known-answer tests fix its randomness.
	encapsulate func(*mlkem.EncapsulationKey768) (secret, ct []byte)
	hs          []byte
	remote      string // the client's address, for the login rate limits
	mech        byte
	user        string // the user logging in, and its conversation
	combined    string
	th2         []byte // SHA-256(ClientHello || ServerHello): the login's channel binding
	res         handshakeResult
}

func newNativeClient(cfg *Config) *nativeClient {
	return &nativeClient{cfg: cfg, tr: newTranscript()}
}

func newNativeServer(cfg *Config, remote string) *nativeServer {
	return &nativeServer{cfg: cfg, tr: newTranscript(), encapsulate: (*mlkem.EncapsulationKey768).Encapsulate, remote: remote}
}

func (c *nativeClient) readLimit() int           { return maxHandshakeFrame }
func (c *nativeClient) result() *handshakeResult { return &c.res }
func (s *nativeServer) readLimit() int           { return maxHandshakeFrame }

// abandon drops the login conversation a failed handshake started: left
// for its 30 s expiry, aborted handshakes fill the server's table of
// pending conversations and push honest logins out of it.
func (s *nativeServer) abandon() {
	if s.combined != "" {
		s.cfg.Users.Abandon(s.combined)
	}
}
func (s *nativeServer) result() *handshakeResult { return &s.res }

// send frames a message, adds it to the transcript and returns the wire bytes.
func (t *transcript) send(msg []byte) []byte {
	f := frame.Append(nil, msg)
	t.add(f)
	return f
}

// recv adds a received message to the transcript in its canonical framing.
func (t *transcript) recv(msg []byte) {
	t.add(frame.AppendHeader(nil, len(msg)))
	t.add(msg)
}

func (c *nativeClient) step(in []byte) ([]byte, bool, error) {
	switch c.stage {
	case 0:
		c.stage = 1
		return c.hello()
	case 1:
		c.stage = 2
		return c.finish(in)
	case 2:
		c.stage = 3
		return nil, true, c.verifyServer(in)
	}
	return nil, false, fmt.Errorf("%w: handshake already over", ErrProtocol)
}

func (c *nativeClient) hello() ([]byte, bool, error) {
	random := make([]byte, randomLen)
	if _, err := io.ReadFull(c.cfg.rand(), random); err != nil {
		return nil, false, fmt.Errorf("auth: read random: %w", err)
	}
	if c.keys == nil {
		keys, err := clientKeyPool.get()
		if err != nil {
			return nil, false, fmt.Errorf("auth: ephemeral keys: %w", err)
		}
		c.keys = &keys
	}
	xk, dk := c.keys.x, c.keys.dk
	ciphers := make([]byte, 0, maxListLen)
	for _, s := range c.cfg.ciphers() {
		ciphers = append(ciphers, byte(s))
	}
	mech := c.cfg.mechanismFor()
	var mechData []byte
	if usesSCRAM(mech) {
		sc, err := NewSCRAMClient(c.cfg.User, string(c.cfg.Password), SCRAMClientOptions{Rand: c.cfg.rand()})
		if err != nil {
			return nil, false, err
		}
		c.scram = sc
		user, cnonce := sc.First()
		mechData = marshalClientSCRAM(user, cnonce)
	}
	c.ch = &clientHello{
		versions:  supportedVersions,
		mechanism: mech,
		mechData:  mechData,
		ciphers:   ciphers,
		maxFrame:  uint32(c.cfg.maxFrameSize()),
		name:      c.cfg.Name,
		random:    random,
		x25519:    xk.PublicKey().Bytes(),
		mlkemKey:  dk.EncapsulationKey().Bytes(),
	}
	return c.tr.send(c.ch.marshal()), false, nil
}

func (c *nativeClient) finish(in []byte) ([]byte, bool, error) {
	sh, err := parseServerHello(in)
	if err != nil {
		return nil, false, err
	}
	// The server's choices must come from our offer. An on-path attacker who
	// rewrote our offer is caught later by the proofs; this catches a server
	// that misbehaves on its own.
	if !slices.Contains(c.ch.versions, sh.version) {
		return nil, false, fmt.Errorf("%w: server chose version %d, not offered", ErrUnsupportedVersion, sh.version)
	}
	if sh.mechanism != c.ch.mechanism {
		return nil, false, fmt.Errorf("%w: server chose mechanism %d, not offered", ErrProtocol, sh.mechanism)
	}
	if !slices.Contains(c.ch.ciphers, sh.cipher) {
		return nil, false, fmt.Errorf("%w: server chose cipher %d, not offered", ErrUnsupportedCipher, sh.cipher)
	}
	var challenge SCRAMChallenge
	if usesSCRAM(sh.mechanism) {
		if challenge, err = parseServerSCRAM(sh.mechData); err != nil {
			return nil, false, err
		}
	} else if len(sh.mechData) != 0 {
		return nil, false, fmt.Errorf("%w: shared-key hello carries mechanism data", ErrProtocol)
	}
	c.tr.recv(in)
	x := startX25519(c.keys.x, sh.x25519)
	ms, err := c.keys.dk.Decapsulate(sh.mlkemCT)
	xs, xerr := x.wait()
	if err != nil {
		return nil, false, fmt.Errorf("%w: server ml-kem ciphertext: %v", ErrProtocol, err)
	}
	if xerr != nil {
		return nil, false, fmt.Errorf("%w: server x25519 share: %v", ErrProtocol, xerr)
	}
	c.hs = handshakeSecret(scheduleKey(c.cfg.Key, sh.mechanism), ms, xs)
	c.keys = nil // single use
	c.res.state = ConnectionState{
		Mode:             ModeNative,
		Version:          sh.version,
		CipherSuite:      CipherSuite(sh.cipher),
		Mechanism:        mechanismName(sh.mechanism),
		PeerName:         sh.name,
		MaxFrameSize:     c.cfg.maxFrameSize(),
		PeerMaxFrameSize: int(sh.maxFrame),
		Sealed:           true,
	}
	th2 := c.tr.sum()
	var clientProof string
	if c.scram != nil {
		// PBKDF2 runs here, on the client: the server stores only verifiers.
		if clientProof, err = c.scram.FinalBound(challenge.Salt, challenge.Iterations, challenge.CombinedNonce, th2); err != nil {
			return nil, false, err
		}
		var proofPad []byte
		proofPad, c.sigPad = scramMasks(c.hs, th2)
		clientProof = xorB64(clientProof, proofPad)
	}
	return c.tr.send(marshalFinished(msgClientFinished, proof(c.hs, labelClientProof, th2), clientProof)), false, nil
}

// scheduleKey is the key the handshake secret is salted with: the cluster
// key where the mechanism proves it, none in a user-only login, whose
// SCRAM proofs authenticate the transcript instead.
func scheduleKey(key Key, mech byte) []byte {
	if usesKey(mech) {
		return key
	}
	return nil
}

func (c *nativeClient) verifyServer(in []byte) error {
	mac, signature, err := parseFinished(in, msgServerFinished, c.scram != nil)
	if err != nil {
		return err
	}
	if !hmac.Equal(mac, proof(c.hs, labelServerProof, c.tr.sum())) {
		return fmt.Errorf("%w: server proof does not verify (different key, or a forged server)", ErrAuthFailed)
	}
	if c.scram != nil {
		// A server that cannot sign does not hold our verifier: an impostor.
		if err := c.scram.VerifyServer(xorB64(signature, c.sigPad)); err != nil {
			return err
		}
	}
	c.tr.recv(in)
	c2s, s2c := trafficSecrets(c.hs, c.tr.sum())
	c.res.writeSecret, c.res.readSecret = c2s, s2c
	c.hs = nil
	return nil
}

func (s *nativeServer) step(in []byte) ([]byte, bool, error) {
	switch s.stage {
	case 0:
		s.stage = 1 // the client speaks first
		return nil, false, nil
	case 1:
		s.stage = 2
		out, err := s.hello(in)
		if err != nil {
			return marshalFailureFrame(err), false, err
		}
		return out, false, nil
	case 2:
		s.stage = 3
		out, err := s.finish(in)
		if err != nil {
			return marshalFailureFrame(err), false, err
		}
		return out, true, nil
	}
	return nil, false, fmt.Errorf("%w: handshake already over", ErrProtocol)
}

// marshalFailureFrame is the notice a server sends before closing: only a
// code, so a prober learns nothing the closed connection would not tell it.
func marshalFailureFrame(err error) []byte {
	return frame.Append(nil, marshalFailure(failureCode(err)))
}

func (s *nativeServer) hello(in []byte) ([]byte, error) {
	ch, err := parseClientHello(in)
	if err != nil {
		return nil, err
	}
	var version byte
	for _, v := range supportedVersions {
		if slices.Contains(ch.versions, v) {
			version = v
			break
		}
	}
	if version == 0 {
		return nil, fmt.Errorf("%w: client offered %v", ErrUnsupportedVersion, ch.versions)
	}
	s.mech = s.cfg.mechanismRequired()
	if ch.mechanism == mechKeyAndSCRAM && s.mech == mechSCRAM && len(s.cfg.Key) > 0 {
		// A listener that requires users also takes a client that proves
		// the key as well, when it has the key to check: members that
		// hold the key (for the gossip) and clients that only log in can
		// share one listener.
		s.mech = mechKeyAndSCRAM
	}
	if ch.mechanism != s.mech {
		return nil, fmt.Errorf("%w: client offered %s; this listener requires %s", errMechanism, mechanismName(ch.mechanism), mechanismName(s.mech))
	}
	var user, cnonce string
	if usesSCRAM(s.mech) {
		if user, cnonce, err = parseClientSCRAM(ch.mechData); err != nil {
			return nil, err
		}
	} else if len(ch.mechData) != 0 {
		return nil, fmt.Errorf("%w: shared-key hello carries mechanism data", ErrProtocol)
	}
	var cipher CipherSuite
	for _, cs := range s.cfg.ciphers() {
		if slices.Contains(ch.ciphers, byte(cs)) {
			cipher = cs
			break
		}
	}
	if cipher == 0 {
		return nil, fmt.Errorf("%w: client offered %v", ErrUnsupportedCipher, ch.ciphers)
	}
	s.tr.recv(in)

	xk := s.xk
	if xk == nil {
		var err error
		if xk, err = serverKeyPool.get(); err != nil {
			return nil, fmt.Errorf("auth: x25519 key: %w", err)
		}
	}
	s.xk = nil // single use
	x := startX25519(xk, ch.x25519)
	ek, err := mlkem.NewEncapsulationKey768(ch.mlkemKey)
	var ms, ct []byte
	if err == nil {
		ms, ct = s.encapsulate(ek)
	}
	xs, xerr := x.wait()
	if err != nil {
		return nil, fmt.Errorf("%w: client ml-kem key: %v", ErrProtocol, err)
	}
	if xerr != nil {
		return nil, fmt.Errorf("%w: client x25519 share: %v", ErrProtocol, xerr)
	}
	random := make([]byte, randomLen)
	if _, err := io.ReadFull(s.cfg.rand(), random); err != nil {
		return nil, fmt.Errorf("auth: read random: %w", err)
	}
	var mechData []byte
	if usesSCRAM(s.mech) {
		challenge, err := s.cfg.Users.Start(SCRAMStart{User: user, ClientNonce: cnonce, Remote: s.remote})
		if err != nil {
			return nil, err
		}
		s.user, s.combined = user, challenge.CombinedNonce
		mechData = marshalServerSCRAM(challenge)
	}
	sh := &serverHello{
		version:   version,
		mechanism: s.mech,
		mechData:  mechData,
		cipher:    byte(cipher),
		maxFrame:  uint32(s.cfg.maxFrameSize()),
		name:      s.cfg.Name,
		random:    random,
		x25519:    xk.PublicKey().Bytes(),
		mlkemCT:   ct,
	}
	s.hs = handshakeSecret(scheduleKey(s.cfg.Key, s.mech), ms, xs)
	s.res.state = ConnectionState{
		Mode:             ModeNative,
		Version:          version,
		CipherSuite:      cipher,
		Mechanism:        mechanismName(s.mech),
		PeerName:         ch.name,
		MaxFrameSize:     s.cfg.maxFrameSize(),
		PeerMaxFrameSize: int(ch.maxFrame),
		Sealed:           true,
	}
	out := s.tr.send(sh.marshal())
	s.th2 = s.tr.sum()
	return out, nil
}

// finish verifies the client before the server proves anything, so a peer
// without the key never obtains a server proof to replay or study.
func (s *nativeServer) finish(in []byte) ([]byte, error) {
	mac, clientProof, err := parseFinished(in, msgClientFinished, usesSCRAM(s.mech))
	if err != nil {
		return nil, err
	}
	if !hmac.Equal(mac, proof(s.hs, labelClientProof, s.tr.sum())) {
		return nil, fmt.Errorf("%w: client proof does not verify (wrong key, or a relayed or replayed handshake)", ErrAuthFailed)
	}
	var signature string
	if usesSCRAM(s.mech) {
		proofPad, sigPad := scramMasks(s.hs, s.th2)
		login, err := s.cfg.Users.Finish(SCRAMProof{
			User: s.user, CombinedNonce: s.combined, ClientProof: xorB64(clientProof, proofPad),
			ChannelBinding: s.th2, Remote: s.remote,
		})
		if err != nil {
			return nil, err
		}
		signature = xorB64(login.ServerSignature, sigPad)
		s.res.state.PeerUser, s.res.state.PeerRoles, s.res.state.PeerTopics = login.User, login.Roles, login.Topics
	}
	if s.cfg.Authorize != nil {
		if err := s.cfg.Authorize(s.res.state); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrNotAllowed, err)
		}
	}
	s.tr.recv(in)
	out := s.tr.send(marshalFinished(msgServerFinished, proof(s.hs, labelServerProof, s.tr.sum()), signature))
	c2s, s2c := trafficSecrets(s.hs, s.tr.sum())
	s.res.readSecret, s.res.writeSecret = c2s, s2c
	s.hs = nil
	return out, nil
}

// x25519Result is an X25519 agreement running beside the ML-KEM half of the
// exchange: the two are independent, and on a multi-core machine running them
// together takes an X25519 (about 36 us) off each side's critical path.
type x25519Result struct {
	done   chan struct{}
	secret []byte
	err    error
}

func startX25519(priv *ecdh.PrivateKey, peerShare []byte) *x25519Result {
	r := &x25519Result{done: make(chan struct{})}
	go func() {
		defer close(r.done)
		peer, err := ecdh.X25519().NewPublicKey(peerShare)
		if err != nil {
			r.err = err
			return
		}
		r.secret, r.err = priv.ECDH(peer)
	}()
	return r
}

func (r *x25519Result) wait() ([]byte, error) {
	<-r.done
	return r.secret, r.err
}
