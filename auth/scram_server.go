package auth

import (
	"container/list"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"
)

const (
	// DefaultSCRAMTimeout is how long a server keeps a conversation between
	// its two steps unless SCRAMServerOptions.ConversationTimeout says
	// otherwise.
	DefaultSCRAMTimeout = 30 * time.Second
	// DefaultSCRAMMaxPending bounds the conversations a server keeps between
	// their two steps unless SCRAMServerOptions.MaxPending says otherwise:
	// about 2.5 MiB when full.
	DefaultSCRAMMaxPending = 10_000
	// minSCRAMSecret is the shortest SCRAMServerOptions.Secret accepted.
	minSCRAMSecret = 16
)

// SCRAMServerOptions configures a SCRAMServer. The zero value is usable;
// every field documents its default.
type SCRAMServerOptions struct {
	// Secret keys the fake credentials given for unknown users: their salt,
	// and keys nobody can produce a proof for. Answers for an unknown name
	// are then stable and look like a real user's, so names cannot be probed.
	// Servers that answer for the same users (replicas, restarts) should
	// share one secret, at least 16 bytes, for instance derived from the
	// cluster key with HKDF; otherwise a prober comparing two servers' (or
	// two lifetimes') salts for a name tells real users from fake ones.
	// Default: 32 random bytes per server.
	Secret []byte

	// UnknownUserIterations is the iteration count announced for unknown
	// users. Set it to what most real credentials use. Default:
	// DefaultSCRAMIterations.
	UnknownUserIterations int

	// ConversationTimeout is how long a conversation may wait between Start
	// and Finish. Default: DefaultSCRAMTimeout.
	ConversationTimeout time.Duration

	// MaxPending bounds the conversations waiting for Finish. When full, the
	// oldest is dropped (see SCRAMServer). Default: DefaultSCRAMMaxPending.
	MaxPending int

	// RateLimit limits failed logins per user and per remote address.
	RateLimit SCRAMRateLimit

	// Rand is the source of server nonces and of the default Secret.
	// Default: crypto/rand.Reader. Tests inject fixed bytes.
	Rand io.Reader

	// Now is the clock for expiry and rate limits. Default: time.Now.
	Now func() time.Time
}

// SCRAMServer is the server side of SCRAM-SHA-256 logins, with the seed's
// two calls: ClientFirst (or Start) answers a user name and client nonce with
// the user's salt, iteration count and a combined nonce; ClientFinal (or
// Finish) checks the client's proof and returns the server signature, which
// proves to the client that this server holds the user's verifier.
//
// Between the two calls the server keeps a conversation, keyed by the
// combined nonce. It is single use (Finish consumes it, whatever the
// outcome), expires after ConversationTimeout, and is accepted only for the
// user that started it. At most MaxPending conversations wait at once; when
// full, the oldest is dropped to make room. Refusing new ones instead would
// let anyone block every login by starting MaxPending conversations every
// ConversationTimeout (a few hundred a second), whereas evicting the oldest
// means an attacker must start MaxPending conversations within one honest
// client's round trip to make it fail, and even then only that attempt fails.
//
// Unknown users are answered with a fake credential derived from Secret, and
// a proof for one fails exactly as a wrong password does: same error
// (ErrSCRAMAuth), same text, the same HMAC and hash work on both paths. The
// server never runs PBKDF2; a login costs it a few microseconds.
//
// A SCRAMServer is safe for concurrent use and starts no goroutines.
type SCRAMServer struct {
	lookup     CredentialLookup
	secret     []byte
	fakeIter   int
	timeout    time.Duration
	maxPending int
	rand       io.Reader
	now        func() time.Time
	limiter    *scramLimiter // nil when disabled

	// mu guards pending and order.
	mu      sync.Mutex
	pending map[string]*scramConv // by combined nonce
	order   *list.List            // *scramConv, oldest (soonest to expire) first
}

// scramConv is a conversation between Start and Finish.
type scramConv struct {
	user     string
	cnonce   string
	combined string
	saltB64  string
	iter     int
	cred     Credential // the real one, or the fake one when !known
	known    bool
	expires  time.Time
	elem     *list.Element
}

// NewSCRAMServer returns a server that finds credentials with store (a
// *Store, a CredentialMap, or any CredentialLookup).
func NewSCRAMServer(store CredentialLookup, opts SCRAMServerOptions) (*SCRAMServer, error) {
	if store == nil {
		return nil, errors.New("auth: NewSCRAMServer: nil credential store")
	}
	s := &SCRAMServer{
		lookup:     store,
		fakeIter:   opts.UnknownUserIterations,
		timeout:    opts.ConversationTimeout,
		maxPending: opts.MaxPending,
		rand:       opts.Rand,
		now:        opts.Now,
		pending:    make(map[string]*scramConv),
		order:      list.New(),
	}
	if s.fakeIter == 0 {
		s.fakeIter = DefaultSCRAMIterations
	}
	if err := checkIterations(s.fakeIter, MaxSCRAMIterations); err != nil {
		return nil, fmt.Errorf("auth: SCRAMServerOptions.UnknownUserIterations: %w", err)
	}
	if s.timeout <= 0 {
		s.timeout = DefaultSCRAMTimeout
	}
	if s.maxPending <= 0 {
		s.maxPending = DefaultSCRAMMaxPending
	}
	if s.rand == nil {
		s.rand = rand.Reader
	}
	if s.now == nil {
		s.now = time.Now
	}
	switch {
	case opts.Secret == nil:
		s.secret = make([]byte, 32)
		if _, err := io.ReadFull(s.rand, s.secret); err != nil {
			return nil, fmt.Errorf("auth: NewSCRAMServer: random secret: %w", err)
		}
	case len(opts.Secret) < minSCRAMSecret:
		return nil, fmt.Errorf("auth: SCRAMServerOptions.Secret is %d bytes, need at least %d", len(opts.Secret), minSCRAMSecret)
	default:
		s.secret = slices.Clone(opts.Secret)
	}
	s.limiter = newSCRAMLimiter(opts.RateLimit, s.now)
	return s, nil
}

// SCRAMStart is a client's first message, as the server sees it.
type SCRAMStart struct {
	// User is the user name.
	User string
	// ClientNonce is standard base64 of SCRAMNonceLen random bytes.
	ClientNonce string
	// Remote is where the login comes from, as SCRAMRemoteKey(conn.RemoteAddr())
	// returns it; failed logins are limited per Remote. Empty: no
	// per-address limit.
	Remote string
}

// SCRAMChallenge is the server's answer to SCRAMStart. Salt is standard
// base64, CombinedNonce is the client nonce followed by the server's.
type SCRAMChallenge struct {
	Salt          string
	Iterations    int
	CombinedNonce string
}

// SCRAMProof is a client's final message, as the server sees it.
type SCRAMProof struct {
	// User is the user name; it must be the one the conversation started with.
	User string
	// CombinedNonce names the conversation.
	CombinedNonce string
	// ClientProof is standard base64 of the 32-byte proof.
	ClientProof string
	// ChannelBinding is what the login is bound to: nil for an unbound login
	// (c=biws, the seed's form), else 1 to MaxSCRAMChannelBinding bytes both
	// sides know, for instance the hash of their handshake transcript so far.
	// The client's proof covers it (see SCRAMClient.FinalBound), so a proof
	// made for one channel fails on any other: a relayed or spliced login is
	// refused with ErrSCRAMAuth. A non-nil empty slice is an error.
	ChannelBinding []byte
	// Remote is as in SCRAMStart.
	Remote string
}

// SCRAMLogin is a successful login: the user, its roles and topic rules
// (from the store, as they are when the login finishes) and the server
// signature to send back.
type SCRAMLogin struct {
	User            string
	Roles           []string
	Topics          TopicRules
	ServerSignature string
}

// ClientFirst is the seed's scramClientFirst: Start without a remote
// address. All values are standard base64.
func (s *SCRAMServer) ClientFirst(user, cnonce string) (salt string, iterations int, combinedNonce string, err error) {
	ch, err := s.Start(SCRAMStart{User: user, ClientNonce: cnonce})
	return ch.Salt, ch.Iterations, ch.CombinedNonce, err
}

// ClientFinal is the seed's scramClientFinal: Finish of an unbound login
// without a remote address. It returns the server signature in standard
// base64.
func (s *SCRAMServer) ClientFinal(user, combinedNonce, clientProof string) (serverSignature string, err error) {
	l, err := s.Finish(SCRAMProof{User: user, CombinedNonce: combinedNonce, ClientProof: clientProof})
	return l.ServerSignature, err
}

// Start begins a conversation. Errors wrap ErrSCRAMUserName, ErrSCRAMNonce or
// ErrSCRAMRateLimited; an unknown user is not an error here (see
// SCRAMServer).
func (s *SCRAMServer) Start(m SCRAMStart) (SCRAMChallenge, error) {
	if err := CheckUserName(m.User); err != nil {
		return SCRAMChallenge{}, err
	}
	if err := checkClientNonce(m.ClientNonce); err != nil {
		return SCRAMChallenge{}, err
	}
	if err := s.limiter.allow(m.User, m.Remote); err != nil {
		return SCRAMChallenge{}, err
	}
	cred, known := s.credential(m.User)
	snonce := make([]byte, scramServerNonceLen)
	if _, err := io.ReadFull(s.rand, snonce); err != nil {
		return SCRAMChallenge{}, fmt.Errorf("auth: scram server nonce: %w", err)
	}
	c := &scramConv{
		user:     m.User,
		cnonce:   m.ClientNonce,
		combined: m.ClientNonce + encodeB64(snonce),
		saltB64:  encodeB64(cred.Salt),
		iter:     cred.Iterations,
		cred:     cred,
		known:    known,
	}
	now := s.now()
	c.expires = now.Add(s.timeout)
	s.mu.Lock()
	s.expireLocked(now)
	for s.order.Len() >= s.maxPending {
		s.removeLocked(s.order.Front().Value.(*scramConv))
	}
	if old := s.pending[c.combined]; old != nil {
		s.removeLocked(old) // only with an injected Rand repeating itself
	}
	c.elem = s.order.PushBack(c)
	s.pending[c.combined] = c
	s.mu.Unlock()
	return SCRAMChallenge{Salt: c.saltB64, Iterations: c.iter, CombinedNonce: c.combined}, nil
}

// Finish checks a proof and ends its conversation, whatever the outcome.
// Errors wrap ErrSCRAMAuth (unknown user or wrong password, or a proof made
// for another channel binding), ErrSCRAMConversation, ErrSCRAMRateLimited,
// ErrSCRAMUserName or ErrProtocol (a proof that is not base64 of 32 bytes).
// Every failure but a rate-limit refusal counts against the user and the
// remote address.
func (s *SCRAMServer) Finish(m SCRAMProof) (SCRAMLogin, error) {
	s.mu.Lock()
	c := s.pending[m.CombinedNonce]
	if c != nil {
		s.removeLocked(c)
	}
	s.mu.Unlock()
	if err := CheckUserName(m.User); err != nil {
		s.limiter.fail("", m.Remote)
		return SCRAMLogin{}, err
	}
	if err := s.limiter.allow(m.User, m.Remote); err != nil {
		return SCRAMLogin{}, err
	}
	fail := func(err error) (SCRAMLogin, error) {
		s.limiter.fail(m.User, m.Remote)
		return SCRAMLogin{}, err
	}
	switch {
	case c == nil:
		return fail(ErrSCRAMConversation)
	case !s.now().Before(c.expires):
		return fail(fmt.Errorf("%w: it expired after %v", ErrSCRAMConversation, s.timeout))
	case c.user != m.User:
		return fail(ErrSCRAMConversation)
	}
	proof, err := decodeB64(m.ClientProof)
	if err != nil || len(proof) != sha256.Size {
		return fail(fmt.Errorf("%w: SCRAM client proof is not standard base64 of %d bytes", ErrProtocol, sha256.Size))
	}
	cbind, err := scramChannelBinding(m.ChannelBinding)
	if err != nil {
		return fail(err)
	}
	am := scramAuthMessage(c.user, c.cnonce, c.combined, c.saltB64, c.iter, cbind)
	// The same work on every path: check the proof, sign, look the user up
	// again (its credential may have changed or gone since Start).
	ok := scramVerifyProof(c.cred.StoredKey, am, proof)
	sig := scramServerSignature(c.cred.ServerKey, am)
	cur, found := s.lookup.LookupCredential(c.user)
	same := found && subtle.ConstantTimeCompare(cur.StoredKey, c.cred.StoredKey) == 1
	if !ok || !c.known || !same {
		return fail(ErrSCRAMAuth)
	}
	return SCRAMLogin{User: c.user, Roles: slices.Clone(cur.Roles), Topics: slices.Clone(cur.Topics), ServerSignature: encodeB64(sig)}, nil
}

// Abandon drops the conversation named by combinedNonce, if any, without a
// verdict: for a handshake whose connection failed between Start and Finish.
// It does not count as a failed login.
func (s *SCRAMServer) Abandon(combinedNonce string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c := s.pending[combinedNonce]; c != nil {
		s.removeLocked(c)
	}
}

// Authenticate runs a whole login as user with password against s in
// this process, both sides of it, the server's signature checked, and
// returns the login or the error a remote client would get. It counts
// against the rate limits as any login does, and runs PBKDF2 (once per
// password and salt: SCRAMClient keeps the keys).
func (s *SCRAMServer) Authenticate(user, password string) (SCRAMLogin, error) {
	client, err := NewSCRAMClient(user, password, SCRAMClientOptions{})
	if err != nil {
		return SCRAMLogin{}, err
	}
	_, cnonce := client.First()
	ch, err := s.Start(SCRAMStart{User: user, ClientNonce: cnonce})
	if err != nil {
		return SCRAMLogin{}, err
	}
	proof, err := client.Final(ch.Salt, ch.Iterations, ch.CombinedNonce)
	if err != nil {
		s.Abandon(ch.CombinedNonce)
		return SCRAMLogin{}, err
	}
	login, err := s.Finish(SCRAMProof{User: user, CombinedNonce: ch.CombinedNonce, ClientProof: proof})
	if err != nil {
		return SCRAMLogin{}, err
	}
	if err := client.VerifyServer(login.ServerSignature); err != nil {
		return SCRAMLogin{}, err
	}
	return login, nil
}

// LookupCredential returns user's credential as the server's store has it
// now, so that a program holding a live session can see the user's roles
// change or the user go. Callers must not modify it.
func (s *SCRAMServer) LookupCredential(user string) (Credential, bool) {
	c, ok := s.lookup.LookupCredential(user)
	if !ok || c.check() != nil {
		return Credential{}, false
	}
	return c, true
}

// credential returns user's credential, or the fake one for an unknown user
// (or one whose stored credential is unusable). The fake one is derived on
// every call so that both cases cost the same.
func (s *SCRAMServer) credential(user string) (Credential, bool) {
	fake := s.fakeCredential(user)
	c, ok := s.lookup.LookupCredential(user)
	if ok && c.check() == nil {
		return c, true
	}
	return fake, false
}

// fakeCredential derives a stable salt and keys for user from the secret.
// No password yields these keys: StoredKey is not the hash of anything known.
func (s *SCRAMServer) fakeCredential(user string) Credential {
	m := hmac.New(sha256.New, s.secret)
	derive := func(label string) []byte {
		m.Reset()
		m.Write([]byte("conclave scram mock "))
		m.Write([]byte(label))
		m.Write([]byte{0})
		m.Write([]byte(user))
		return m.Sum(nil)
	}
	return Credential{
		Iterations: s.fakeIter,
		Salt:       derive("salt")[:SCRAMSaltLen],
		StoredKey:  derive("stored key"),
		ServerKey:  derive("server key"),
	}
}

func (s *SCRAMServer) expireLocked(now time.Time) {
	for e := s.order.Front(); e != nil; e = s.order.Front() {
		c := e.Value.(*scramConv)
		if now.Before(c.expires) {
			return
		}
		s.removeLocked(c)
	}
}

func (s *SCRAMServer) removeLocked(c *scramConv) {
	if c.elem == nil {
		return
	}
	s.order.Remove(c.elem)
	c.elem = nil
	delete(s.pending, c.combined)
}

// pendingLen returns the number of conversations waiting for Finish.
func (s *SCRAMServer) pendingLen() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.order.Len()
}

// String names the server without its credentials' keys or its secret.
func (s *SCRAMServer) String() string { return "auth.SCRAMServer(keys redacted)" }

// GoString is String.
func (s *SCRAMServer) GoString() string { return s.String() }

// Format prints String for every verb, so that no format string can leak
// a credential's keys or the server's secret.
func (s *SCRAMServer) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, s.String()) }
