package node

import "sort"

// PeerStats counts one peer's traffic from this node's side.
type PeerStats struct {
	Name, ID    string
	LinkUp      bool   // a link is up and ready
	QueuedBytes int    // sent, not yet acknowledged (bounded by Config.SendQueueBytes)
	Queued      int    // messages sent, not yet acknowledged
	Sent        uint64 // sequenced messages queued for the peer
	Resent      uint64 // messages sent again after a reconnection
	Received    uint64 // sequenced messages accepted from the peer
	Duplicates  uint64 // resent messages received twice and dropped
}

// Stats counts a node's traffic.
type Stats struct {
	Peers         []PeerStats // live peers, sorted by name
	Undeliverable uint64      // one-way messages reported to Config.Undeliverable
}

// Stats returns the node's counters.
func (n *Node) Stats() Stats {
	var s Stats
	for _, p := range n.livePeers() {
		p.mu.Lock()
		ps := PeerStats{
			Name: p.name, ID: p.id, LinkUp: p.ready,
			QueuedBytes: p.queued, Queued: p.unacked.len(),
		}
		p.mu.Unlock()
		ps.Sent, ps.Resent = p.sent.Load(), p.resent.Load()
		ps.Received, ps.Duplicates = p.recv.Load(), p.dups.Load()
		s.Peers = append(s.Peers, ps)
	}
	sort.Slice(s.Peers, func(i, j int) bool { return s.Peers[i].Name < s.Peers[j].Name })
	s.Undeliverable = n.undelivered.Load()
	return s
}
