package node

import (
	"time"

	"github.com/seed0811993b/conclave/auth"
)

// tombstoneTTL is how long a peer that failed or left is remembered, so
// that the same process seen again resumes its stream without duplicates.
const tombstoneTTL = 5 * time.Minute

// heartbeat pings idle links, drops links that went silent (a partition or
// a hung process: TCP alone may not notice for minutes), forgets old
// tombstones and applies credential store changes to users' sessions.
func (n *Node) heartbeat() {
	t := time.NewTicker(n.cfg.HeartbeatInterval)
	defer t.Stop()
	var usersChecked time.Time
	for {
		select {
		case <-t.C:
		case <-n.done:
			return
		}
		now := time.Now()
		n.mu.Lock()
		peers := make([]*peer, 0, len(n.byID))
		for _, p := range n.byID {
			p.mu.Lock()
			expired := p.state != stateAlive && now.Sub(p.gone) > tombstoneTTL
			p.mu.Unlock()
			if expired {
				n.forgetLocked(p)
				continue
			}
			peers = append(peers, p)
		}
		n.mu.Unlock()
		if n.cfg.Users != nil && now.Sub(usersChecked) >= auth.StoreCheckInterval {
			usersChecked = now
			n.recheckUsers(peers)
		}
		for _, p := range peers {
			p.mu.Lock()
			l := p.link
			p.mu.Unlock()
			if l == nil {
				continue
			}
			if s := l.sentN.Load(); s == l.hbSent {
				l.needPin.Store(true)
				signal(l.kick)
				p.dropSpares()
			} else {
				l.hbSent = s
			}
			if r := l.recvd.Load(); r != l.hbRecv || p.stalled.Load() > 0 {
				// New frames, or a reader held up by our own backpressure.
				l.hbRecv = r
				l.hbHeard.Store(now.UnixNano())
			} else if quiet := now.Sub(time.Unix(0, l.hbHeard.Load())); quiet >= n.cfg.HeartbeatTimeout {
				n.log.Info("link silent, dropping it", "peer", p.id, "silent_for", quiet.Round(time.Millisecond))
				l.close()
			}
		}
	}
}
