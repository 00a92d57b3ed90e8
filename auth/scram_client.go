package auth

import (
	"crypto/hmac"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
)

// SCRAMClientOptions configures a SCRAMClient. The zero value is usable.
type SCRAMClientOptions struct {
	// Rand is the source of the client nonce. Default: crypto/rand.Reader.
	Rand io.Reader

	// MaxIterations is the highest iteration count accepted from a server.
	// Default: MaxSCRAMIterations.
	MaxIterations int
}

// SCRAMClient is the client side of one SCRAM-SHA-256 login: First gives the
// user name and a fresh client nonce for the server's ClientFirst (Start),
// Final turns the server's answer into the proof for ClientFinal (Finish),
// and VerifyServer checks the server's signature. A login succeeds only when
// VerifyServer returns nil: a server that cannot sign does not hold the
// user's verifier, and the client must hang up.
//
// Final refuses an iteration count below MinSCRAMIterations or above
// MaxIterations and a combined nonce that does not extend the client's. It
// runs PBKDF2, the one costly step of a login (about 90 ms at
// DefaultSCRAMIterations), once per password, salt and iteration count in
// a process: the derived keys are kept in memory (up to 64 sets) for the
// next login. A SCRAMClient serves one login and is not safe for
// concurrent use. It never prints the password.
type SCRAMClient struct {
	user     string
	password string
	cnonce   string
	maxIter  int

	finalDone bool
	serverSig []byte // expected signature, set by Final
	verified  bool
}

// NewSCRAMClient starts a login as user with password. The error wraps
// ErrSCRAMUserName for an invalid name or ErrSCRAMPassword for an empty
// password.
func NewSCRAMClient(user, password string, opts SCRAMClientOptions) (*SCRAMClient, error) {
	if err := CheckUserName(user); err != nil {
		return nil, err
	}
	if password == "" {
		return nil, ErrSCRAMPassword
	}
	r := opts.Rand
	if r == nil {
		r = rand.Reader
	}
	maxIter := opts.MaxIterations
	if maxIter <= 0 {
		maxIter = MaxSCRAMIterations
	}
	if maxIter < MinSCRAMIterations {
		return nil, fmt.Errorf("auth: SCRAMClientOptions.MaxIterations %d is below the minimum %d", maxIter, MinSCRAMIterations)
	}
	n := make([]byte, SCRAMNonceLen)
	if _, err := io.ReadFull(r, n); err != nil {
		return nil, fmt.Errorf("auth: scram client nonce: %w", err)
	}
	return &SCRAMClient{user: user, password: password, cnonce: encodeB64(n), maxIter: maxIter}, nil
}

// First returns the user name and the client nonce (standard base64 of
// SCRAMNonceLen random bytes) to send to the server.
func (c *SCRAMClient) First() (user, cnonce string) { return c.user, c.cnonce }

// Final computes the client proof (standard base64) for an unbound login
// from the server's answer to First. Errors wrap ErrSCRAMIterations,
// ErrSCRAMNonce or ErrProtocol (a salt that is not base64).
func (c *SCRAMClient) Final(salt string, iterations int, combinedNonce string) (clientProof string, err error) {
	return c.final(salt, iterations, combinedNonce, nil)
}

// FinalBound is Final for a login bound to a channel: binding (1 to
// MaxSCRAMChannelBinding bytes, normally a hash of the handshake transcript)
// must be what the server passes as SCRAMProof.ChannelBinding, or the proof
// fails.
func (c *SCRAMClient) FinalBound(salt string, iterations int, combinedNonce string, binding []byte) (clientProof string, err error) {
	if binding == nil {
		binding = []byte{} // refused by scramChannelBinding: a bound login needs binding bytes
	}
	return c.final(salt, iterations, combinedNonce, binding)
}

func (c *SCRAMClient) final(saltB64 string, iterations int, combined string, binding []byte) (string, error) {
	if c.finalDone {
		return "", errors.New("auth: SCRAMClient.Final called twice; start a new SCRAMClient for each login")
	}
	c.finalDone = true
	if err := checkIterations(iterations, c.maxIter); err != nil {
		return "", fmt.Errorf("%w (sent by the server)", err)
	}
	salt, err := decodeB64(saltB64)
	if err != nil || len(salt) == 0 || len(salt) > maxSaltLen {
		return "", fmt.Errorf("%w: SCRAM salt is not standard base64 of 1 to %d bytes", ErrProtocol, maxSaltLen)
	}
	if !strings.HasPrefix(combined, c.cnonce) || len(combined) == len(c.cnonce) {
		return "", fmt.Errorf("%w: server's combined nonce does not extend ours", ErrSCRAMNonce)
	}
	if len(combined) > maxCombinedNonceLen || !printableNonce(combined) {
		return "", fmt.Errorf("%w: server's combined nonce is over %d bytes or not printable ASCII without ','",
			ErrSCRAMNonce, maxCombinedNonceLen)
	}
	cbind, err := scramChannelBinding(binding)
	if err != nil {
		return "", err
	}
	clientKey, storedKey, serverKey, err := scramKeys.clientKeys(c.password, salt, iterations)
	if err != nil {
		return "", err
	}
	am := scramAuthMessage(c.user, c.cnonce, combined, saltB64, iterations, cbind)
	c.serverSig = scramServerSignature(serverKey, am)
	return encodeB64(scramClientProof(clientKey, storedKey, am)), nil
}

// printableNonce reports whether s is RFC 5802 "printable": ASCII 0x21-0x7e
// except ','.
func printableNonce(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e || s[i] == ',' {
			return false
		}
	}
	return true
}

// VerifyServer checks the server's signature (standard base64) in constant
// time. It returns nil only if the server holds the user's verifier; the
// error wraps ErrSCRAMServerSignature.
func (c *SCRAMClient) VerifyServer(serverSignature string) error {
	if c.serverSig == nil {
		return fmt.Errorf("%w: no proof was computed (call Final first)", ErrSCRAMServerSignature)
	}
	sig, err := decodeB64(serverSignature)
	if err != nil || !hmac.Equal(sig, c.serverSig) {
		return ErrSCRAMServerSignature
	}
	c.verified = true
	return nil
}

// Verified reports whether VerifyServer has accepted the server.
func (c *SCRAMClient) Verified() bool { return c.verified }

// String names the login without the password.
func (c SCRAMClient) String() string {
	return "auth.SCRAMClient(user=" + c.user + ", password redacted)"
}

// GoString names the login without the password.
func (c SCRAMClient) GoString() string { return c.String() }

// Format prints String for every verb, so that no format string can leak
// the password; it has a value receiver so that a copy does not either.
func (c SCRAMClient) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, c.String()) }

// LogValue keeps the password out of structured logs.
func (c *SCRAMClient) LogValue() slog.Value { return slog.StringValue(c.String()) }
