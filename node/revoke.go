package node

import (
	"bytes"
	"slices"
)

// recheckUsers applies changes in the credential store to the peers
// logged in as users, so that an operator's `conclave user roles|topics`
// binds open sessions and `conclave user del|passwd` ends them, within a
// store check interval or so of the change. It runs on the heartbeat.
func (n *Node) recheckUsers(peers []*peer) {
	for _, p := range peers {
		old := p.ident.Load()
		if old == nil || old.revoked {
			continue // a member, or a user already cut off until it logs in again
		}
		cred, ok := n.cfg.Users.LookupCredential(old.user)
		if !ok || !bytes.Equal(cred.StoredKey, old.storedKey) {
			cut := &identity{user: old.user, revoked: true, keyless: old.keyless}
			if !p.ident.CompareAndSwap(old, cut) {
				continue // a new login won the race
			}
			n.log.Warn("user removed from the credential store or given a new password: closing its link",
				"peer", p.id, "user", old.user)
			n.pruneInterests(p, cut)
			p.dropLink()
			continue
		}
		if slices.Equal(cred.Roles, old.roles) && slices.Equal(cred.Topics, old.topics) {
			continue
		}
		next := &identity{user: old.user, roles: slices.Clone(cred.Roles), topics: slices.Clone(cred.Topics), storedKey: old.storedKey, keyless: old.keyless}
		if !p.ident.CompareAndSwap(old, next) {
			continue
		}
		n.log.Info("user's roles or topic rules changed in the credential store: applying them",
			"peer", p.id, "user", next.user, "was", old.String(), "now", next.String())
		p.sendControl(ctlWhoami, next.whoami())
		n.pruneInterests(p, next)
		if p.inGossip.Load() && !next.mayServe("") {
			n.log.Warn("a cluster member's user may no longer serve: closing its link", "peer", p.id, "user", next.user)
			p.dropLink()
		}
	}
}

// pruneInterests forgets the handlers and subscriptions of p that id may
// not have, and logs each.
func (n *Node) pruneInterests(p *peer, id *identity) {
	for _, op := range n.routes.prune(p, id.mayServe) {
		n.log.Warn("denied", "peer", p.id, "topic", op.Topic, "why", id.String()+" may no longer serve or subscribe to it")
	}
	n.changed()
}

// prune removes p's interests whose topic keep refuses, and returns them.
func (r *routeTable) prune(p *peer, keep func(topic string) bool) []interestOp {
	r.mu.Lock()
	defer r.mu.Unlock()
	var gone []interestOp
	for sid, op := range p.interests {
		if !keep(op.Topic) {
			r.removeLocked(p, op)
			delete(p.interests, sid)
			gone = append(gone, op)
		}
	}
	return gone
}

// dropLink closes p's current link, if any; the peer stays, and redials
// or waits to be dialled as after any lost connection.
func (p *peer) dropLink() {
	p.mu.Lock()
	l := p.link
	p.mu.Unlock()
	if l != nil {
		l.close()
	}
}
