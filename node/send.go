package node

import (
	"context"
	"errors"
	"fmt"

	"github.com/seed0811993b/conclave/codec"
)

// sendControl queues a sequenced control envelope without waiting for
// room; errors mean the peer is gone, which needs no control message.
func (p *peer) sendControl(topic string, body []byte) {
	p.send(context.Background(), &codec.Envelope{Kind: codec.KindControl, Topic: []byte(topic), Body: body}, true)
}

// Send sends v one way to the handler of topic on the node named to. It
// returns once the message is queued, waiting while that node's queue is
// full (Config.SendQueueBytes) or until ctx ends. Messages from one node to
// another arrive in the order sent, exactly once, across reconnections; a
// message that cannot be delivered (the receiver fails, leaves or has no
// handler for topic) goes to Config.Undeliverable. A []byte v travels as
// raw bytes; anything else is encoded with msgpack.
//
// Every queue on the way is bounded, so a cycle of waits can only end with
// a context: if handlers on two nodes each Send to the other while both
// inboxes are full, each waits for the other's handler. A handler that sends
// towards a node that may be sending back should give Send a deadline.
func (n *Node) Send(ctx context.Context, to, topic string, v any) error {
	if err := n.checkTopic(topic); err != nil {
		return err
	}
	var hdr [5]byte
	pl, sb, err := encodePayload(v, &hdr)
	defer releaseScratch(sb)
	if err != nil {
		return fmt.Errorf("node: encoding the message: %w", err)
	}
	if to == n.cfg.Name {
		return n.deliverLocal(ctx, topic, pl.joined(), pl.flags, 0, true)
	}
	p, err := n.lookup(to, topic)
	if err != nil {
		return err
	}
	e := pl.envelope(codec.KindData, 0, 0, topic)
	return p.sendTail(ctx, &e, pl.tail, false)
}

// Broadcast sends v one way to the handler of topic on every live member,
// this node included. Members without a handler ignore it, and peers
// whose user may not serve topic do not get it.
func (n *Node) Broadcast(ctx context.Context, topic string, v any) error {
	if err := n.checkTopic(topic); err != nil {
		return err
	}
	body, flags, err := appendPayload(nil, v)
	if err != nil {
		return fmt.Errorf("node: encoding the message: %w", err)
	}
	if err := n.deliverLocal(ctx, topic, body, flags|flagBroadcast, 0, false); err != nil {
		return err
	}
	e := codec.Envelope{Kind: codec.KindData, Flags: flags | flagBroadcast, Topic: []byte(topic), Body: body}
	for _, p := range n.livePeers() {
		if !p.ident.Load().mayServe(topic) {
			continue // a client whose user may not serve topic
		}
		if err := p.send(ctx, &e, false); err != nil && ctx.Err() != nil {
			return err
		}
	}
	return nil
}

// Publish sends v to every subscriber of topic (Subscribe) and to one
// member of each queue group on it (QueueSubscribe), on whichever members
// they are. Subscriptions made anywhere in the cluster apply within a
// round trip of the link. Publishing to a topic without subscribers is not
// an error.
func (n *Node) Publish(ctx context.Context, topic string, v any) error {
	if err := n.checkTopic(topic); err != nil {
		return err
	}
	if n.closing() {
		return ErrClosed
	}
	body, flags, err := appendPayload(nil, v)
	if err != nil {
		return fmt.Errorf("node: encoding the message: %w", err)
	}
	flags |= flagPublish
	if len(n.local.subs(topic)) > 0 {
		if err := n.deliverLocal(ctx, topic, body, flags, 0, false); err != nil {
			return err
		}
	}
	peers, groups := n.routes.publishTargets(topic)
	e := codec.Envelope{Kind: codec.KindData, Flags: flags, Topic: []byte(topic), Body: body}
	for _, p := range peers {
		if err := p.send(ctx, &e, false); err != nil && ctx.Err() != nil {
			return err
		}
	}
	for _, g := range groups {
		// A group whose last member left since publishTargets is a topic
		// without subscribers, which is not an error.
		if err := n.sendToGroup(ctx, g, topic, body, flags|flagQueue); err != nil && !errors.Is(err, errNoMembers) {
			return err
		}
	}
	return nil
}

// errNoMembers: a queue group has no members left.
var errNoMembers = errors.New("node: the queue group has no members")

// sendToGroup delivers one message to one live member of g, trying the
// members in turn from the group's next one.
func (n *Node) sendToGroup(ctx context.Context, g *queueGroup, topic string, body []byte, flags uint8) error {
	n.routes.mu.RLock()
	members := g.members
	n.routes.mu.RUnlock()
	if len(members) == 0 {
		return errNoMembers
	}
	start := int(g.next.Add(1))
	var last error
	for i := range members {
		m := members[(start+i)%len(members)]
		if m.p == nil {
			return n.deliverLocal(ctx, topic, body, flags, m.sid, false)
		}
		err := m.p.send(ctx, &codec.Envelope{Kind: codec.KindData, Flags: flags, ID: m.sid, Topic: []byte(topic), Body: body}, false)
		if err == nil || ctx.Err() != nil {
			return err
		}
		last = err
	}
	return fmt.Errorf("node: no live member of a queue group on %q: %w", topic, last)
}

// publishTargets returns the peers with plain subscriptions to topic and
// the queue groups on it.
func (r *routeTable) publishTargets(topic string) ([]*peer, []*queueGroup) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	var peers []*peer
	for p := range r.plain[topic] {
		if p != nil {
			peers = append(peers, p)
		}
	}
	var groups []*queueGroup
	for _, g := range r.queues[topic] {
		groups = append(groups, g)
	}
	return peers, groups
}

// deliverLocal queues a message from this node to itself, in order with
// its other messages to itself.
func (n *Node) deliverLocal(ctx context.Context, topic string, body []byte, flags uint8, sid uint64, reply bool) error {
	if n.closing() {
		return ErrClosed
	}
	return n.self.put(ctx, n.done, inMsg{
		msg:   Msg{From: n.cfg.Name, FromID: n.id, Topic: topic, body: body, flags: flags},
		id:    sid,
		size:  len(body) + len(topic),
		reply: reply,
	})
}

// closing reports whether the node is leaving or closed.
func (n *Node) closing() bool {
	return n.leaving.Load() || n.ctx.Err() != nil
}
