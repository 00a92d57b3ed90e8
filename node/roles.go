package node

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/seed0811993b/conclave/auth"
	"github.com/seed0811993b/conclave/codec"
)

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
	// keyless: the login proved a password and no cluster key, so the
	// peer is a client and never a gossip member (claim.go).
	keyless bool
}

// loggedIn is the identity a link's user login proved.
func (n *Node) loggedIn(st auth.ConnectionState) *identity {
	id := &identity{user: st.PeerUser, roles: st.PeerRoles, topics: st.PeerTopics, keyless: st.Mechanism == auth.MechanismUser}
	if n.cfg.Users != nil {
		if c, ok := n.cfg.Users.LookupCredential(st.PeerUser); ok {
			id.storedKey = c.StoredKey
		}
	}
	return id
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
// On the link's reader (st not nil) it must not wait for room for the
// answer: it returns errPark instead, and p's admitter answers.
func (n *Node) forbidden(st *readState, p *peer, id *identity, reqID uint64, topic, what string) error {
	ctx := n.ctx
	if st != nil {
		if !p.hasRoom() {
			return errPark
		}
		ctx = noWait
	}
	msg := fmt.Sprintf("%s may not %s", id, what)
	n.log.Warn("denied", "peer", p.id, "topic", topic, "why", msg)
	if err := n.sendError(ctx, p, reqID, topic, codeForbidden, msg); errors.Is(err, context.Canceled) && ctx == noWait {
		return errPark
	}
	return nil
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
