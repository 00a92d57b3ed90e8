package node

import (
	"errors"
	"fmt"
	"maps"
	"sync"
	"sync/atomic"

	"github.com/seed0811993b/conclave/codec"
)

// interestKind says what a node wants of a topic.
type interestKind uint8

const (
	interestSub     interestKind = 1 // Subscribe: every published message
	interestQueue   interestKind = 2 // QueueSubscribe: one per group
	interestService interestKind = 3 // Handle: requests and one-way sends
)

// Subscription is a handler or subscription registered on a Node.
type Subscription struct {
	n     *Node
	sid   uint64
	kind  interestKind
	topic string
	group string
	h     Handler    // interestService
	mh    MsgHandler // interestSub, interestQueue
	gone  atomic.Bool
}

// Topic returns the subscribed topic.
func (s *Subscription) Topic() string { return s.topic }

// Unsubscribe removes the subscription here and, within a round
// trip, at every other member. Calling it again does nothing.
func (s *Subscription) Unsubscribe() error {
	if s.gone.Swap(true) {
		return nil
	}
	n := s.n
	n.routes.order.Lock()
	defer n.routes.order.Unlock()
	n.local.remove(s)
	if s.kind == interestQueue {
		n.routes.update(nil, interestOp{Op: opDel, SID: s.sid, Kind: s.kind, Topic: s.topic, Group: s.group})
	}
	n.broadcastInterest([]interestOp{{Op: opDel, SID: s.sid, Kind: s.kind, Topic: s.topic, Group: s.group}})
	return nil
}

// localTable holds this node's handlers and subscriptions. Every received
// message looks it up and registrations are rare, so readers load an
// immutable snapshot without locking and writers (serialised by mu)
// publish a new one.
type localTable struct {
	mu      sync.Mutex
	nextSID uint64
	snap    atomic.Pointer[localSnapshot]

	// The queue subscriptions removed last, by id (guarded by mu), so
	// that a message still on its way to one finds its group.
	gone      map[uint64]*Subscription
	goneOrder []uint64
}

// goneKept is how many removed queue subscriptions a node remembers.
const goneKept = 1024

// localSnapshot is one immutable state of a localTable.
type localSnapshot struct {
	handlers map[string]*Subscription
	plain    map[string][]*Subscription
	bySID    map[uint64]*Subscription
}

func (t *localTable) init() {
	t.snap.Store(&localSnapshot{
		handlers: map[string]*Subscription{},
		plain:    map[string][]*Subscription{},
		bySID:    map[uint64]*Subscription{},
	})
}

// clone copies a snapshot for a writer to change.
func (s *localSnapshot) clone() *localSnapshot {
	return &localSnapshot{handlers: maps.Clone(s.handlers), plain: maps.Clone(s.plain), bySID: maps.Clone(s.bySID)}
}

func (t *localTable) add(s *Subscription) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	cur := t.snap.Load()
	if s.kind == interestService {
		if _, dup := cur.handlers[s.topic]; dup {
			return fmt.Errorf("node: topic %q already has a handler", s.topic)
		}
	}
	next := cur.clone()
	t.nextSID++
	s.sid = t.nextSID
	next.bySID[s.sid] = s
	switch s.kind {
	case interestService:
		next.handlers[s.topic] = s
	case interestSub:
		next.plain[s.topic] = append(next.plain[s.topic][:len(next.plain[s.topic]):len(next.plain[s.topic])], s)
	}
	t.snap.Store(next)
	return nil
}

func (t *localTable) remove(s *Subscription) {
	t.mu.Lock()
	defer t.mu.Unlock()
	next := t.snap.Load().clone()
	delete(next.bySID, s.sid)
	switch s.kind {
	case interestQueue:
		if t.gone == nil {
			t.gone = make(map[uint64]*Subscription)
		}
		if len(t.goneOrder) == goneKept {
			delete(t.gone, t.goneOrder[0])
			t.goneOrder = append(t.goneOrder[:0], t.goneOrder[1:]...)
		}
		t.gone[s.sid] = s
		t.goneOrder = append(t.goneOrder, s.sid)
	case interestService:
		delete(next.handlers, s.topic)
	case interestSub:
		subs := next.plain[s.topic]
		for i, x := range subs {
			if x == s {
				subs = append(subs[:i:i], subs[i+1:]...)
				break
			}
		}
		if len(subs) == 0 {
			delete(next.plain, s.topic)
		} else {
			next.plain[s.topic] = subs
		}
	}
	t.snap.Store(next)
}

// handler returns the handler for topic, or nil.
func (t *localTable) handler(topic string) *Subscription {
	return t.snap.Load().handlers[topic]
}

// subs returns the plain subscriptions to topic; snapshots never change,
// so the slice stays valid.
func (t *localTable) subs(topic string) []*Subscription {
	return t.snap.Load().plain[topic]
}

// intern returns topic as a string, without allocating when this node has
// a handler or subscription for it (the usual case for received messages).
func (t *localTable) intern(topic []byte) string {
	snap := t.snap.Load()
	if s, ok := snap.handlers[string(topic)]; ok {
		return s.topic
	}
	if subs := snap.plain[string(topic)]; len(subs) > 0 {
		return subs[0].topic
	}
	return string(topic)
}

func (t *localTable) bySub(sid uint64) *Subscription {
	return t.snap.Load().bySID[sid]
}

// goneQueue returns the removed queue subscription with id sid, if this
// node still remembers it.
func (t *localTable) goneQueue(sid uint64) *Subscription {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.gone[sid]
}

// ops returns an interest op adding every registration, for a snapshot.
func (t *localTable) ops() []interestOp {
	snap := t.snap.Load()
	out := make([]interestOp, 0, len(snap.bySID)+1)
	out = append(out, interestOp{Op: opReset})
	for _, s := range snap.bySID {
		out = append(out, interestOp{Op: opAdd, SID: s.sid, Kind: s.kind, Topic: s.topic, Group: s.group})
	}
	return out
}

// routeTable indexes what the other members want, plus this node's own
// queue subscriptions so that a group's members are picked from one list.
type routeTable struct {
	// order serialises changes to this node's interests with the start of
	// peer sessions, so every peer sees a snapshot and then every change.
	order sync.Mutex

	mu       sync.RWMutex
	plain    map[string]map[*peer]int
	services map[string][]*peer
	queues   map[string]map[string]*queueGroup
	next     atomic.Uint32 // spreads RequestAny
}

// queueGroup is the members of one queue group on one topic.
type queueGroup struct {
	members []queueMember
	next    atomic.Uint32
}

// queueMember is a queue subscription: on a peer, or local when p is nil.
type queueMember struct {
	p   *peer
	sid uint64
	sub *Subscription
}

func (r *routeTable) init() {
	r.plain = make(map[string]map[*peer]int)
	r.services = make(map[string][]*peer)
	r.queues = make(map[string]map[string]*queueGroup)
}

// errBadInterest reports an interest op that makes no sense.
var errBadInterest = errors.New("bad interest op")

// update applies one op from p (nil: this node's queue subscriptions).
func (r *routeTable) update(p *peer, op interestOp) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch op.Op {
	case opReset:
		if p != nil {
			for _, old := range p.interests {
				r.removeLocked(p, old)
			}
			clear(p.interests)
		}
		return nil
	case opAdd:
		if len(op.Topic) == 0 || len(op.Topic) > codec.MaxTopicLen || len(op.Group) > codec.MaxTopicLen {
			return errBadInterest
		}
		if p != nil {
			if _, dup := p.interests[op.SID]; dup {
				return nil
			}
			if len(p.interests) >= maxInterestsPerPeer {
				return errors.New("too many interests")
			}
			if err := r.checkAddLocked(p, op); err != nil {
				return err
			}
			p.interests[op.SID] = op
		}
		r.addLocked(p, op)
	case opDel:
		if p != nil {
			old, ok := p.interests[op.SID]
			if !ok {
				return nil
			}
			delete(p.interests, op.SID)
			op = old
		}
		r.removeLocked(p, op)
	default:
		return errBadInterest
	}
	return nil
}

// Limits on one member's interests, so that what a peer registers costs
// memory and work in proportion to it: a handler per topic, as Handle
// allows, and at most maxQueueMembers subscriptions of one node in one
// queue group (each add copies the group's member list).
const (
	maxInterestsPerPeer = 1 << 16
	maxQueueMembers     = 64
)

// checkAddLocked refuses an add from p (nil: this node) that would give
// it a second handler for a topic or too many places in a queue group.
func (r *routeTable) checkAddLocked(p *peer, op interestOp) error {
	switch op.Kind {
	case interestService:
		for _, x := range r.services[op.Topic] {
			if x == p {
				return fmt.Errorf("a second handler for topic %q", op.Topic)
			}
		}
	case interestQueue:
		if g := r.queues[op.Topic][op.Group]; g != nil {
			k := 0
			for _, m := range g.members {
				if m.p == p {
					k++
				}
			}
			if k >= maxQueueMembers {
				return fmt.Errorf("over %d subscriptions in queue group %q of topic %q", maxQueueMembers, op.Group, op.Topic)
			}
		}
	}
	return nil
}

func (r *routeTable) addLocked(p *peer, op interestOp) {
	switch op.Kind {
	case interestSub:
		m := r.plain[op.Topic]
		if m == nil {
			m = make(map[*peer]int)
			r.plain[op.Topic] = m
		}
		m[p]++
	case interestService:
		r.services[op.Topic] = append(r.services[op.Topic][:len(r.services[op.Topic]):len(r.services[op.Topic])], p)
	case interestQueue:
		groups := r.queues[op.Topic]
		if groups == nil {
			groups = make(map[string]*queueGroup)
			r.queues[op.Topic] = groups
		}
		g := groups[op.Group]
		if g == nil {
			g = &queueGroup{}
			groups[op.Group] = g
		}
		// Copy on append: publishers read members without the lock.
		g.members = append(g.members[:len(g.members):len(g.members)], queueMember{p: p, sid: op.SID})
	}
}

func (r *routeTable) removeLocked(p *peer, op interestOp) {
	switch op.Kind {
	case interestSub:
		if m := r.plain[op.Topic]; m != nil {
			if m[p]--; m[p] <= 0 {
				delete(m, p)
			}
			if len(m) == 0 {
				delete(r.plain, op.Topic)
			}
		}
	case interestService:
		ps := r.services[op.Topic]
		for i, x := range ps {
			if x == p {
				ps = append(ps[:i:i], ps[i+1:]...)
				break
			}
		}
		if len(ps) == 0 {
			delete(r.services, op.Topic)
		} else {
			r.services[op.Topic] = ps
		}
	case interestQueue:
		g := r.queues[op.Topic][op.Group]
		if g == nil {
			return
		}
		for i, m := range g.members {
			if m.p == p && m.sid == op.SID {
				g.members = append(g.members[:i:i], g.members[i+1:]...)
				break
			}
		}
		if len(g.members) == 0 {
			delete(r.queues[op.Topic], op.Group)
			if len(r.queues[op.Topic]) == 0 {
				delete(r.queues, op.Topic)
			}
		}
	}
}

// broadcastInterest sends ops to every live peer. Callers hold
// routes.order.
func (n *Node) broadcastInterest(ops []interestOp) {
	body := marshalControl(ops)
	for _, p := range n.livePeers() {
		p.sendControl(ctlInterest, body)
	}
}

// sendSnapshotLocked starts p's session with all of this node's interests.
// Callers hold routes.order.
func (n *Node) sendSnapshotLocked(p *peer) {
	ops := n.local.ops()
	for len(ops) > 0 { // in chunks, so that no frame nears the limit
		k := min(len(ops), snapshotChunk)
		p.sendControl(ctlInterest, marshalControl(ops[:k]))
		ops = ops[k:]
	}
}

// snapshotChunk is the most interest ops per control frame: well under
// 64 KiB even with long topics.
const snapshotChunk = 256

// requestResync asks p for its interests again; see peer.resume.
func (n *Node) requestResync(p *peer) {
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		p.sendControl(ctlResync, nil)
	}()
}

// resync answers a peer's resync request with a snapshot: one answer at a
// time per peer, started once its queue has room. A request that arrives
// while an answer waits to start is covered by it (the snapshot is taken
// when it starts), so a peer that asks again and again, acknowledging
// nothing, gets neither more goroutines nor more queued bytes.
func (n *Node) resync(p *peer) {
	if p.resyncPending.Swap(true) {
		return
	}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		if !p.waitRoom() {
			p.resyncPending.Store(false)
			return
		}
		n.routes.order.Lock()
		defer n.routes.order.Unlock()
		p.resyncPending.Store(false)
		n.sendSnapshotLocked(p)
	}()
}

// dropInterests forgets everything p wanted.
func (n *Node) dropInterests(p *peer) {
	n.routes.update(p, interestOp{Op: opReset})
}

// applyInterest applies a batch of interest ops received from p.
func (n *Node) applyInterest(p *peer, ident *identity, body []byte) error {
	var ops []interestOp
	if err := codec.Msgpack.Unmarshal(body, &ops); err != nil {
		return n.protocolError(p, fmt.Errorf("interest: %w", err))
	}
	for _, op := range ops {
		if op.Op == opAdd && !ident.mayServe(op.Topic) {
			n.log.Warn("denied", "peer", p.id, "topic", op.Topic, "why", ident.String()+" may not serve or subscribe to it")
			continue
		}
		if err := n.routes.update(p, op); err != nil {
			return n.protocolError(p, fmt.Errorf("interest: %w", err))
		}
	}
	if now := p.ident.Load(); now != ident && now != nil {
		// The store changed the peer's rights while we applied these
		// (recheckUsers): hold what we added to the new ones.
		n.pruneInterests(p, now)
		return nil
	}
	n.changed()
	return nil
}

// register adds a local registration and tells every peer.
func (n *Node) register(s *Subscription) (*Subscription, error) {
	if len(s.topic) == 0 || len(s.topic) > codec.MaxTopicLen {
		return nil, fmt.Errorf("node: topic must be 1 to %d bytes", codec.MaxTopicLen)
	}
	if len(s.group) > codec.MaxTopicLen {
		return nil, fmt.Errorf("node: queue group must be at most %d bytes", codec.MaxTopicLen)
	}
	if n.ctx.Err() != nil {
		return nil, ErrClosed
	}
	if err := n.checkServe(s.topic); err != nil {
		return nil, err
	}
	n.routes.order.Lock()
	defer n.routes.order.Unlock()
	if err := n.local.add(s); err != nil {
		return nil, err
	}
	op := interestOp{Op: opAdd, SID: s.sid, Kind: s.kind, Topic: s.topic, Group: s.group}
	if s.kind == interestQueue {
		if err := n.routes.addLocal(s); err != nil {
			n.local.remove(s)
			return nil, err
		}
	}
	n.broadcastInterest([]interestOp{op})
	return s, nil
}

// addLocal adds a local queue subscription to its group.
func (r *routeTable) addLocal(s *Subscription) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	op := interestOp{Op: opAdd, SID: s.sid, Kind: s.kind, Topic: s.topic, Group: s.group}
	if err := r.checkAddLocked(nil, op); err != nil {
		return fmt.Errorf("node: %w", err)
	}
	r.addLocked(nil, op)
	g := r.queues[s.topic][s.group]
	g.members[len(g.members)-1].sub = s
	return nil
}

// Handle registers h for topic: it serves Request and RequestAny, and
// receives one-way Send and Broadcast messages. A topic has at most one
// handler per node; other members learn of it within a round trip.
func (n *Node) Handle(topic string, h Handler) (*Subscription, error) {
	return n.register(&Subscription{n: n, kind: interestService, topic: topic, h: h})
}

// Subscribe registers h for every message published to topic.
func (n *Node) Subscribe(topic string, h MsgHandler) (*Subscription, error) {
	return n.register(&Subscription{n: n, kind: interestSub, topic: topic, mh: h})
}

// QueueSubscribe registers h in queue group group of topic: each message
// published to topic reaches exactly one member of each group, the
// members taking turns. A message that reaches a member just after it
// unsubscribed is passed on by that member to another one of the group
// (whose handler then sees that member as Msg.From); only when none is
// left does it go to the publisher's Config.Undeliverable.
func (n *Node) QueueSubscribe(topic, group string, h MsgHandler) (*Subscription, error) {
	if group == "" {
		return nil, errors.New("node: queue group name is empty")
	}
	return n.register(&Subscription{n: n, kind: interestQueue, topic: topic, group: group, mh: h})
}
