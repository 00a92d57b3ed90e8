package auth

import (
	"encoding/json"
	"errors"
	"fmt"
)

// In Python mode a user login follows the authkey handshake, in the seed's
// own shape (scramClientFirst / scramClientFinal, docs/protocol.md §4.1),
// as JSON in ordinary frames, so that a Python client needs only the
// standard library:
//
//	C->S  {"user": U, "cnonce": N}
//	S->C  {"salt": S, "iterations": I, "combined_nonce": R}    or {"error": E}
//	C->S  {"proof": P}
//	S->C  {"signature": V}                                     or {"error": E}
//
// Python mode has no transcript to bind the login to (its traffic is
// plaintext), so the proof is the seed's unbound one (c=biws).

type pyClientFirst struct {
	User   string `json:"user"`
	CNonce string `json:"cnonce"`
}

type pyServerFirst struct {
	Salt          string `json:"salt,omitempty"`
	Iterations    int    `json:"iterations,omitempty"`
	CombinedNonce string `json:"combined_nonce,omitempty"`
	Error         string `json:"error,omitempty"`
}

type pyClientFinal struct {
	Proof string `json:"proof"`
}

type pyServerFinal struct {
	Signature string `json:"signature,omitempty"`
	Error     string `json:"error,omitempty"`
}

// pyLogin is the user login state of a Python-mode handshake.
type pyLogin struct {
	client         *SCRAMClient // client side
	user, combined string       // server side: the conversation
	roles          []string
	topics         TopicRules
}

// loginWanted reports whether this side runs a user login after the
// handshake: a server that requires one, a client that has a user.
func (h *pyHandshake) loginWanted(server bool) bool {
	if server {
		return h.cfg.Require == RequireKeyAndUser
	}
	return h.cfg.User != ""
}

// pyJSONFrame frames v as JSON.
func pyJSONFrame(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("auth: encoding %T: %v", v, err)) // fixed shapes of strings and ints
	}
	return pyFrame("", b)
}

// pyDecode decodes one login message.
func pyDecode(in []byte, v any, what string) error {
	if err := json.Unmarshal(in, v); err != nil {
		return fmt.Errorf("%w: python login: malformed %s", ErrProtocol, what)
	}
	return nil
}

// clientFirst starts the client's login.
func (h *pyHandshake) clientFirst() ([]byte, error) {
	sc, err := NewSCRAMClient(h.cfg.User, string(h.cfg.Password), SCRAMClientOptions{Rand: h.cfg.rand()})
	if err != nil {
		return nil, err
	}
	h.login.client = sc
	user, cnonce := sc.First()
	return pyJSONFrame(pyClientFirst{User: user, CNonce: cnonce}), nil
}

// serverFirst answers a client's first login message.
func (h *pyHandshake) serverFirst(in []byte) ([]byte, error) {
	var m pyClientFirst
	if err := pyDecode(in, &m, "first login message"); err != nil {
		return nil, err
	}
	ch, err := h.cfg.Users.Start(SCRAMStart{User: m.User, ClientNonce: m.CNonce, Remote: h.remoteKey})
	if err != nil {
		return pyJSONFrame(pyServerFirst{Error: pyLoginError(err)}), err
	}
	h.login.user, h.login.combined = m.User, ch.CombinedNonce
	return pyJSONFrame(pyServerFirst{Salt: ch.Salt, Iterations: ch.Iterations, CombinedNonce: ch.CombinedNonce}), nil
}

// clientFinal computes the client's proof.
func (h *pyHandshake) clientFinal(in []byte) ([]byte, error) {
	var m pyServerFirst
	if err := pyDecode(in, &m, "server login message"); err != nil {
		return nil, err
	}
	if m.Error != "" {
		return nil, fmt.Errorf("%w: the server refused the login: %s", ErrAuthFailed, m.Error)
	}
	proof, err := h.login.client.Final(m.Salt, m.Iterations, m.CombinedNonce)
	if err != nil {
		return nil, err
	}
	return pyJSONFrame(pyClientFinal{Proof: proof}), nil
}

// serverFinal checks the client's proof and signs.
func (h *pyHandshake) serverFinal(in []byte) ([]byte, error) {
	var m pyClientFinal
	if err := pyDecode(in, &m, "final login message"); err != nil {
		return nil, err
	}
	login, err := h.cfg.Users.Finish(SCRAMProof{User: h.login.user, CombinedNonce: h.login.combined, ClientProof: m.Proof, Remote: h.remoteKey})
	if err != nil {
		return pyJSONFrame(pyServerFinal{Error: pyLoginError(err)}), err
	}
	h.login.roles, h.login.topics = login.Roles, login.Topics
	if err := h.authorize(); err != nil {
		return pyJSONFrame(pyServerFinal{Error: pyNotAllowed}), err
	}
	return pyJSONFrame(pyServerFinal{Signature: login.ServerSignature}), nil
}

// clientVerify checks the server's signature.
func (h *pyHandshake) clientVerify(in []byte) error {
	var m pyServerFinal
	if err := pyDecode(in, &m, "server signature"); err != nil {
		return err
	}
	switch m.Error {
	case "":
		return h.login.client.VerifyServer(m.Signature)
	case pyNotAllowed:
		return fmt.Errorf("%w: the server accepted our login but refuses this connection (its log says why)", ErrNotAllowed)
	}
	return fmt.Errorf("%w: the server refused the login: %s", ErrAuthFailed, m.Error)
}

// pyNotAllowed is the error a server sends when Config.Authorize refuses a
// client after its login.
const pyNotAllowed = "not allowed"

// pyLoginError is what the peer is told: the same for a wrong password and
// an unknown user, and no detail beyond the kind of refusal.
func pyLoginError(err error) string {
	if errors.Is(err, ErrSCRAMRateLimited) {
		return "too many failed logins; try again later"
	}
	return "authentication failed"
}

// abandon drops the login conversation a failed handshake started (see
// nativeServer.abandon).
func (h *pythonServer) abandon() {
	if h.login.combined != "" {
		h.cfg.Users.Abandon(h.login.combined)
	}
}
