package auth

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"time"
	"unicode/utf8"

	"golang.org/x/sys/cpu"
)

// Mode selects the handshake a Conn runs.
type Mode uint8

const (
	// ModeNative is conclave/1: mutual, transcript-bound HMAC proofs over a
	// hybrid X25519 + ML-KEM-768 key exchange, then sealed records. The default.
	ModeNative Mode = iota
	// ModePython speaks Python's multiprocessing.connection authkey handshake
	// byte for byte and leaves the traffic after it in plaintext. See
	// docs/security.md for what it cannot protect.
	ModePython
)

// String returns the mode's name.
func (m Mode) String() string {
	switch m {
	case ModeNative:
		return "conclave/1"
	case ModePython:
		return "python-mp"
	}
	return fmt.Sprintf("Mode(%d)", uint8(m))
}

// CipherSuite names the AEAD that seals records after a native handshake. The
// values are the wire codes.
type CipherSuite uint8

const (
	// AES256GCM is AES-256 in Galois/Counter Mode (the default where the CPU
	// has AES instructions).
	AES256GCM CipherSuite = 1
	// ChaCha20Poly1305 is ChaCha20-Poly1305 (RFC 8439), the default elsewhere.
	ChaCha20Poly1305 CipherSuite = 2
)

// String returns the cipher suite's name.
func (c CipherSuite) String() string {
	switch c {
	case AES256GCM:
		return "AES-256-GCM"
	case ChaCha20Poly1305:
		return "ChaCha20-Poly1305"
	}
	return fmt.Sprintf("CipherSuite(%d)", uint8(c))
}

const (
	// DefaultMaxFrameSize is the largest frame a Conn accepts unless
	// Config.MaxFrameSize says otherwise: 16 MiB.
	DefaultMaxFrameSize = 16 << 20
	// DefaultHandshakeTimeout bounds a handshake unless Config.HandshakeTimeout
	// or the context says otherwise.
	DefaultHandshakeTimeout = 10 * time.Second
	// MaxNameLen is the longest local name the native hello carries.
	MaxNameLen = 255
)

// Config configures a handshake. The zero value is not usable: a Key, or
// a user login (User and Password on a client, Users and RequireUser on a
// server), is required. Every other field documents its default. A Config
// may be shared by many connections and must not be modified after first
// use.
type Config struct {
	// Key is the shared cluster key, at least MinKeyLen bytes. It never
	// appears in logs, errors or fmt output.
	Key Key

	// User and Password make a client log in as a user with SCRAM-SHA-256
	// inside the native handshake (docs/protocol.md §2.4). With a Key too,
	// the client proves both. The password never appears in logs, errors
	// or fmt output. Native mode only.
	User     string
	Password Password

	// Users verifies user logins on a server; required when Require asks
	// for users. Its store may change while the server runs.
	Users *SCRAMServer

	// Require says what a server demands of its clients: the cluster key
	// (RequireKey, the default), a user login (RequireUser), or both
	// (RequireKeyAndUser). A client offering anything else is refused,
	// except that a RequireUser server holding the Key also takes a client
	// that proves both.
	Require Require

	// Authorize, when set on a server, is called once a client has proved
	// what Require asks (its ConnectionState names it, and its user and
	// roles after a login): in conclave/1 before the server proves
	// anything, in ModePython at the end of the handshake. An error refuses
	// the connection, and its text stays on this side: the client's
	// handshake fails with ErrNotAllowed (a ModePython client without a
	// login, whose protocol has no way to say so, sees the connection
	// close). It runs on the handshake's goroutine and must not block for
	// long.
	Authorize func(ConnectionState) error

	// Mode selects the handshake. Default: ModeNative.
	Mode Mode

	// Name is the local process's name, sent to the peer in the native hello
	// and bound into both proofs. At most MaxNameLen bytes of UTF-8.
	// Default: empty.
	Name string

	// Ciphers lists acceptable cipher suites in order of preference. Default:
	// AES256GCM then ChaCha20Poly1305 on CPUs with AES instructions, the
	// reverse elsewhere.
	Ciphers []CipherSuite

	// MaxFrameSize is the largest frame this side accepts; a native handshake
	// announces it to the peer. Default: DefaultMaxFrameSize.
	MaxFrameSize int

	// HandshakeTimeout bounds the whole handshake, whatever the context says.
	// Default: DefaultHandshakeTimeout.
	HandshakeTimeout time.Duration

	// PythonLegacyMD5 lets ModePython accept a peer that answers with raw
	// HMAC-MD5, as Python 3.11 and older do. Default: false (refused with
	// ErrLegacyDigest).
	PythonLegacyMD5 bool

	// Rand is the source of challenges and ephemeral keys. Default:
	// crypto/rand.Reader. Tests inject fixed bytes to pin transcripts.
	Rand io.Reader

	// Logger receives handshake failures at debug level. Default: discard.
	Logger *slog.Logger
}

// Clone returns a copy of c. The Key bytes and Ciphers slice are shared.
func (c *Config) Clone() *Config {
	if c == nil {
		return nil
	}
	cc := *c
	return &cc
}

// check reports a configuration that cannot work, before any I/O.
func (c *Config) check() error {
	if c == nil {
		return fmt.Errorf("%w: nil Config", ErrBadKey)
	}
	switch c.Mode {
	case ModeNative, ModePython:
	default:
		return fmt.Errorf("auth: unknown mode %d", c.Mode)
	}
	if c.User != "" || c.Require != RequireKey {
		if c.Mode == ModePython && (c.Require == RequireUser || (c.User != "" && len(c.Key) == 0)) {
			return errors.New("auth: Python mode always needs the cluster key; a user login comes on top of it (RequireKeyAndUser)")
		}
		if c.Require > RequireKeyAndUser {
			return fmt.Errorf("auth: unknown Require %d", c.Require)
		}
		if c.Require != RequireKey && c.Users == nil {
			return errors.New("auth: Config.Require asks for user logins but Config.Users is nil")
		}
		if c.User != "" {
			if err := CheckUserName(c.User); err != nil {
				return err
			}
			if c.Password == "" {
				return fmt.Errorf("%w: Config.User is set without a Password", ErrSCRAMPassword)
			}
		}
	}
	// A key is needed unless every mechanism this Config can run is a
	// user login: a server requiring only users, or a client with a user
	// and no key.
	if len(c.Key) > 0 || (c.Require != RequireUser && c.User == "") {
		if err := c.Key.check(); err != nil {
			return err
		}
	}
	if len(c.Name) > MaxNameLen || !utf8.ValidString(c.Name) {
		return fmt.Errorf("auth: Config.Name must be valid UTF-8 of at most %d bytes", MaxNameLen)
	}
	for _, s := range c.Ciphers {
		if s != AES256GCM && s != ChaCha20Poly1305 {
			return fmt.Errorf("auth: unknown cipher suite %d", s)
		}
	}
	if c.MaxFrameSize != 0 && (c.MaxFrameSize < minFrameCap || int64(c.MaxFrameSize) > math.MaxUint32) {
		// The native handshake announces it as a 32-bit count, and a peer
		// refuses less than minFrameCap.
		return fmt.Errorf("auth: MaxFrameSize %d is outside %d to %d", c.MaxFrameSize, minFrameCap, uint32(math.MaxUint32))
	}
	return nil
}

func (c *Config) rand() io.Reader {
	if c.Rand != nil {
		return c.Rand
	}
	return rand.Reader
}

func (c *Config) maxFrameSize() int {
	if c.MaxFrameSize > 0 {
		return c.MaxFrameSize
	}
	return DefaultMaxFrameSize
}

func (c *Config) handshakeTimeout() time.Duration {
	if c.HandshakeTimeout > 0 {
		return c.HandshakeTimeout
	}
	return DefaultHandshakeTimeout
}

func (c *Config) ciphers() []CipherSuite {
	if len(c.Ciphers) > 0 {
		return c.Ciphers
	}
	return defaultCiphers
}

func (c *Config) logger() *slog.Logger {
	if c.Logger != nil {
		return c.Logger
	}
	return discardLogger
}

var discardLogger = slog.New(slog.DiscardHandler)

// defaultCiphers prefers AES-GCM only where the CPU accelerates it: software
// AES is slower than ChaCha20 and not constant time.
var defaultCiphers = func() []CipherSuite {
	if (cpu.X86.HasAES && cpu.X86.HasPCLMULQDQ) || (cpu.ARM64.HasAES && cpu.ARM64.HasPMULL) || cpu.S390X.HasAESGCM {
		return []CipherSuite{AES256GCM, ChaCha20Poly1305}
	}
	return []CipherSuite{ChaCha20Poly1305, AES256GCM}
}()

// Require is what a server demands of its clients.
type Require uint8

const (
	// RequireKey: the cluster key (mechanism 01). The default.
	RequireKey Require = iota
	// RequireUser: a user login with SCRAM-SHA-256, no key (mechanism 02).
	RequireUser
	// RequireKeyAndUser: the cluster key and a user login (mechanism 03).
	RequireKeyAndUser
)

// Password is a user's password. Like Key it prints as [redacted] in fmt
// and slog output, so a Config can be logged.
type Password string

// redactedPassword is how a Password prints.
const redactedPassword = "auth.Password(redacted)"

// String returns "auth.Password(redacted)".
func (Password) String() string { return redactedPassword }

// GoString returns "auth.Password(redacted)".
func (Password) GoString() string { return redactedPassword }

// Format writes "auth.Password(redacted)" whatever the verb.
func (Password) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, redactedPassword) }

// LogValue keeps the password out of slog output.
func (Password) LogValue() slog.Value { return slog.StringValue(redactedPassword) }

// MarshalText returns "auth.Password(redacted)", so that a Password inside a
// value that is encoded whole (slog's JSON handler, encoding/json, msgpack)
// stays out of the output.
func (Password) MarshalText() ([]byte, error) { return []byte(redactedPassword), nil }
