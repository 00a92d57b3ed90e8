package node

import (
	"context"

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
