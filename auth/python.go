package auth

import (
	"bytes"
	"crypto/hmac"
	"crypto/md5"
	"crypto/sha256"
	"fmt"
	"hash"
	"io"

	"github.com/seed0811993b/conclave/internal/frame"
)

// ModePython speaks the authkey handshake of Python's multiprocessing.connection:
// each side sends a challenge and checks the other's HMAC of it, the server
// first.
//
//	S->C  #CHALLENGE# M_s   C->S  response(M_s)   S->C  #WELCOME# | #FAILURE#
//	C->S  #CHALLENGE# M_c   S->C  response(M_c)   C->S  #WELCOME# | #FAILURE#
//
// Our challenges are always "{sha256}" + 40 random bytes and we accept only
// "{sha256}" answers and challenges, so a peer cannot pick a weaker digest.
// Python 3.11 and older speak raw HMAC-MD5 (a 20-byte challenge, a 16-byte
// answer); that is accepted only with Config.PythonLegacyMD5.

const (
	pyChallengeTag = "#CHALLENGE#"
	pyWelcome      = "#WELCOME#"
	pyFailure      = "#FAILURE#"
	pySHA256Tag    = "{sha256}"

	// pyNonceLen is the random part of our challenges, as in Python 3.12+.
	pyNonceLen = 40
	// pyMinNonceLen is the least randomness we answer for after the digest
	// prefix. Python asks only for 20 bytes, prefix included; requiring them
	// after it keeps a peer from collecting our MACs of guessable messages.
	pyMinNonceLen = 20
	// pyLegacyChallengeLen and pyLegacyResponseLen are the sizes Python 3.12+
	// reads as legacy MD5 before looking for a prefix (and a modern peer
	// therefore never sends).
	pyLegacyChallengeLen = 20
	pyLegacyResponseLen  = md5.Size
	// pyMaxDigestName is the longest name Python allows in "{name}"
	// ("sha3_256"): it looks for '}' at index 2..9 only.
	pyMaxDigestName = 8
	// pyHandshakeFrame is Python's own read cap during the handshake.
	pyHandshakeFrame = 256
)

// pyKnownDigests are the digests Python 3.12+ accepts in a prefix. We name
// them in errors (they are protocol constants, not peer data) and refuse all
// but sha256.
var pyKnownDigests = map[string]bool{"md5": true, "sha256": true, "sha384": true, "sha3_256": true, "sha3_384": true}

// pyDigest is the MAC a peer chose; the zero value means not yet known.
type pyDigest uint8

const (
	pyDigestNone pyDigest = iota
	pyDigestSHA256
	pyDigestMD5 // legacy, only with Config.PythonLegacyMD5
)

func (d pyDigest) String() string {
	if d == pyDigestMD5 {
		return "md5"
	}
	return "sha256"
}

// pyHandshake is what the client and server share: the key, our outstanding
// challenge and the digest the peer proved itself with.
type pyHandshake struct {
	cfg    *Config
	stage  int
	conn   endpoints // the connection this handshake runs on
	ours   []byte    // the challenge we issued, prefix included
	reg    *registration
	digest pyDigest
	login  pyLogin
	// remoteKey is the client's address as the login rate limits count it
	// (SCRAMRemoteKey: the IP, not the port).
	remoteKey string
	res       handshakeResult
}

// pythonServer is the Listener.accept side: it challenges first.
type pythonServer struct{ pyHandshake }

// pythonClient is the Client side: it answers the server's challenge, then
// challenges the server.
type pythonClient struct{ pyHandshake }

func newPythonServer(cfg *Config, conn endpoints) handshaker {
	return &pythonServer{pyHandshake{cfg: cfg, conn: conn}}
}

func newPythonClient(cfg *Config, conn endpoints) handshaker {
	return &pythonClient{pyHandshake{cfg: cfg, conn: conn}}
}

func (h *pyHandshake) readLimit() int           { return pyHandshakeFrame }
func (h *pyHandshake) result() *handshakeResult { return &h.res }

// release forgets our challenge. Step calls it when the handshake ends either
// way, and conn.go when it abandons a handshake between steps (a timeout, a
// closed connection).
func (h *pyHandshake) release() {
	issuedChallenges.release(h.reg)
	h.reg = nil
}

// end releases our challenge once the handshake is over, for success or
// failure, and fills in the result on success.
func (h *pyHandshake) end(out []byte, done bool, err error) ([]byte, bool, error) {
	if err == nil && !done {
		return out, false, nil
	}
	h.release()
	if err == nil {
		h.res.state = h.state()
	}
	return out, done, err
}

// state is the connection's state once the handshake succeeds.
func (h *pyHandshake) state() ConnectionState {
	st := ConnectionState{
		Mode:             ModePython,
		PythonDigest:     h.digest.String(),
		MaxFrameSize:     h.cfg.maxFrameSize(),
		PeerMaxFrameSize: h.cfg.maxFrameSize(),
	}
	if h.login.user != "" {
		st.Mechanism = mechanismName(mechKeyAndSCRAM)
		st.PeerUser, st.PeerRoles, st.PeerTopics = h.login.user, h.login.roles, h.login.topics
	}
	return st
}

// authorize runs Config.Authorize on a server whose client has proved
// everything asked of it.
func (h *pyHandshake) authorize() error {
	if h.cfg.Authorize == nil {
		return nil
	}
	if err := h.cfg.Authorize(h.state()); err != nil {
		return fmt.Errorf("%w: %w", ErrNotAllowed, err)
	}
	return nil
}

func (s *pythonServer) step(in []byte) ([]byte, bool, error) {
	stage := s.stage
	s.stage++
	switch stage {
	case 0:
		out, err := s.challenge()
		return s.end(out, false, err)
	case 1:
		if err := s.verify(in); err != nil {
			// Python sends #FAILURE# for any bad answer; so do we, so that a
			// Python client reports an AuthenticationError, not an EOF.
			return s.end(pyFrame(pyFailure, nil), false, err)
		}
		return s.end(pyFrame(pyWelcome, nil), false, nil)
	case 2:
		out, err := s.answer(in)
		return s.end(out, false, err)
	case 3:
		err := s.welcomed(in)
		login := err == nil && s.loginWanted(true)
		if err == nil && !login {
			// Python's protocol has no message to refuse with here: the
			// connection just closes.
			err = s.authorize()
		}
		return s.end(nil, err == nil && !login, err)
	case 4:
		if !s.loginWanted(true) {
			break
		}
		out, err := s.serverFirst(in)
		return s.end(out, false, err)
	case 5:
		if !s.loginWanted(true) {
			break
		}
		out, err := s.serverFinal(in)
		return s.end(out, err == nil, err)
	}
	return s.end(nil, false, fmt.Errorf("%w: python handshake already over", ErrProtocol))
}

func (c *pythonClient) step(in []byte) ([]byte, bool, error) {
	stage := c.stage
	c.stage++
	switch stage {
	case 0:
		return nil, false, nil // the server speaks first
	case 1:
		// Our challenge goes out with our answer instead of after the
		// server's #WELCOME#: Python's server reads the two in order
		// anyway, and the handshake saves a round trip.
		out, err := c.answer(in)
		if err != nil {
			return c.end(out, false, err)
		}
		ch, err := c.challenge()
		return c.end(append(out, ch...), false, err)
	case 2:
		err := c.welcomed(in)
		return c.end(nil, false, err)
	case 3:
		if err := c.verify(in); err != nil {
			return c.end(pyFrame(pyFailure, nil), false, err)
		}
		if !c.loginWanted(false) {
			return c.end(pyFrame(pyWelcome, nil), true, nil)
		}
		// The login's first message goes out with our #WELCOME#.
		first, err := c.clientFirst()
		return c.end(append(pyFrame(pyWelcome, nil), first...), false, err)
	case 4:
		if !c.loginWanted(false) {
			break
		}
		out, err := c.clientFinal(in)
		return c.end(out, false, err)
	case 5:
		if !c.loginWanted(false) {
			break
		}
		err := c.clientVerify(in)
		return c.end(nil, err == nil, err)
	}
	return c.end(nil, false, fmt.Errorf("%w: python handshake already over", ErrProtocol))
}

// challenge issues our challenge and registers it, so that no handshake in
// this process will answer it for a peer.
func (h *pyHandshake) challenge() ([]byte, error) {
	m := make([]byte, len(pySHA256Tag)+pyNonceLen)
	copy(m, pySHA256Tag)
	if _, err := io.ReadFull(h.cfg.rand(), m[len(pySHA256Tag):]); err != nil {
		return nil, fmt.Errorf("auth: read random: %w", err)
	}
	h.ours = m
	h.reg = issuedChallenges.register(m, max(challengeTTL, h.cfg.handshakeTimeout()), h.conn)
	return pyFrame(pyChallengeTag, m), nil
}

// verify checks the peer's answer to our challenge.
func (h *pyHandshake) verify(in []byte) error {
	if len(in) == pyLegacyResponseLen {
		if !h.cfg.PythonLegacyMD5 {
			return fmt.Errorf("%w: peer answered with a raw 16-byte HMAC-MD5", ErrLegacyDigest)
		}
		if err := h.setDigest(pyDigestMD5); err != nil {
			return err
		}
		if !hmac.Equal(in, pyMAC(md5.New, h.cfg.Key, h.ours)) {
			return fmt.Errorf("%w: python peer's HMAC-MD5 answer is wrong (different key?)", ErrAuthFailed)
		}
		return nil
	}
	mac, err := pySHA256Payload(in, "answer")
	if err != nil {
		return err
	}
	if len(mac) != sha256.Size {
		return fmt.Errorf("%w: python answer has a %d-byte MAC, want %d", ErrProtocol, len(mac), sha256.Size)
	}
	if err := h.setDigest(pyDigestSHA256); err != nil {
		return err
	}
	if !hmac.Equal(mac, pyMAC(sha256.New, h.cfg.Key, h.ours)) {
		return fmt.Errorf("%w: python peer's HMAC-SHA256 answer is wrong (different key?)", ErrAuthFailed)
	}
	return nil
}

// answer checks the peer's challenge frame and returns our response frame.
func (h *pyHandshake) answer(in []byte) ([]byte, error) {
	m, ok := bytes.CutPrefix(in, []byte(pyChallengeTag))
	if !ok {
		return nil, fmt.Errorf("%w: expected a python #CHALLENGE# message", ErrProtocol)
	}
	// Checked before anything else: never compute a MAC of our own challenge
	// for a peer, whatever digest it asks for.
	if issuedChallenges.reflected(m, h.conn) {
		return nil, fmt.Errorf("%w: python peer sent a challenge this process issued", ErrReflected)
	}
	if len(m) == pyLegacyChallengeLen {
		if !h.cfg.PythonLegacyMD5 {
			return nil, fmt.Errorf("%w: peer sent a 20-byte legacy challenge", ErrLegacyDigest)
		}
		if err := h.setDigest(pyDigestMD5); err != nil {
			return nil, err
		}
		return pyFrame("", pyMAC(md5.New, h.cfg.Key, m)), nil
	}
	if len(m) < pyLegacyChallengeLen {
		return nil, fmt.Errorf("%w: python challenge too short: %d bytes", ErrProtocol, len(m))
	}
	nonce, err := pySHA256Payload(m, "challenge")
	if err != nil {
		return nil, err
	}
	if len(nonce) < pyMinNonceLen {
		return nil, fmt.Errorf("%w: python challenge has %d random bytes, want at least %d", ErrProtocol, len(nonce), pyMinNonceLen)
	}
	if err := h.setDigest(pyDigestSHA256); err != nil {
		return nil, err
	}
	return pyFrame(pySHA256Tag, pyMAC(sha256.New, h.cfg.Key, m)), nil
}

// welcomed checks the peer's verdict on our answer.
func (h *pyHandshake) welcomed(in []byte) error {
	switch string(in) {
	case pyWelcome:
		return nil
	case pyFailure:
		return fmt.Errorf("%w: python peer rejected our answer (wrong key?)", ErrAuthFailed)
	}
	return fmt.Errorf("%w: expected python #WELCOME# or #FAILURE#, got %d other bytes", ErrProtocol, len(in))
}

// setDigest pins the digest of the whole handshake to the first one the peer
// used: a Python peer never mixes them, so a mix is not Python.
func (h *pyHandshake) setDigest(d pyDigest) error {
	if h.digest != pyDigestNone && h.digest != d {
		return fmt.Errorf("%w: python peer switched from %v to %v mid-handshake", ErrProtocol, h.digest, d)
	}
	h.digest = d
	return nil
}

// pySHA256Payload strips the "{sha256}" prefix from a modern message. It
// parses the prefix by Python 3.12's rule ('}' at index 2..9) so that it
// can say which digest a Python peer asked for; any digest but sha256 is a
// downgrade attempt.
func pySHA256Payload(msg []byte, what string) ([]byte, error) {
	if payload, ok := bytes.CutPrefix(msg, []byte(pySHA256Tag)); ok {
		return payload, nil
	}
	if len(msg) > 0 && msg[0] == '{' {
		window := msg[1:min(len(msg), pyMaxDigestName+2)]
		if i := bytes.IndexByte(window, '}'); i > 0 {
			if name := string(window[:i]); pyKnownDigests[name] {
				return nil, fmt.Errorf("%w: python peer's %s uses %s; only sha256 is accepted", ErrAuthFailed, what, name)
			}
			return nil, fmt.Errorf("%w: python %s names an unknown digest", ErrProtocol, what)
		}
	}
	return nil, fmt.Errorf("%w: python %s of %d bytes has no {digest} prefix", ErrProtocol, what, len(msg))
}

func pyMAC(h func() hash.Hash, key, msg []byte) []byte {
	m := hmac.New(h, key)
	m.Write(msg)
	return m.Sum(nil)
}

// pyFrame returns the wire bytes of one frame holding tag then body.
func pyFrame(tag string, body []byte) []byte {
	n := len(tag) + len(body)
	out := frame.AppendHeader(make([]byte, 0, frame.HeaderLen(n)+n), n)
	return append(append(out, tag...), body...)
}
