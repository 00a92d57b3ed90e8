package node

import (
	"context"
	"fmt"

	"github.com/seed0811993b/conclave/codec"
)

// call is a request waiting for its reply.
type call struct {
	topic string
	ch    chan reply
}

// reply is what ends a call: a KindReply or KindError envelope, or err.
type reply struct {
	kind  codec.Kind
	flags uint8
	body  []byte
	err   error
}

func (c *call) finish(r reply) {
	select {
	case c.ch <- r:
	default: // already finished
	}
}

// Request sends v to the handler of topic on the node named to and decodes
// the handler's result into out (a pointer, or nil to discard it). It
// fails with ctx's error at its deadline, with a *RemoteError when the
// handler returns an error, panics or does not exist (errors.Is
// ErrNoResponders), and with a *PeerError as soon as the node fails,
// leaves or restarts.
func (n *Node) Request(ctx context.Context, to, topic string, v, out any) error {
	m, err := n.request(ctx, to, topic, v)
	if err != nil {
		return err
	}
	return decodeReply(m, out)
}

// decodeReply decodes a reply into out unless out is nil.
func decodeReply(m *Msg, out any) error {
	if out == nil {
		return nil
	}
	if err := m.Decode(out); err != nil {
		return fmt.Errorf("node: decoding the reply from %s: %w", m.From, err)
	}
	return nil
}

// request sends one request and waits for its reply message.
func (n *Node) request(ctx context.Context, to, topic string, v any) (*Msg, error) {
	if err := n.checkTopic(topic); err != nil {
		return nil, err
	}
	var hdr [5]byte
	pl, sb, err := encodePayload(v, &hdr)
	defer releaseScratch(sb)
	if err != nil {
		return nil, fmt.Errorf("node: encoding the request: %w", err)
	}
	if to == n.cfg.Name {
		return n.requestLocal(ctx, topic, pl.joined(), pl.flags)
	}
	p, err := n.lookup(to, topic)
	if err != nil {
		return nil, err
	}
	id := n.reqID.Add(1)
	c := &call{topic: topic, ch: make(chan reply, 1)}
	p.mu.Lock()
	if p.state != stateAlive {
		err := p.deadErr()
		p.mu.Unlock()
		return nil, err
	}
	p.pending[id] = c
	p.mu.Unlock()
	forget := func() {
		p.mu.Lock()
		delete(p.pending, id)
		p.mu.Unlock()
	}
	e := pl.envelope(codec.KindRequest, 0, id, topic)
	if err := p.sendTail(ctx, &e, pl.tail, false); err != nil {
		forget()
		return nil, err
	}
	select {
	case r := <-c.ch:
		return r.msg(p, topic)
	case <-ctx.Done():
		forget()
		return nil, ctx.Err()
	case <-n.done:
		return nil, ErrClosed
	}
}

// msg turns a reply into the reply message or the error it carries.
func (r reply) msg(p *peer, topic string) (*Msg, error) {
	if r.err != nil {
		return nil, r.err
	}
	if r.kind == codec.KindError {
		return nil, remoteError(p.name, topic, r.body)
	}
	return &Msg{From: p.name, FromID: p.id, Topic: topic, body: r.body, flags: r.flags}, nil
}

// remoteError decodes an error reply's body.
func remoteError(node, topic string, body []byte) error {
	var eb errorBody
	if err := codec.Msgpack.Unmarshal(body, &eb); err != nil {
		return &RemoteError{Node: node, Topic: topic, Code: codeHandler, Message: "malformed error reply"}
	}
	return &RemoteError{Node: node, Topic: topic, Code: eb.Code, Message: eb.Message}
}

// complete hands a reply or error envelope to the request waiting for it.
// An error with ID 0 answers a one-way message nobody handled.
func (p *peer) complete(e *codec.Envelope) {
	if e.ID == 0 {
		if e.Kind == codec.KindError {
			p.n.undeliverable(Undelivered{To: p.id, Topic: string(e.Topic), Err: remoteError(p.name, string(e.Topic), e.Body)})
		}
		return
	}
	p.mu.Lock()
	c := p.pending[e.ID]
	delete(p.pending, e.ID)
	p.mu.Unlock()
	if c != nil {
		c.finish(reply{kind: e.Kind, flags: e.Flags, body: e.Body})
	}
}

// requestLocal runs this node's own handler for a request to itself. The
// handler runs on a goroutine of its own, so the caller returns at its
// ctx's end as it would from a remote request; the handler's ctx ends then
// too, or when the node closes.
func (n *Node) requestLocal(ctx context.Context, topic string, body []byte, flags uint8) (*Msg, error) {
	s := n.local.handler(topic)
	if s == nil {
		return nil, &RemoteError{Node: n.cfg.Name, Topic: topic, Code: codeNoResponders, Message: "no handler for topic " + topic}
	}
	if n.closing() {
		return nil, ErrClosed
	}
	m := &Msg{From: n.cfg.Name, FromID: n.id, Topic: topic, body: body, flags: flags}
	type result struct {
		m   *Msg
		err error
	}
	done := make(chan result, 1)
	hctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(n.ctx, cancel)
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		defer cancel()
		defer stop()
		res, code, msg := n.runHandler(hctx, s, m)
		if code != 0 {
			done <- result{err: &RemoteError{Node: n.cfg.Name, Topic: topic, Code: code, Message: msg}}
			return
		}
		rb, rflags, err := appendPayload(nil, res)
		if err != nil {
			done <- result{err: fmt.Errorf("node: encoding the reply: %w", err)}
			return
		}
		done <- result{m: &Msg{From: n.cfg.Name, FromID: n.id, Topic: topic, body: rb, flags: rflags}}
	}()
	select {
	case r := <-done:
		return r.m, r.err
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-n.done:
		return nil, ErrClosed
	}
}

// RequestAny sends a request to one of the members that handle topic
// (this node included), taking them in turn, and decodes the reply into
// out. With no handler anywhere it fails at once with ErrNoResponders.
func (n *Node) RequestAny(ctx context.Context, topic string, v, out any) error {
	targets := n.Servers(topic)
	if len(targets) == 0 {
		return fmt.Errorf("%w: nobody handles %q", ErrNoResponders, topic)
	}
	to := targets[int(n.routes.next.Add(1))%len(targets)]
	return n.Request(ctx, to, topic, v, out)
}

// Servers returns the names of the members that handle topic (Handle),
// this node included, as far as this node knows: a handler registered
// elsewhere is known here within a round trip of the link.
func (n *Node) Servers(topic string) []string {
	var out []string
	if n.local.handler(topic) != nil {
		out = append(out, n.cfg.Name)
	}
	n.routes.mu.RLock()
	for _, p := range n.routes.services[topic] {
		out = append(out, p.name)
	}
	n.routes.mu.RUnlock()
	return out
}

// Response is one member's answer to Gather.
type Response struct {
	From string // stable name of the member
	Msg  *Msg   // the reply, when Err is nil
	Err  error
}

// Gather sends v to every member that handles topic (this node included)
// and collects their replies until all have answered or ctx ends; members
// that had not answered by then get a Response with ctx's error. It fails
// with ErrNoResponders only when nobody handles topic.
func (n *Node) Gather(ctx context.Context, topic string, v any) ([]Response, error) {
	targets := n.Servers(topic)
	if len(targets) == 0 {
		return nil, fmt.Errorf("%w: nobody handles %q", ErrNoResponders, topic)
	}
	ch := make(chan Response, len(targets))
	for _, to := range targets {
		go func() {
			m, err := n.request(ctx, to, topic, v)
			ch <- Response{From: to, Msg: m, Err: err}
		}()
	}
	out := make([]Response, 0, len(targets))
	for range targets {
		out = append(out, <-ch)
	}
	return out, nil
}

// Call is Request with the reply decoded into a value of type R.
func Call[R any](ctx context.Context, n *Node, to, topic string, req any) (R, error) {
	var out R
	err := n.Request(ctx, to, topic, req, &out)
	return out, err
}

// HandleFunc registers a handler that receives its request decoded as Q
// and returns a reply of type R.
func HandleFunc[Q, R any](n *Node, topic string, f func(ctx context.Context, m *Msg, req Q) (R, error)) (*Subscription, error) {
	return n.Handle(topic, func(ctx context.Context, m *Msg) (any, error) {
		var q Q
		if err := m.Decode(&q); err != nil {
			return nil, fmt.Errorf("decoding the request: %w", err)
		}
		return f(ctx, m, q)
	})
}
