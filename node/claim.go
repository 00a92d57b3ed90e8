package node

import (
	"fmt"
	"time"

	"github.com/seed0811993b/conclave/auth"
)

// A link's dialer names the peer it is (its member ID, name#boot), and the
// node keys the session by that ID: whoever holds an ID receives what is
// sent to it, and a new boot id under a known name ends the old peer as a
// restart. A key holder is trusted with any name (docs/security.md). A user
// login is not:
//
//   - an ID stays with the user that first logged in under it, for as long
//     as the node remembers the peer (its tombstone included), so no user
//     can take over another's session, live or failed;
//   - a login that could not be a member (no cluster key, or a user who may
//     not serve) never takes the ID or name of a peer that proved the key
//     only, nor this node's own name, nor the name of another user's
//     peer, live or remembered;
//   - a login that could be a member takes a name from one that could not:
//     members win names over clients;
//   - gossip comes only from key holders, so a gossip member whose ID a
//     keyless login holds replaces that peer (replaceImpostor), and a
//     login refused as a member (refuseAsMember) binds nothing;
//   - one user has at most Config.MaxClientsPerUser live keyless peers.
//
// The check runs inside the handshake (authorize), where a refusal reaches
// the dialer as auth.ErrNotAllowed, and again when the link is adopted. A
// login that passed the first is held as a claim until then, so that two
// handshakes in flight cannot both pass; a claim binds its name as a live
// peer of its user would.

// claimTTL bounds how long a claim made inside a handshake waits to be
// adopted: a handshake that fails after its check leaves its claim behind.
const claimTTL = 3 * time.Second

// claim is a login that passed claimErr in its handshake and whose link has
// not been adopted yet.
type claim struct {
	id, user string
	keyless  bool // no cluster key: a client
	member   bool // could be a member: the key and a serving role
	at       time.Time
}

// holder is whoever holds an ID or a name: the user it logged in as ("" for
// a key holder that did not log in) and whether it could be a member.
type holder struct {
	user   string
	member bool
}

// holderOf describes the peer p as a holder.
func holderOf(p *peer) holder {
	id := p.ident.Load()
	if id == nil || (p.inGossip.Load() && !id.memberLike()) {
		// A member by the key alone, bound to the user it announced when
		// we dialled it, if any; or gossip reports a member whose login
		// could not be one (refuseAsMember): that login binds nothing.
		h := holder{member: true}
		if u := p.announced.Load(); u != nil {
			h.user = *u
		}
		return h
	}
	return holder{user: id.user, member: id.memberLike()}
}

// memberLike reports whether the login could make its peer a member: it
// proved the cluster key, and its user may serve.
func (id *identity) memberLike() bool { return !id.keyless && id.mayServe("") }

// claimErr says why the user login st may not take the member ID it
// presents, or returns nil. Callers hold claimMu.
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
	login := n.loggedIn(st)
	user, memberLike := st.PeerUser, login.memberLike()
	takes := func(h holder, sameID bool) error {
		switch {
		case h.user == user:
			return nil // its own session, or a restart of it
		case !sameID && !h.member && memberLike:
			return nil // a member takes a client's name
		case h.user != "":
			return fmt.Errorf("name %s is in use by another user", name)
		case !memberLike:
			return fmt.Errorf("name %s belongs to a cluster member", name)
		}
		return nil
	}
	now := time.Now()
	if c, ok := n.claims[name]; ok && now.Sub(c.at) < claimTTL {
		if err := takes(holder{c.user, c.member}, c.id == st.PeerName); err != nil {
			return err
		}
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	same := n.byID[st.PeerName]
	if same != nil { // live or a tombstone: an ID stays with its owner
		if err := takes(holderOf(same), true); err != nil {
			return err
		}
	}
	if p := n.byName[name]; p != nil && p != same {
		// A live holder keeps its name; a remembered one keeps it from
		// other users' clients, so that they cannot squat it while it is
		// away.
		if h := holderOf(p); p.up.Load() || (h.user != "" && !memberLike) {
			if err := takes(h, false); err != nil {
				return err
			}
		}
	}
	if !login.keyless || (same != nil && same.up.Load()) {
		return nil // a member, or a client reconnecting
	}
	clients := 0 // other than a live one under this name, which a restart ends
	for _, p := range n.byID {
		if id := p.ident.Load(); p.up.Load() && p.name != name && id != nil && id.keyless && id.user == user {
			clients++
		}
	}
	for cname, c := range n.claims {
		if cname != name && c.keyless && c.user == user && now.Sub(c.at) < claimTTL {
			clients++
		}
	}
	if clients >= n.cfg.MaxClientsPerUser {
		return fmt.Errorf("user %s already has %d clients here (Config.MaxClientsPerUser)", user, clients)
	}
	return nil
}

// holdClaim records a login that passed its check in the handshake, and
// forgets claims whose handshakes never came to adopt. Callers hold
// claimMu.
func (n *Node) holdClaim(st auth.ConnectionState) {
	if st.PeerUser == "" {
		return
	}
	now := time.Now()
	for name, c := range n.claims {
		if now.Sub(c.at) >= claimTTL {
			delete(n.claims, name)
		}
	}
	if name, _, ok := splitID(st.PeerName); ok {
		login := n.loggedIn(st)
		n.claims[name] = claim{id: st.PeerName, user: st.PeerUser, keyless: login.keyless, member: login.memberLike(), at: now}
	}
}

// dropClaim forgets the claim of st's login, once its link is adopted or
// refused. Callers hold claimMu.
func (n *Node) dropClaim(st auth.ConnectionState) {
	if name, _, ok := splitID(st.PeerName); ok && n.claims[name].id == st.PeerName {
		delete(n.claims, name)
	}
}

// replaceImpostor ends the peer with member ID id, which gossip has just
// reported, when a login without the cluster key holds it: gossip comes only
// from key holders, so that login copied a member's ID. The member gets a
// fresh peer. Callers hold claimMu.
func (n *Node) replaceImpostor(id string) {
	n.mu.Lock()
	p := n.byID[id]
	var ident *identity
	if p != nil {
		ident = p.ident.Load()
	}
	if ident == nil || !ident.keyless {
		n.mu.Unlock()
		return
	}
	n.forgetLocked(p)
	n.mu.Unlock()
	n.log.Warn("a login without the cluster key held a gossip member's ID: ending it", "peer", id, "user", ident.user)
	n.peerDown(p, stateFailed, fmt.Errorf("%w: %s presented the ID of a cluster member", ErrForbidden, ident), "it presented a member's ID without the cluster key")
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
