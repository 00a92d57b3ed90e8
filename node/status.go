package node

import "context"

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
