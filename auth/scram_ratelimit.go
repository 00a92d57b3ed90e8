package auth

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"
)

// Failed SCRAM logins are limited per user name and per remote address, each
// by a token bucket of failures: Burst failures in a row are allowed, then
// one more per Interval. While a bucket is empty, new conversations and
// proofs for that name (or from that address) are refused with
// ErrSCRAMRateLimited before any check, so a refused attempt costs the
// attacker a round trip and tells nothing.
//
// A bucket refills as time passes, so nobody is locked out forever: an
// attacker who keeps guessing a real user's password holds that user to one
// attempt per UserInterval (the attacker's and the user's together), and the
// user is back to a full Burst UserBurst*UserInterval after the attacks stop.
// Successful logins are never refused for a full or partly full bucket and
// consume nothing, so many processes sharing a service account can log in at
// once. Every name is limited alike, known or not, so the limiter is no
// oracle for which names exist.
//
// Memory is bounded: each table holds at most MaxEntries keys. A key whose
// bucket has refilled is forgotten; when a table is full the least restricted
// entries (the ones that would refill soonest) are dropped first, so flooding
// the table with fresh names or addresses frees the entries that matter least
// rather than the oldest (which an attacker could otherwise flush on purpose).

// SCRAMRateLimit configures the failed-login limits of a SCRAMServer. Zero
// fields take the documented defaults.
type SCRAMRateLimit struct {
	// Disabled turns rate limiting off.
	Disabled bool

	// UserBurst is how many failures a user name may have in a row before
	// it is slowed down. Default 10.
	UserBurst int
	// UserInterval is how often a slowed user name earns one more attempt.
	// Default 10 s.
	UserInterval time.Duration

	// AddrBurst is how many failures a remote address may have in a row.
	// Default 30.
	AddrBurst int
	// AddrInterval is how often a slowed address earns one more attempt.
	// Default 2 s.
	AddrInterval time.Duration

	// MaxEntries bounds each table (users, addresses). Default 10 000, about
	// 1 MiB each when full.
	MaxEntries int
}

const (
	defaultUserBurst     = 10
	defaultUserInterval  = 10 * time.Second
	defaultAddrBurst     = 30
	defaultAddrInterval  = 2 * time.Second
	defaultLimitEntries  = 10_000
	limitEvictDivisor    = 8 // a full table frees 1/8 of itself at a time
	rateLimitKindUser    = "user"
	rateLimitKindAddress = "address"
)

// SCRAMRemoteKey returns the key under which failed logins from addr are
// counted: its IP address for IPv4, its /64 prefix for IPv6 (one host
// usually holds a whole /64), and "" (no per-address limit) for an address
// without an IP, such as a Unix socket.
func SCRAMRemoteKey(addr net.Addr) string {
	var ap netip.Addr
	switch a := addr.(type) {
	case *net.TCPAddr:
		ap, _ = netip.AddrFromSlice(a.IP)
	case *net.UDPAddr:
		ap, _ = netip.AddrFromSlice(a.IP)
	case nil:
		return ""
	default:
		host, _, err := net.SplitHostPort(addr.String())
		if err != nil {
			host = addr.String()
		}
		ap, _ = netip.ParseAddr(host)
	}
	if !ap.IsValid() {
		return ""
	}
	ap = ap.Unmap()
	if ap.Is4() {
		return ap.String()
	}
	p, _ := ap.WithZone("").Prefix(64)
	return p.String()
}

// scramLimiter is the two tables. A nil *scramLimiter allows everything.
type scramLimiter struct {
	now   func() time.Time
	mu    sync.Mutex // guards the tables
	users limitTable
	addrs limitTable
}

// limitTable is a token bucket per key, kept as GCRA's theoretical arrival
// time: the bucket is full at tat and below; each failure pushes tat one
// interval later; an attempt is allowed while tat - now <= (burst-1)*interval.
type limitTable struct {
	kind     string
	burst    time.Duration // burst * interval
	interval time.Duration
	max      int
	tat      map[string]time.Time
}

func newSCRAMLimiter(o SCRAMRateLimit, now func() time.Time) *scramLimiter {
	if o.Disabled {
		return nil
	}
	def := func(v, d int) int {
		if v > 0 {
			return v
		}
		return d
	}
	defD := func(v, d time.Duration) time.Duration {
		if v > 0 {
			return v
		}
		return d
	}
	entries := def(o.MaxEntries, defaultLimitEntries)
	table := func(kind string, burst int, interval time.Duration) limitTable {
		return limitTable{kind: kind, burst: time.Duration(burst) * interval, interval: interval, max: entries,
			tat: make(map[string]time.Time)}
	}
	return &scramLimiter{
		now:   now,
		users: table(rateLimitKindUser, def(o.UserBurst, defaultUserBurst), defD(o.UserInterval, defaultUserInterval)),
		addrs: table(rateLimitKindAddress, def(o.AddrBurst, defaultAddrBurst), defD(o.AddrInterval, defaultAddrInterval)),
	}
}

// allow returns an error wrapping ErrSCRAMRateLimited when user or remote
// has no attempt left. It changes nothing.
func (l *scramLimiter) allow(user, remote string) error {
	if l == nil {
		return nil
	}
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if wait := l.users.wait(user, now); wait > 0 {
		return fmt.Errorf("%w: user %q has failed too often; retry in %v", ErrSCRAMRateLimited, user, wait.Round(time.Millisecond))
	}
	if remote != "" {
		if wait := l.addrs.wait(remote, now); wait > 0 {
			return fmt.Errorf("%w: %s has failed too often; retry in %v", ErrSCRAMRateLimited, remote, wait.Round(time.Millisecond))
		}
	}
	return nil
}

// fail records a failed attempt for user and remote. Concurrent failures
// that all passed allow may overdraw a bucket by a few, never by more than
// one Burst: the debt is capped so that the next attempt is at most one
// interval away.
func (l *scramLimiter) fail(user, remote string) {
	if l == nil {
		return
	}
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if user != "" {
		l.users.fail(user, now)
	}
	if remote != "" {
		l.addrs.fail(remote, now)
	}
}

// wait returns how long until key may try again; 0 means now.
func (t *limitTable) wait(key string, now time.Time) time.Duration {
	tat, ok := t.tat[key]
	if !ok {
		return 0
	}
	debt := tat.Sub(now)
	if debt <= 0 {
		delete(t.tat, key)
		return 0
	}
	if w := debt - (t.burst - t.interval); w > 0 {
		return w
	}
	return 0
}

func (t *limitTable) fail(key string, now time.Time) {
	tat, ok := t.tat[key]
	if !ok {
		if len(t.tat) >= t.max {
			t.evict(now)
		}
		tat = now
	}
	tat = later(tat, now).Add(t.interval)
	if limit := now.Add(t.burst); tat.After(limit) {
		tat = limit
	}
	t.tat[key] = tat
}

// evict forgets every refilled key and, if that frees too little, the least
// restricted ones (earliest tat), 1/limitEvictDivisor of the table at once
// so that the sort is paid rarely.
func (t *limitTable) evict(now time.Time) {
	for k, tat := range t.tat {
		if !tat.After(now) {
			delete(t.tat, k)
		}
	}
	want := t.max - max(1, t.max/limitEvictDivisor)
	if len(t.tat) <= want {
		return
	}
	type entry struct {
		key string
		tat time.Time
	}
	all := make([]entry, 0, len(t.tat))
	for k, tat := range t.tat {
		all = append(all, entry{k, tat})
	}
	slices.SortFunc(all, func(a, b entry) int { return a.tat.Compare(b.tat) })
	for _, e := range all[:len(all)-want] {
		delete(t.tat, e.key)
	}
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
