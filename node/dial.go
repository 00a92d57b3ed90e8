package node

import (
	"context"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"syscall"
	"time"

	"github.com/seed0811993b/conclave/auth"
	"github.com/seed0811993b/conclave/codec"
	"github.com/seed0811993b/conclave/transport"
)

// Redial backoff: jittered exponential between these bounds.
const (
	dialBackoffMin = 10 * time.Millisecond
	dialBackoffMax = 2 * time.Second
	dialTimeout    = 5 * time.Second
	// youngLink is how long a link dialled by the lower member ID is kept
	// against a link dialled by the higher one: simultaneous dials then end
	// on the same link at both ends, while a peer that lost its link for
	// real (and dials again) replaces an older one.
	youngLink = 2 * time.Second
)

// codecLeave is the unsequenced leave notice Close sends.
var codecLeave = codec.Envelope{Kind: codec.KindControl, Topic: []byte(ctlLeave)}

// dial starts dialling p after delay unless a link exists, a dial is
// already running, or p has no known address.
func (n *Node) dial(p *peer, delay time.Duration) {
	if n.closing() { // before p.mu: the lock order is n.mu, then p.mu
		return
	}
	p.mu.Lock()
	if p.dialing || p.link != nil || p.state != stateAlive || !p.addr.IsValid() {
		p.mu.Unlock()
		return
	}
	p.dialing = true
	p.mu.Unlock()
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		n.dialLoop(p, delay)
	}()
}

// dialLoop dials p until it has a link, retrying with jittered exponential
// backoff while p is alive. A refused connection means nothing listens on
// the peer's link port any more: its process is gone, and saying so now
// beats waiting seconds for gossip to notice. Refused credentials end the
// peer too.
func (n *Node) dialLoop(p *peer, delay time.Duration) {
	backoff := dialBackoffMin
	for {
		if delay > 0 {
			t := time.NewTimer(delay)
			select {
			case <-t.C:
			case <-n.done:
				t.Stop()
			}
		}
		p.mu.Lock()
		if p.link != nil || p.state != stateAlive || n.ctx.Err() != nil {
			p.dialing = false
			p.mu.Unlock()
			return
		}
		addr := p.addr
		p.mu.Unlock()

		ctx, cancel := context.WithTimeout(n.ctx, dialTimeout)
		tl, err := n.dialer.Dial(ctx, "tcp", addr.String())
		cancel()
		switch {
		case err == nil:
			if got := tl.ConnectionState().PeerName; got != p.id {
				tl.Close()
				reason := "its link address answers as " + got
				cause := ErrPeerFailed
				if name, _, ok := splitID(got); ok && name == p.name {
					cause = ErrPeerRestarted
				}
				n.peerDown(p, stateFailed, cause, reason)
				p.mu.Lock()
				p.dialing = false
				p.mu.Unlock()
				return
			}
			p.attach(tl, n.id)
			delay = 0
			continue
		case errors.Is(err, syscall.ECONNREFUSED):
			n.peerDown(p, stateFailed, ErrPeerFailed, "connection refused: its process is gone")
			p.mu.Lock()
			p.dialing = false
			p.mu.Unlock()
			return
		case errors.Is(err, auth.ErrNotAllowed) || (errors.Is(err, auth.ErrAuthFailed) && !errors.Is(err, auth.ErrSCRAMRateLimited)):
			// The peer no longer takes our key or login (our user was
			// removed, or given a new password), or does not let our user
			// be a member: retrying cannot help, and what waits on the
			// peer should hear it now.
			n.log.Warn("link refused: the peer does not accept our credentials", "peer", p.id, "addr", addr.String(), "err", err)
			cause := ErrPeerFailed
			if errors.Is(err, auth.ErrNotAllowed) {
				cause = ErrForbidden
			}
			cause = fmt.Errorf("%w: %w", cause, err)
			p.mu.Lock()
			p.refusal = cause
			p.mu.Unlock()
			n.peerDown(p, stateFailed, cause, "it refused our credentials")
			p.mu.Lock()
			p.dialing = false
			p.mu.Unlock()
			return
		case errors.Is(err, auth.ErrSCRAMRateLimited):
			// Too many failed logins as our user: the peer will take
			// one again later, so keep trying, but say so (awaitLogin).
			n.log.Warn("link refused for now: too many failed logins as our user", "peer", p.id, "addr", addr.String())
			p.mu.Lock()
			p.refusal = err
			p.mu.Unlock()
			n.changed()
		default:
			n.log.Debug("dial failed", "peer", p.id, "addr", addr.String(), "err", err)
		}
		delay = backoff/2 + time.Duration(mrand.Int64N(int64(backoff)))
		backoff = min(2*backoff, dialBackoffMax)
	}
}

// attach makes tl the peer's link, unless a simultaneous dial from the
// other side already produced the link both ends will keep.
func (p *peer) attach(tl *transport.Link, dialer string) {
	p.maxFrame.Store(int64(tl.ConnectionState().PeerMaxFrameSize))
	l := newPlink(p, tl, dialer)
	p.mu.Lock()
	if p.state != stateAlive {
		p.mu.Unlock()
		tl.Close()
		return
	}
	old := p.link
	if old != nil && old.dialer != dialer && old.dialer < dialer && time.Since(old.created) < youngLink {
		p.mu.Unlock()
		tl.Close()
		return
	}
	p.link, p.ready, p.refusal = l, false, nil
	p.mu.Unlock()
	if old != nil {
		old.close()
	}
	l.start()
}
