package transport

import (
	"container/list"
	"context"
	"errors"
	"net"
	"sync"
	"time"

	"github.com/seed0811993b/conclave/auth"
)

// Listener accepts connections and hands out authenticated Links. Handshakes
// run in goroutines of their own, each bounded by the auth handshake timeout,
// so a slow or silent peer never blocks the accept loop or other peers.
type Listener struct {
	inner net.Listener
	cfg   *Config
	ready chan *Link

	ctx    context.Context // cancelled by Close; bounds every handshake
	cancel context.CancelFunc
	wg     sync.WaitGroup // the accept loop and every handshake goroutine

	// mu guards pending, the unauthenticated connections (*auth.Conn),
	// oldest first.
	mu      sync.Mutex
	pending *list.List
}

// Listen announces on the local address and starts accepting.
func Listen(network, address string, cfg *Config) (*Listener, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	ln, err := net.Listen(network, address)
	if err != nil {
		return nil, err
	}
	return NewListener(ln, cfg)
}

// NewListener starts accepting on inner, which the Listener then owns.
func NewListener(inner net.Listener, cfg *Config) (*Listener, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	l := &Listener{
		inner:   inner,
		cfg:     cfg,
		ready:   make(chan *Link),
		ctx:     ctx,
		cancel:  cancel,
		pending: list.New(),
	}
	l.wg.Add(1)
	go l.acceptLoop()
	return l, nil
}

// Addr returns the listening address.
func (l *Listener) Addr() net.Addr { return l.inner.Addr() }

// Accept returns the next authenticated Link, waiting until one is ready,
// ctx ends or the Listener is closed (ErrClosed).
func (l *Listener) Accept(ctx context.Context) (*Link, error) {
	select {
	case lk := <-l.ready:
		return lk, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-l.ctx.Done():
		return nil, ErrClosed
	}
}

// Close stops accepting, aborts handshakes in progress and waits for every
// goroutine the Listener started. Links already accepted stay open.
func (l *Listener) Close() error {
	l.cancel()
	err := l.inner.Close()
	l.wg.Wait()
	return err
}

func (l *Listener) acceptLoop() {
	defer l.wg.Done()
	var delay time.Duration
	for {
		c, err := l.inner.Accept()
		if err != nil {
			if l.ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors and the like: back off, as net/http does.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			l.cfg.logger().Warn("transport: accept failed", "err", err, "retry_in", delay)
			select {
			case <-time.After(delay):
			case <-l.ctx.Done():
				return
			}
			continue
		}
		delay = 0
		l.admit(c)
	}
}

// admit starts a handshake, first dropping an unauthenticated connection
// when the pending set is full. While at least half the pending connections
// have not yet sent a whole handshake message, it drops the oldest of those:
// an attacker who floods silent connections only ever pushes out its own,
// while a legitimate peer speaks at once and then keeps its place through a
// slow step (a user login's client derives its password key between two
// messages). Otherwise it drops the oldest of all, so that connections which
// sent a hello (anyone can) and then wait cannot shelter behind the rule.
func (l *Listener) admit(raw net.Conn) {
	c := auth.Server(raw, l.cfg.Auth)
	l.mu.Lock()
	if l.pending.Len() >= l.cfg.maxPending() {
		victim := l.pending.Front()
		var oldestSilent *list.Element
		silent := 0
		for e := victim; e != nil; e = e.Next() {
			if !e.Value.(*auth.Conn).PeerSpoke() {
				if oldestSilent == nil {
					oldestSilent = e
				}
				silent++
			}
		}
		if 2*silent >= l.pending.Len() {
			victim = oldestSilent
		}
		dropped := l.pending.Remove(victim).(*auth.Conn).NetConn()
		_ = dropped.Close()
		l.cfg.logger().Debug("transport: dropped a pending handshake", "remote", dropped.RemoteAddr().String())
	}
	elem := l.pending.PushBack(c)
	l.mu.Unlock()

	l.wg.Add(1)
	go l.handshake(c, elem)
}

func (l *Listener) handshake(c *auth.Conn, elem *list.Element) {
	defer l.wg.Done()
	lk, err := NewLink(l.ctx, c, l.cfg)
	l.mu.Lock()
	l.pending.Remove(elem) // a no-op when admit already evicted it
	l.mu.Unlock()
	if err != nil {
		log := l.cfg.logger().Debug
		if errors.Is(err, auth.ErrAuthFailed) || errors.Is(err, auth.ErrLegacyDigest) {
			log = l.cfg.logger().Warn
		}
		log("transport: handshake failed", "remote", c.RemoteAddr().String(), "err", err)
		return
	}
	select {
	case l.ready <- lk:
	case <-l.ctx.Done():
		_ = lk.Close()
	}
}
