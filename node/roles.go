package node

import (
	"context"
	"fmt"
	"slices"
	"strings"

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

// identity is what a peer proved with a user login: its user and roles.
// A peer without one proved only the cluster key and is a full member.
type identity struct {
	user  string
	roles []string
}

func (id *identity) has(role string) bool { return slices.Contains(id.roles, role) }

// String names the identity for errors and logs.
func (id *identity) String() string {
	return fmt.Sprintf("user %s (roles %s)", id.user, strings.Join(id.roles, ","))
}

// maySend reports whether the peer may send one-way messages and requests
// to topic here: admin, worker and client may reach any topic, a monitor
// only StatusTopic.
func (id *identity) maySend(topic string) bool {
	if id == nil || id.has(auth.RoleAdmin) || id.has(auth.RoleWorker) || id.has(auth.RoleClient) {
		return true
	}
	return id.has(auth.RoleMonitor) && topic == StatusTopic
}

// mayServe reports whether the peer may register handlers and
// subscriptions here, which makes it a recipient of the cluster's
// messages: admin and worker only.
func (id *identity) mayServe() bool {
	return id == nil || id.has(auth.RoleAdmin) || id.has(auth.RoleWorker)
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

// checkServe refuses a registration on a client node whose user may not
// serve, as the members it connects to have said (see ctlWhoami): the
// caller hears it at once instead of the members dropping it later.
func (n *Node) checkServe() error {
	id := n.selfIdentity.Load()
	if id == nil || id.mayServe() {
		return nil
	}
	return fmt.Errorf("%w: %s may not serve or subscribe (that needs %s or %s)", ErrForbidden, id, auth.RoleAdmin, auth.RoleWorker)
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
