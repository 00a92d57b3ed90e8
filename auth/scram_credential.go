package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"strings"
)

// Roles a user may hold. What each allows is decided where requests are
// authorized; the store only refuses names outside this list.
const (
	// RoleAdmin may do everything.
	RoleAdmin = "admin"
	// RoleWorker may join the cluster, send and serve topics.
	RoleWorker = "worker"
	// RoleClient may send and make requests, but neither join the gossip nor
	// serve topics.
	RoleClient = "client"
	// RoleMonitor may read status only.
	RoleMonitor = "monitor"
)

// ErrUnknownRole reports a role name that is not one of the Role constants.
var ErrUnknownRole = errors.New("auth: unknown role")

var knownRoles = []string{RoleAdmin, RoleWorker, RoleClient, RoleMonitor}

// KnownRoles returns the role names a credential may hold.
func KnownRoles() []string { return slices.Clone(knownRoles) }

// CheckRoles reports an unknown or repeated role. Errors wrap ErrUnknownRole
// or ErrSCRAMVerifier.
func CheckRoles(roles []string) error {
	for i, r := range roles {
		if !slices.Contains(knownRoles, r) {
			return fmt.Errorf("%w %q (known roles: %s)", ErrUnknownRole, r, strings.Join(knownRoles, ", "))
		}
		if slices.Contains(roles[:i], r) {
			return fmt.Errorf("%w: role %q listed twice", ErrSCRAMVerifier, r)
		}
	}
	return nil
}

// ParseRoles parses a comma-separated role list such as "admin,worker", as
// the store file and the CLI's --roles flag write it. An empty string is no
// roles.
func ParseRoles(s string) ([]string, error) {
	if s == "" {
		return nil, nil
	}
	roles := strings.Split(s, ",")
	if err := CheckRoles(roles); err != nil {
		return nil, err
	}
	return roles, nil
}

// Credential is what a server stores for a user: a SCRAM-SHA-256 verifier
// (never the password) and the user's roles. StoredKey and ServerKey are
// secrets (with them one can impersonate the server, and with one overheard
// login the user), so a Credential's formatting methods never print them.
type Credential struct {
	// Iterations is the PBKDF2 iteration count.
	Iterations int
	// Salt is the PBKDF2 salt.
	Salt []byte
	// StoredKey is SHA256(ClientKey): it checks a client's proof.
	StoredKey []byte
	// ServerKey signs the server's answer.
	ServerKey []byte
	// Roles lists the user's roles, each one of the Role constants.
	Roles []string
	// Topics narrows the topics the user may send to and serve; empty
	// allows every topic its roles allow.
	Topics TopicRules
}

// NewCredential derives a credential from password with a fresh
// SCRAMSaltLen-byte salt read from r (crypto/rand.Reader when nil).
// iterations 0 means DefaultSCRAMIterations; fewer than MinSCRAMIterations or
// more than MaxSCRAMIterations is refused. The password is used as its UTF-8
// bytes, without SASLprep, as the seed's client does. Set Roles on the result.
func NewCredential(password string, iterations int, r io.Reader) (Credential, error) {
	if password == "" {
		return Credential{}, ErrSCRAMPassword
	}
	if iterations == 0 {
		iterations = DefaultSCRAMIterations
	}
	if err := checkIterations(iterations, MaxSCRAMIterations); err != nil {
		return Credential{}, err
	}
	if r == nil {
		r = rand.Reader
	}
	salt := make([]byte, SCRAMSaltLen)
	if _, err := io.ReadFull(r, salt); err != nil {
		return Credential{}, fmt.Errorf("auth: new credential: read salt: %w", err)
	}
	_, storedKey, serverKey, err := scramClientKeys(password, salt, iterations)
	if err != nil {
		return Credential{}, err
	}
	return Credential{Iterations: iterations, Salt: salt, StoredKey: storedKey, ServerKey: serverKey}, nil
}

func checkIterations(n, limit int) error {
	if n < MinSCRAMIterations || n > limit {
		return fmt.Errorf("%w: %d, want %d to %d", ErrSCRAMIterations, n, MinSCRAMIterations, limit)
	}
	return nil
}

// HasRole reports whether c lists role.
func (c Credential) HasRole(role string) bool { return slices.Contains(c.Roles, role) }

// check reports a credential a server cannot use.
func (c Credential) check() error {
	if err := checkIterations(c.Iterations, MaxSCRAMIterations); err != nil {
		return err
	}
	if len(c.Salt) == 0 || len(c.Salt) > maxSaltLen {
		return fmt.Errorf("%w: salt of %d bytes, want 1 to %d", ErrSCRAMVerifier, len(c.Salt), maxSaltLen)
	}
	if len(c.StoredKey) != sha256.Size || len(c.ServerKey) != sha256.Size {
		return fmt.Errorf("%w: StoredKey and ServerKey must be %d bytes", ErrSCRAMVerifier, sha256.Size)
	}
	if err := CheckRoles(c.Roles); err != nil {
		return err
	}
	return c.Topics.Check()
}

func (c Credential) clone() Credential {
	c.Salt = slices.Clone(c.Salt)
	c.StoredKey = slices.Clone(c.StoredKey)
	c.ServerKey = slices.Clone(c.ServerKey)
	c.Roles = slices.Clone(c.Roles)
	c.Topics = slices.Clone(c.Topics)
	return c
}

// String describes c without its keys.
func (c Credential) String() string {
	return fmt.Sprintf("%s credential (%d iterations, roles [%s], topics [%s], keys redacted)",
		SCRAMMechanism, c.Iterations, strings.Join(c.Roles, ","), c.Topics)
}

// GoString describes c without its keys.
func (c Credential) GoString() string { return "auth.Credential{" + c.String() + "}" }

// Format prints String for every verb, so that no format string can leak
// the keys.
func (c Credential) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, c.String()) }

// LogValue keeps the keys out of structured logs.
func (c Credential) LogValue() slog.Value {
	return slog.GroupValue(slog.Int("iterations", c.Iterations), slog.String("roles", strings.Join(c.Roles, ",")),
		slog.String("topics", c.Topics.String()))
}

// FormatVerifier returns c's verifier in PostgreSQL's text form,
// SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>, each binary
// field in standard base64. Roles are not part of it.
func FormatVerifier(c Credential) string {
	return SCRAMMechanism + "$" + strconv.Itoa(c.Iterations) + ":" + encodeB64(c.Salt) + "$" +
		encodeB64(c.StoredKey) + ":" + encodeB64(c.ServerKey)
}

// ParseVerifier parses a verifier in FormatVerifier's (and PostgreSQL's)
// form. The result has no roles. Errors wrap ErrSCRAMVerifier or
// ErrSCRAMIterations.
func ParseVerifier(s string) (Credential, error) {
	mech, rest, ok := strings.Cut(s, "$")
	if !ok || mech != SCRAMMechanism {
		return Credential{}, fmt.Errorf("%w: does not start with %q", ErrSCRAMVerifier, SCRAMMechanism+"$")
	}
	factors, keys, ok := strings.Cut(rest, "$")
	if !ok {
		return Credential{}, fmt.Errorf("%w: want %s$<iterations>:<salt>$<StoredKey>:<ServerKey>", ErrSCRAMVerifier, SCRAMMechanism)
	}
	iterText, saltText, ok1 := strings.Cut(factors, ":")
	storedText, serverText, ok2 := strings.Cut(keys, ":")
	if !ok1 || !ok2 {
		return Credential{}, fmt.Errorf("%w: want %s$<iterations>:<salt>$<StoredKey>:<ServerKey>", ErrSCRAMVerifier, SCRAMMechanism)
	}
	iter, err := parseDecimal(iterText)
	if err != nil {
		return Credential{}, fmt.Errorf("%w: iteration count %q is not a decimal number", ErrSCRAMVerifier, iterText)
	}
	var c Credential
	c.Iterations = iter
	for _, f := range []struct {
		name string
		text string
		dst  *[]byte
	}{{"salt", saltText, &c.Salt}, {"StoredKey", storedText, &c.StoredKey}, {"ServerKey", serverText, &c.ServerKey}} {
		b, err := decodeB64(f.text)
		if err != nil {
			return Credential{}, fmt.Errorf("%w: %s is not standard base64", ErrSCRAMVerifier, f.name)
		}
		*f.dst = b
	}
	if err := c.check(); err != nil {
		return Credential{}, err
	}
	return c, nil
}

// parseDecimal accepts only canonical decimal text: digits, no sign, no
// leading zero, at most 9 digits.
func parseDecimal(s string) (int, error) {
	if s == "" || len(s) > 9 || (s[0] == '0' && len(s) > 1) {
		return 0, errors.New("not canonical")
	}
	n := 0
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, errors.New("not a digit")
		}
		n = n*10 + int(s[i]-'0')
	}
	return n, nil
}

// CredentialLookup finds a user's credential. A *Store implements it;
// CredentialMap is a fixed one. Implementations must be safe for concurrent
// use, and callers must not modify what they return.
type CredentialLookup interface {
	LookupCredential(user string) (Credential, bool)
}

// CredentialMap is a fixed set of credentials by user name, for tests and
// programs that keep users in memory.
type CredentialMap map[string]Credential

// LookupCredential returns m[user].
func (m CredentialMap) LookupCredential(user string) (Credential, bool) {
	c, ok := m[user]
	return c, ok
}
