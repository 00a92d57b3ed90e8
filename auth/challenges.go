package auth

import (
	"container/list"
	"net"
	"sync"
	"time"
)

// Python's handshake lets a peer ask us to answer any challenge, and a Python
// client answers before it has verified the server. A peer that can make this
// process answer a challenge this process issued itself on another
// connection gets in without the key: reflection and relay. Remembering the
// challenges we have issued, and the connection each was issued on, closes
// that hole for every handshake in the process.
//
// The one challenge of ours a handshake may answer is one issued on the very
// same TCP connection, seen from its other end: a Go client and a Go listener
// in one process. No attacker can relay over that connection, since a TCP
// 4-tuple names one connection on the host.

const (
	// challengeTTL is how long an issued challenge is remembered when its
	// handshake never reports its end (conn.go gives handshakers no close
	// hook). A handshake allowed to run longer is remembered for as long as
	// it may run.
	challengeTTL = 2 * time.Minute
	// maxOutstandingChallenges bounds the registry's memory: about 180 bytes
	// an entry, 17 MiB when full. When full, the oldest entry goes first: its
	// handshake has most likely been abandoned.
	maxOutstandingChallenges = 100_000
)

// issuedChallenges is the process-wide registry used by every Python-mode
// handshake.
var issuedChallenges = newChallengeRegistry(maxOutstandingChallenges, time.Now)

// challengeRegistry is a set of outstanding challenges with expiry and a size
// bound. It is safe for concurrent use.
type challengeRegistry struct {
	limit int
	now   func() time.Time

	// mu guards the fields below.
	mu sync.Mutex
	// byKey maps a challenge to its live registrations: with an injected
	// Config.Rand two handshakes may issue the same bytes, and one ending
	// must not unprotect the other.
	byKey map[string][]*registration
	// order holds *registration values, oldest first.
	order *list.List
}

// registration is one issued challenge; release it when its handshake ends.
type registration struct {
	key     string
	conn    endpoints // where it was issued; zero when not a TCP connection
	expires time.Time
	elem    *list.Element // nil once released, expired or evicted
}

func newChallengeRegistry(limit int, now func() time.Time) *challengeRegistry {
	return &challengeRegistry{limit: limit, now: now, byKey: make(map[string][]*registration), order: list.New()}
}

// register records challenge, issued on conn, as outstanding for at least ttl.
func (r *challengeRegistry) register(challenge []byte, ttl time.Duration, conn endpoints) *registration {
	now := r.now()
	reg := &registration{key: string(challenge), conn: conn, expires: now.Add(ttl)}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.expireLocked(now)
	for r.order.Len() >= r.limit {
		r.removeLocked(r.order.Front().Value.(*registration))
	}
	reg.elem = r.order.PushBack(reg)
	r.byKey[reg.key] = append(r.byKey[reg.key], reg)
	return reg
}

// release forgets reg. It is safe to call more than once and with nil.
func (r *challengeRegistry) release(reg *registration) {
	if reg == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if reg.elem != nil {
		r.removeLocked(reg)
	}
}

// contains reports whether challenge is outstanding.
func (r *challengeRegistry) contains(challenge []byte) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.expireLocked(r.now())
	return len(r.byKey[string(challenge)]) > 0
}

// reflected reports whether answering challenge, received on conn, would
// answer a challenge of ours for someone other than its addressee: true
// unless every live registration of it was issued on conn itself, seen from
// the other end.
func (r *challengeRegistry) reflected(challenge []byte, conn endpoints) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.expireLocked(r.now())
	for _, reg := range r.byKey[string(challenge)] {
		if !conn.mirrors(reg.conn) {
			return true
		}
	}
	return false
}

// len reports the number of outstanding registrations.
func (r *challengeRegistry) len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.order.Len()
}

// expireLocked drops expired registrations from the front. Registrations are
// ordered by issue time, not expiry, so an entry with a long TTL can shield
// expired ones behind it; the size bound still holds.
func (r *challengeRegistry) expireLocked(now time.Time) {
	for e := r.order.Front(); e != nil; e = r.order.Front() {
		reg := e.Value.(*registration)
		if now.Before(reg.expires) {
			return
		}
		r.removeLocked(reg)
	}
}

func (r *challengeRegistry) removeLocked(reg *registration) {
	r.order.Remove(reg.elem)
	reg.elem = nil
	regs := r.byKey[reg.key]
	for i, x := range regs {
		if x == reg {
			regs = append(regs[:i], regs[i+1:]...)
			break
		}
	}
	if len(regs) == 0 {
		delete(r.byKey, reg.key)
	} else {
		r.byKey[reg.key] = regs
	}
}

// endpoints names one end of a TCP connection. The zero value (any other
// kind of connection, whose addresses do not name it uniquely) mirrors
// nothing.
type endpoints struct{ local, remote string }

func connEndpoints(local, remote net.Addr) endpoints {
	l, lok := local.(*net.TCPAddr)
	r, rok := remote.(*net.TCPAddr)
	if !lok || !rok || l.Port == 0 || r.Port == 0 {
		return endpoints{}
	}
	return endpoints{l.String(), r.String()}
}

// mirrors reports whether e and o are the two ends of one TCP connection.
func (e endpoints) mirrors(o endpoints) bool {
	return e != endpoints{} && e.local == o.remote && e.remote == o.local
}
