package auth

import "errors"

// Sentinel errors. Handshake failures wrap one of these with detail, so
// callers test them with errors.Is. On the wire a peer learns only a one-byte
// failure code, never the detail.
var (
	// ErrAuthFailed means the peer's proof did not verify: it holds a different
	// key (or password), or it is not who it claims to be.
	ErrAuthFailed = errors.New("auth: authentication failed")

	// ErrProtocol means the peer sent bytes that break the protocol: a malformed
	// or oversized handshake message, a tampered, replayed or reordered record.
	ErrProtocol = errors.New("auth: protocol violation")

	// ErrHandshakeTimeout means the handshake did not finish within
	// Config.HandshakeTimeout.
	ErrHandshakeTimeout = errors.New("auth: handshake timed out")

	// ErrUnsupportedVersion means the peers share no protocol version.
	ErrUnsupportedVersion = errors.New("auth: unsupported protocol version")

	// ErrUnsupportedCipher means the peers share no cipher suite.
	ErrUnsupportedCipher = errors.New("auth: no cipher suite in common")

	// ErrLegacyDigest means a Python peer used HMAC-MD5 (Python 3.11 or older)
	// while Config.PythonLegacyMD5 is off.
	ErrLegacyDigest = errors.New("auth: python peer uses legacy HMAC-MD5 (Python <= 3.11); set Config.PythonLegacyMD5 to allow it")

	// ErrReflected means a peer asked this process to answer a challenge that
	// this process issued itself: a reflection attack.
	ErrReflected = errors.New("auth: peer reflected our own challenge")

	// ErrNotAllowed means the peer authenticated this side and refused the
	// connection anyway, by its policy (Config.Authorize): a user whose
	// roles do not allow what it tried, for instance. Retrying will not help.
	ErrNotAllowed = errors.New("auth: authenticated, but not allowed by the peer")

	// ErrBadKey reports an unusable key: missing, too short, or a key file
	// readable by other users.
	ErrBadKey = errors.New("auth: bad key")
)
