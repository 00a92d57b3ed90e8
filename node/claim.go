package node

import (
	"fmt"

	"github.com/seed0811993b/conclave/auth"
)

// A link's dialer names the peer it is (its member ID, name#boot), and the
// node keys the session by that ID: whoever holds an ID receives what is
// sent to it, and a new boot id under a known name ends the old peer as a
// restart. A key holder is trusted with any name (docs/security.md). A user
// login is not: it may take only an ID and a name that are free or already
// its own user's, so that no user can read another's replies or push a
// member out of the cluster. A login that could not be a member (no cluster
// key, or a user who may not serve) never takes the name of a peer that
// proved the key only, and one user has at most Config.MaxClientsPerUser
// peers without the key at once.

// claimErr says why the user login st may not take the member ID it
// presents, or returns nil. Callers hold claimMu, so that the answer holds
// until the peer is created and bound to its user (adopt).
func (n *Node) claimErr(st auth.ConnectionState) error {
	if st.PeerUser == "" {
		return nil
	}
	name, _, ok := splitID(st.PeerName)
	if !ok {
		return nil // refused as a bad ID anyway
	}
	if name == n.cfg.Name {
		return fmt.Errorf("name %s is this node's own", name)
	}
	// Only a key holder that may serve could be a member, and only a
	// member may take a member's place.
	memberLike := st.Mechanism != auth.MechanismUser && n.loggedIn(st).mayServe("")
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, p := range []*peer{n.byID[st.PeerName], n.byName[name]} {
		if p == nil || !p.up.Load() {
			continue
		}
		owner := p.owner()
		switch {
		case owner == st.PeerUser:
			// its own session, or a restart of it
		case owner != "":
			return fmt.Errorf("name %s is in use by another user", name)
		case !memberLike:
			return fmt.Errorf("name %s belongs to a cluster member", name)
		}
	}
	if st.Mechanism != auth.MechanismUser || n.byID[st.PeerName] != nil {
		return nil
	}
	clients := 0
	for _, p := range n.byID {
		if p.up.Load() && !p.inGossip.Load() && p.owner() == st.PeerUser {
			clients++
		}
	}
	if clients >= n.cfg.MaxClientsPerUser {
		return fmt.Errorf("user %s already has %d clients here (Config.MaxClientsPerUser)", st.PeerUser, clients)
	}
	return nil
}

// owner is the user the peer logged in as, for good: its first login binds
// it (claimErr refuses any other). Empty: it proved the cluster key only,
// or has not dialled us.
func (p *peer) owner() string {
	if id := p.ident.Load(); id != nil {
		return id.user
	}
	return ""
}
