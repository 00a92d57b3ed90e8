package node

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/seed0811993b/conclave/auth"
)

// authorize refuses, inside the handshake (auth.Config.Authorize), a user
// login that may not take the member ID it presents (claim.go), and a gossip
// member that logged in as a user who may not be a member: its dial fails
// with auth.ErrNotAllowed, so it hears why instead of seeing its links
// close. Clients (not in the gossip) are held to their roles per message.
func (n *Node) authorize(st auth.ConnectionState) error {
	n.claimMu.Lock()
	defer n.claimMu.Unlock()
	err := n.loginErr(st)
	if err != nil {
		n.log.Warn("refusing a user login", "peer", st.PeerName, "user", st.PeerUser, "roles", st.PeerRoles, "why", err)
		return err
	}
	n.holdClaim(st) // until adopt: no other handshake may pass meanwhile
	return nil
}

// loginErr is authorize's verdict. Callers hold claimMu.
func (n *Node) loginErr(st auth.ConnectionState) error {
	if st.PeerUser == "" {
		return nil
	}
	if err := n.claimErr(st); err != nil {
		return err
	}
	n.mu.Lock()
	p := n.byID[st.PeerName]
	n.mu.Unlock()
	id := n.loggedIn(st)
	if p == nil || !p.inGossip.Load() || id.mayServe("") {
		return nil
	}
	return fmt.Errorf("%s may not be a cluster member", id)
}

// refuseAsMember ends the peer with member ID id when gossip reports it
// as a member but it logged in to us as a user who may not be one: its
// dial reached us before gossip did, so authorize took it for a client.
// It reports whether it did.
func (n *Node) refuseAsMember(id string) bool {
	n.mu.Lock()
	p := n.byID[id]
	n.mu.Unlock()
	if p == nil {
		return false
	}
	ident := p.ident.Load()
	if ident == nil || ident.mayServe("") {
		return false
	}
	p.inGossip.Store(true) // from now on authorize refuses its dials
	n.log.Warn("refusing a cluster member that logged in as a user who may not serve", "peer", id, "user", ident.user, "roles", ident.roles)
	n.peerDown(p, stateFailed, fmt.Errorf("%w: %s may not be a cluster member", ErrForbidden, ident), "it joined the gossip as a user who may not be a member")
	return true
}

// checkOwnLogin tries a member's user login against its own credential
// store before it joins, so that a wrong password or a user who may not be
// a member fails Start with a clear error instead of every link failing
// later. It also derives the login's keys once, for the links to come.
func checkOwnLogin(cfg Config) error {
	if cfg.Users == nil || cfg.User == "" || len(cfg.Connect) > 0 {
		return nil
	}
	login, err := cfg.Users.Authenticate(cfg.User, string(cfg.Password))
	if err != nil {
		return fmt.Errorf("node: Config.User %s cannot log in to this node's own credential store: %w", cfg.User, err)
	}
	if id := (&identity{user: login.User, roles: login.Roles, topics: login.Topics}); !id.mayServe("") {
		return fmt.Errorf("%w: Config.User: %s may not be a cluster member (that needs %s or %s); connect as a client (Config.Connect) instead",
			ErrForbidden, id, auth.RoleAdmin, auth.RoleWorker)
	}
	return nil
}

// awaitLoginMax bounds how long Start waits for a member to answer a
// user login (awaitLogin).
const awaitLoginMax = 10 * time.Second

// awaitLogin holds Start, for a member that logs in as a user, until one
// link to another member is ready, or every member it joined has refused
// its key, login or roles: a member the cluster will not talk to fails
// Start with the reason instead of sitting in the gossip without links.
func (n *Node) awaitLogin(ctx context.Context) error {
	expected := n.disco.others()
	// Links that neither come up nor get refused (a firewalled link port)
	// must not hold Start for ever when ctx has no deadline: after
	// awaitLoginMax the node starts, and logs that nobody answered yet.
	bound := time.NewTimer(awaitLoginMax)
	defer bound.Stop()
	for {
		n.mu.Lock()
		ch := n.changeCh
		peers := make([]*peer, 0, len(n.byID))
		for _, p := range n.byID {
			peers = append(peers, p)
		}
		n.mu.Unlock()
		var refused error
		open := 0
		for _, p := range peers {
			if p.readyLink() != nil {
				return nil
			}
			p.mu.Lock()
			st, err, refusal := p.state, p.stateErr, p.refusal
			p.mu.Unlock()
			switch {
			case refusal != nil:
				// Gossip may have revived it since; it still refuses us.
				refused = refusal
			case st == stateAlive:
				open++
			case errors.Is(err, auth.ErrNotAllowed) || errors.Is(err, auth.ErrAuthFailed):
				refused = err
			}
		}
		if open == 0 && len(peers) >= expected {
			if refused != nil {
				return fmt.Errorf("node: joined the gossip, but the members refuse our login as %s: %w", n.cfg.User, refused)
			}
			return nil // nobody left to log in to
		}
		select {
		case <-ch:
		case <-bound.C:
			n.log.Warn("no member has taken or refused our login yet; starting anyway", "user", n.cfg.User, "waited", awaitLoginMax)
			return nil
		case <-ctx.Done():
			return fmt.Errorf("node: joined the gossip, but no member took our login as %s: %w", n.cfg.User, ctx.Err())
		}
	}
}
