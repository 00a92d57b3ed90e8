package auth

import (
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// SCRAM-SHA-256 (RFC 5802, RFC 7677) logs a named user in with a password
// that the server never sees and never stores: the server keeps a verifier
// (Credential), the client proves it knows the password, and the server
// proves back that it holds the verifier. This file holds the shared pieces:
// limits, errors, name and nonce rules, and the primitives both sides use.
//
// The API follows the seed's scramClientFirst / scramClientFinal: no raw
// SCRAM message travels; both sides rebuild the AuthMessage
//
//	n=USER,r=CNONCE,r=COMBINED,s=SALT_B64,i=ITER,c=CBIND,r=COMBINED
//
// which is RFC 5802's client-first-bare, server-first and
// client-final-without-proof joined by commas. CBIND is "biws" (base64 of
// the GS2 header "n,,") for an unbound login, or, for a login bound to a
// channel (see SCRAMChannelBindingName), base64 of
// "p=conclave-transcript,," followed by the binding bytes: exactly what an
// RFC 5802 SCRAM-SHA-256-PLUS client sends for that channel-binding type.

const (
	// SCRAMMechanism names the mechanism, and prefixes a verifier.
	SCRAMMechanism = "SCRAM-SHA-256"

	// DefaultSCRAMIterations is the PBKDF2 iteration count of new
	// credentials: OWASP's current figure for PBKDF2-HMAC-SHA256. It costs
	// the client about 90 ms per login and the server nothing.
	DefaultSCRAMIterations = 600_000
	// MinSCRAMIterations is the lowest iteration count a credential may have
	// and a client accepts (RFC 7677's minimum).
	MinSCRAMIterations = 4096
	// MaxSCRAMIterations is the highest iteration count a client accepts
	// unless SCRAMClientOptions.MaxIterations says otherwise: about 1.5 s of
	// PBKDF2 here. A higher count from a server is refused, so that a rogue
	// server cannot pin a client's CPU.
	MaxSCRAMIterations = 10_000_000

	// SCRAMSaltLen is the salt size of new credentials, in bytes.
	SCRAMSaltLen = 16
	// SCRAMNonceLen is the size of a client nonce, in bytes before base64:
	// the seed's rule.
	SCRAMNonceLen = 16
	// scramServerNonceLen is the server's part of the combined nonce: 18
	// bytes make 24 base64 characters without padding.
	scramServerNonceLen = 18

	// MaxUserNameLen is the longest user name.
	MaxUserNameLen = 30

	// SCRAMChannelBindingName is the RFC 5802 channel-binding type of a bound
	// login: its GS2 header is "p=conclave-transcript,,". The binding bytes
	// are whatever both sides agree on, normally a hash of the handshake
	// transcript so far (see SCRAMProof.ChannelBinding).
	SCRAMChannelBindingName = "conclave-transcript"
	// MaxSCRAMChannelBinding is the largest channel binding accepted.
	MaxSCRAMChannelBinding = 1024

	// maxSaltLen bounds a salt read from a verifier or sent by a server.
	maxSaltLen = 256
	// maxCombinedNonceLen bounds a combined nonce a client accepts.
	maxCombinedNonceLen = 256
)

// SCRAM errors. Failures wrap one of these with detail, so callers test them
// with errors.Is. A login that fails for want of a valid user and password is
// ErrSCRAMAuth whatever the cause, with the same text for an unknown user and
// a wrong password.
var (
	// ErrSCRAMAuth means a login failed: unknown user or wrong password (the
	// two are indistinguishable by design). It wraps ErrAuthFailed.
	ErrSCRAMAuth = fmt.Errorf("%w: unknown user or wrong password", ErrAuthFailed)

	// ErrSCRAMServerSignature means the server's signature did not verify: it
	// does not hold this user's verifier, so the client must hang up. It
	// wraps ErrAuthFailed.
	ErrSCRAMServerSignature = fmt.Errorf("%w: SCRAM server signature does not verify", ErrAuthFailed)

	// ErrSCRAMRateLimited means too many logins failed lately for this user
	// name or from this address; the detail says when to retry.
	ErrSCRAMRateLimited = errors.New("auth: too many failed logins, slow down")

	// ErrSCRAMUserName reports a user name that breaks the rule: a letter or
	// '_' then letters, digits or '_', MaxUserNameLen characters at most.
	ErrSCRAMUserName = errors.New("auth: invalid user name")

	// ErrSCRAMNonce reports a malformed nonce: a client nonce that is not
	// standard base64 of exactly SCRAMNonceLen bytes, or a combined nonce
	// that does not extend the client's.
	ErrSCRAMNonce = errors.New("auth: invalid SCRAM nonce")

	// ErrSCRAMConversation means a proof arrived for no live conversation: its
	// combined nonce is unknown, expired, already used (conversations are
	// single use), evicted, or was issued to another user.
	ErrSCRAMConversation = errors.New("auth: no such SCRAM conversation (unknown, expired, already used, or another user's)")

	// ErrSCRAMIterations reports an iteration count outside
	// [MinSCRAMIterations, MaxSCRAMIterations] (or the client's own maximum).
	ErrSCRAMIterations = errors.New("auth: SCRAM iteration count out of range")

	// ErrSCRAMVerifier reports a malformed verifier or credential.
	ErrSCRAMVerifier = errors.New("auth: malformed SCRAM verifier")

	// ErrSCRAMPassword reports an empty password.
	ErrSCRAMPassword = errors.New("auth: password must not be empty")
)

// CheckUserName reports whether name is a valid user name: it matches
// ^[A-Za-z_][A-Za-z0-9_]{0,29}$. The error wraps ErrSCRAMUserName.
func CheckUserName(name string) error {
	if name == "" {
		return fmt.Errorf("%w: empty", ErrSCRAMUserName)
	}
	if len(name) > MaxUserNameLen {
		return fmt.Errorf("%w: %d characters, at most %d allowed", ErrSCRAMUserName, len(name), MaxUserNameLen)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c == '_', 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z':
		case '0' <= c && c <= '9':
			if i == 0 {
				return fmt.Errorf("%w: %q starts with a digit", ErrSCRAMUserName, name)
			}
		default:
			return fmt.Errorf("%w: %q: only letters, digits and '_' are allowed", ErrSCRAMUserName, name)
		}
	}
	return nil
}

// checkClientNonce enforces the seed's rule: standard base64 of exactly
// SCRAMNonceLen bytes.
func checkClientNonce(cnonce string) error {
	if len(cnonce) != base64.StdEncoding.EncodedLen(SCRAMNonceLen) {
		return fmt.Errorf("%w: client nonce must be standard base64 of %d bytes (%d characters), got %d characters",
			ErrSCRAMNonce, SCRAMNonceLen, base64.StdEncoding.EncodedLen(SCRAMNonceLen), len(cnonce))
	}
	if n, err := base64.StdEncoding.Strict().DecodeString(cnonce); err != nil || len(n) != SCRAMNonceLen {
		return fmt.Errorf("%w: client nonce is not standard base64 of %d bytes", ErrSCRAMNonce, SCRAMNonceLen)
	}
	return nil
}

// decodeB64 decodes canonical standard base64, so that every value has one
// text form.
func decodeB64(s string) ([]byte, error) { return base64.StdEncoding.Strict().DecodeString(s) }

func encodeB64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

// xorB64 returns the standard base64 of the bytes of text XOR pad. A text
// that is not base64 of len(pad) bytes comes back as it is, so that the SCRAM
// check refuses it exactly as it refuses any malformed proof or signature.
func xorB64(text string, pad []byte) string {
	b, err := decodeB64(text)
	if err != nil || len(b) != len(pad) {
		return text
	}
	for i := range b {
		b[i] ^= pad[i]
	}
	return encodeB64(b)
}

// scramChannelBinding returns the c= attribute: "biws" for no binding, else
// base64 of the GS2 header "p=conclave-transcript,," and the binding bytes.
// A non-nil empty binding is an error, so that a caller's empty hash never
// silently means "unbound".
func scramChannelBinding(binding []byte) (string, error) {
	if binding == nil {
		return "biws", nil
	}
	if len(binding) == 0 || len(binding) > MaxSCRAMChannelBinding {
		return "", fmt.Errorf("auth: SCRAM channel binding must be 1 to %d bytes, got %d (nil means unbound)",
			MaxSCRAMChannelBinding, len(binding))
	}
	gs2 := "p=" + SCRAMChannelBindingName + ",,"
	return encodeB64(append([]byte(gs2), binding...)), nil
}

// scramAuthMessage rebuilds RFC 5802's AuthMessage from the seed's values.
func scramAuthMessage(user, cnonce, combined, saltB64 string, iterations int, cbind string) string {
	var b strings.Builder
	b.Grow(48 + len(user) + len(cnonce) + 2*len(combined) + len(saltB64) + len(cbind))
	b.WriteString("n=")
	b.WriteString(user)
	b.WriteString(",r=")
	b.WriteString(cnonce)
	b.WriteString(",r=")
	b.WriteString(combined)
	b.WriteString(",s=")
	b.WriteString(saltB64)
	b.WriteString(",i=")
	b.WriteString(strconv.Itoa(iterations))
	b.WriteString(",c=")
	b.WriteString(cbind)
	b.WriteString(",r=")
	b.WriteString(combined)
	return b.String()
}

func hmacSHA256(key []byte, msg string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(msg))
	return m.Sum(nil)
}

// scramClientKeys derives ClientKey, StoredKey and ServerKey from a password:
// the PBKDF2 step, the only expensive one.
func scramClientKeys(password string, salt []byte, iterations int) (clientKey, storedKey, serverKey []byte, err error) {
	salted, err := pbkdf2.Key(sha256.New, password, salt, iterations, sha256.Size)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("auth: pbkdf2: %w", err)
	}
	clientKey = hmacSHA256(salted, "Client Key")
	sk := sha256.Sum256(clientKey)
	serverKey = hmacSHA256(salted, "Server Key")
	clear(salted)
	return clientKey, sk[:], serverKey, nil
}

// scramClientProof is ClientKey XOR HMAC(StoredKey, AuthMessage).
func scramClientProof(clientKey, storedKey []byte, authMessage string) []byte {
	proof := hmacSHA256(storedKey, authMessage)
	subtle.XORBytes(proof, proof, clientKey)
	return proof
}

// scramVerifyProof checks SHA256(proof XOR HMAC(StoredKey, AuthMessage)) ==
// StoredKey in constant time. proof must be sha256.Size bytes.
func scramVerifyProof(storedKey []byte, authMessage string, proof []byte) bool {
	clientKey := hmacSHA256(storedKey, authMessage)
	subtle.XORBytes(clientKey, clientKey, proof)
	h := sha256.Sum256(clientKey)
	return subtle.ConstantTimeCompare(h[:], storedKey) == 1
}

// scramServerSignature is HMAC(ServerKey, AuthMessage).
func scramServerSignature(serverKey []byte, authMessage string) []byte {
	return hmacSHA256(serverKey, authMessage)
}
