package node

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/seed0811993b/conclave/auth"
	"github.com/seed0811993b/conclave/codec"
)

// StatusTopic is served by every node to every peer, monitors included:
// a Request to it returns the node's Status.
const StatusTopic = "$status"

// Status is a node's answer on StatusTopic.
type Status struct {
	Name    string      `msgpack:"name"`
	ID      string      `msgpack:"id"`
	Members []Member    `msgpack:"members"`
	Peers   []PeerStats `msgpack:"peers"`
}

// identity is what a peer proved with a user login: its user, roles and
// topic rules. A peer without one proved only the cluster key and is a full
// member.
type identity struct {
	user   string
	roles  []string
	topics auth.TopicRules
	// storedKey is the user's credential when it logged in: a new password
	// ends its sessions. revoked: the user left the store, or its
	// password changed, since; it may do nothing but ask for status.
	storedKey []byte
	revoked   bool
}

// loggedIn is the identity a link's user login proved.
func (n *Node) loggedIn(st auth.ConnectionState) *identity {
	id := &identity{user: st.PeerUser, roles: st.PeerRoles, topics: st.PeerTopics}
	if n.cfg.Users != nil {
		if c, ok := n.cfg.Users.LookupCredential(st.PeerUser); ok {
			id.storedKey = c.StoredKey
		}
	}
	return id
}

// authorize refuses, inside the handshake, a gossip member that logged in
// as a user who may not be a member (auth.Config.Authorize): its dial fails
// with auth.ErrNotAllowed, so it hears why instead of seeing its links
// close. Clients (not in the gossip) are held to their roles per message.
func (n *Node) authorize(st auth.ConnectionState) error {
	if st.PeerUser == "" {
		return nil
	}
	n.mu.Lock()
	p := n.byID[st.PeerName]
	n.mu.Unlock()
	id := &identity{user: st.PeerUser, roles: st.PeerRoles, topics: st.PeerTopics}
	if p == nil || !p.inGossip.Load() || id.mayServe("") {
		return nil
	}
	n.log.Warn("refusing a cluster member that logged in as a user who may not serve", "peer", st.PeerName, "user", st.PeerUser, "roles", st.PeerRoles)
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

// same reports whether id and o allow the same things to the same user.
func (id *identity) same(o *identity) bool {
	return id != nil && o != nil && id.user == o.user && id.revoked == o.revoked &&
		slices.Equal(id.roles, o.roles) && slices.Equal(id.topics, o.topics)
}

// whoami is the control body that tells the peer who it is here.
func (id *identity) whoami() []byte {
	return marshalControl(&whoami{User: id.user, Roles: id.roles, Topics: id.topics})
}

func (id *identity) has(role string) bool { return slices.Contains(id.roles, role) }

// String names the identity for errors and logs.
func (id *identity) String() string {
	if id.revoked {
		return fmt.Sprintf("user %s (removed from the credential store or given a new password)", id.user)
	}
	if len(id.topics) == 0 {
		return fmt.Sprintf("user %s (roles %s)", id.user, strings.Join(id.roles, ","))
	}
	return fmt.Sprintf("user %s (roles %s, topics %s)", id.user, strings.Join(id.roles, ","), id.topics)
}

// maySend reports whether the peer may send one-way messages and requests
// to topic here: admin, worker and client may reach the topics their rules
// allow, a monitor only StatusTopic, which every identity may ask.
func (id *identity) maySend(topic string) bool {
	if id == nil || topic == StatusTopic {
		return true
	}
	return (id.has(auth.RoleAdmin) || id.has(auth.RoleWorker) || id.has(auth.RoleClient)) && id.topics.Allows(topic)
}

// mayServe reports whether the peer may register a handler or subscription
// on topic here, which makes it a recipient of the cluster's messages:
// admin and worker only, on the topics their rules allow. With topic ""
// it asks about the roles alone.
func (id *identity) mayServe(topic string) bool {
	if id == nil {
		return true
	}
	return (id.has(auth.RoleAdmin) || id.has(auth.RoleWorker)) && (topic == "" || id.topics.Allows(topic))
}

// forbidden answers a message the peer's roles do not allow, and logs it.
func (n *Node) forbidden(p *peer, id *identity, reqID uint64, topic, what string) {
	msg := fmt.Sprintf("%s may not %s", id, what)
	n.log.Warn("denied", "peer", p.id, "topic", topic, "why", msg)
	n.sendError(p, reqID, topic, codeForbidden, msg)
}

// status builds this node's Status.
func (n *Node) status() Status {
	return Status{Name: n.cfg.Name, ID: n.id, Members: n.Members(), Peers: n.Stats().Peers}
}

// serveStatus answers a request on StatusTopic.
func (n *Node) serveStatus(p *peer, id uint64) {
	body, flags, err := appendPayload(nil, n.status())
	if err != nil {
		n.sendError(p, id, StatusTopic, codeHandler, "encoding the status: "+err.Error())
		return
	}
	if err := p.send(n.ctx, &codec.Envelope{Kind: codec.KindReply, Flags: flags, ID: id, Body: body}, false); err != nil {
		n.log.Debug("status reply not sent", "peer", p.id, "err", err)
	}
}

// checkServe refuses a registration on topic on a client node whose user
// may not serve it, as the members it connects to have said (see
// ctlWhoami): the caller hears it at once instead of the members dropping
// it later.
func (n *Node) checkServe(topic string) error {
	id := n.selfIdentity.Load()
	if id.mayServe(topic) {
		return nil
	}
	n.log.Info("denied here, as the members would", "topic", topic, "why", id.String()+" may not serve or subscribe to it")
	if !id.mayServe("") {
		return fmt.Errorf("%w: %s may not serve or subscribe (that needs %s or %s)", ErrForbidden, id, auth.RoleAdmin, auth.RoleWorker)
	}
	return fmt.Errorf("%w: %s may not serve or subscribe to topic %s", ErrForbidden, id, topic)
}

// checkTopic validates a topic for sending and, on a client node, refuses
// one its user may not send to, so that the caller hears it at once
// rather than a member refusing each message.
func (n *Node) checkTopic(topic string) error {
	if len(topic) == 0 || len(topic) > codec.MaxTopicLen {
		return fmt.Errorf("node: topic must be 1 to %d bytes", codec.MaxTopicLen)
	}
	if id := n.selfIdentity.Load(); !id.maySend(topic) {
		n.log.Info("denied here, as the members would", "topic", topic, "why", id.String()+" may not send to it")
		return fmt.Errorf("%w: %s may not send to topic %s", ErrForbidden, id, topic)
	}
	return nil
}

// Status returns the status of the node named name (this one included):
// its members and its peers' counters, as it sees them. Any peer may ask,
// whatever its roles.
func (n *Node) Status(ctx context.Context, name string) (Status, error) {
	if name == n.cfg.Name {
		return n.status(), nil
	}
	var st Status
	err := n.Request(ctx, name, StatusTopic, nil, &st)
	return st, err
}

// checkOwnLogin tries a member's user login against its own credential
// store before it joins, so that a wrong password or a user who may not be
// a member fails Start with a clear error instead of every link failing
// later. It also derives the login's keys once, for the links to come.
func checkOwnLogin(cfg Config) error {
	if cfg.Users == nil || cfg.User == "" || len(cfg.Connect) > 0 {
		return nil
	}
	fail := func(err error) error {
		return fmt.Errorf("node: Config.User %s cannot log in to this node's own credential store: %w", cfg.User, err)
	}
	client, err := auth.NewSCRAMClient(cfg.User, string(cfg.Password), auth.SCRAMClientOptions{})
	if err != nil {
		return fail(err)
	}
	user, cnonce := client.First()
	salt, iterations, combined, err := cfg.Users.ClientFirst(user, cnonce)
	if err != nil {
		return fail(err)
	}
	proof, err := client.Final(salt, iterations, combined)
	if err != nil {
		return fail(err)
	}
	sig, err := cfg.Users.ClientFinal(user, combined, proof)
	if err != nil {
		return fail(err)
	}
	if err := client.VerifyServer(sig); err != nil {
		return fail(err)
	}
	cred, _ := cfg.Users.LookupCredential(user)
	if id := (&identity{user: user, roles: cred.Roles, topics: cred.Topics}); !id.mayServe("") {
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
			st, err := p.state, p.stateErr
			p.mu.Unlock()
			switch {
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
