package node

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"

	"github.com/seed0811993b/conclave/auth"
	"github.com/seed0811993b/conclave/codec"
	"github.com/seed0811993b/conclave/transport"
)

// dispatch handles one accepted sequenced envelope from p. On the link's
// reader (st not nil, p.inMu held) it must not wait for anything (see
// admit.go): replies and control are handled here, one-way messages go to
// p's inbox (in order, through st's batch) and requests to workers, and
// work that would have to wait returns errPark. On p's admitter (st nil)
// it waits as needed.
func (n *Node) dispatch(p *peer, e *codec.Envelope, size int, st *readState) error {
	ident := p.ident.Load()
	if e.Kind != codec.KindData && st != nil {
		// Whatever came before is in the inbox, or parked, before this is
		// handled.
		st.flush(p)
		if p.admitting && e.Kind != codec.KindReply && e.Kind != codec.KindError {
			return errPark
		}
	}
	switch e.Kind {
	case codec.KindData:
		if !ident.maySend(string(e.Topic)) {
			return n.forbidden(st, p, ident, 0, string(e.Topic), "send to topic "+string(e.Topic))
		}
		m := inMsg{
			from:  p,
			msg:   Msg{From: p.name, FromID: p.id, Topic: n.local.intern(e.Topic), body: e.Body, flags: e.Flags},
			id:    e.ID,
			size:  size,
			reply: e.Flags&(flagPublish|flagBroadcast) == 0,
		}
		if st != nil {
			st.hold(p, e.Seq, m)
			return nil
		}
		return p.inbox.put(n.ctx, p.inbox.gone, m)
	case codec.KindRequest:
		if string(e.Topic) != StatusTopic && !ident.maySend(string(e.Topic)) {
			return n.forbidden(st, p, ident, e.ID, string(e.Topic), "send requests to topic "+string(e.Topic))
		}
		if err := n.requestSlot(p, st != nil); err != nil {
			return err
		}
		n.startRequest(request{p: p, id: e.ID, m: &Msg{From: p.name, FromID: p.id, Topic: n.local.intern(e.Topic), body: e.Body, flags: e.Flags}})
	case codec.KindReply, codec.KindError:
		p.complete(e)
	case codec.KindControl:
		switch string(e.Topic) {
		case ctlInterest:
			return n.applyInterest(p, ident, e.Body)
		case ctlWhoami:
			var w whoami
			if err := codec.Msgpack.Unmarshal(e.Body, &w); err != nil {
				return n.protocolError(p, fmt.Errorf("whoami: %w", err))
			}
			// Bounded like the store's entries: every later send checks them.
			if err := auth.CheckRoles(w.Roles); err != nil {
				return n.protocolError(p, fmt.Errorf("whoami: %w", err))
			}
			if err := w.Topics.Check(); err != nil {
				return n.protocolError(p, fmt.Errorf("whoami: %w", err))
			}
			if len(n.cfg.Connect) > 0 {
				n.selfIdentity.Store(&identity{user: w.User, roles: w.Roles, topics: w.Topics})
			}
		case ctlIam:
			var m iam
			if err := codec.Msgpack.Unmarshal(e.Body, &m); err != nil {
				return n.protocolError(p, fmt.Errorf("iam: %w", err))
			}
			if err := auth.CheckUserName(m.User); err != nil {
				return n.protocolError(p, fmt.Errorf("iam: %w", err))
			}
			if p.ident.Load() == nil {
				p.announced.CompareAndSwap(nil, &m.User) // the first word binds: an ID keeps its user
			}
		case ctlLeave:
			// Handled by the link's reader, which acknowledges it first.
		case ctlResync:
			n.resync(p)
		default:
			n.log.Debug("ignoring an unknown control message", "peer", p.id, "topic", string(e.Topic))
		}
	default:
		return n.protocolError(p, fmt.Errorf("unknown envelope kind %v", e.Kind))
	}
	return nil
}

// requestSlot takes a request slot for a request from p, once p's queue
// has room for the reply and fewer than MaxRequests of p's requests wait
// to be answered: a peer that does not take its replies gets no more of
// them, and holds up only its own requests. On the reader (noWait) it
// takes one only if that needs no waiting, and returns errPark otherwise.
func (n *Node) requestSlot(p *peer, noWait bool) error {
	if noWait {
		if !p.hasRoom() || p.answering.Load() >= int32(n.cfg.MaxRequests) {
			return errPark
		}
		select {
		case n.reqSem <- struct{}{}:
			p.answering.Add(1)
			return nil
		default:
			return errPark
		}
	}
	for p.answering.Load() >= int32(n.cfg.MaxRequests) {
		select {
		case <-p.answered:
		case <-n.done:
			return ErrClosed
		}
	}
	if !p.waitRoom() {
		return p.endedErr()
	}
	select {
	case n.reqSem <- struct{}{}:
		p.answering.Add(1)
		return nil
	case <-n.done:
		return ErrClosed
	}
}

// serve answers a request from p. It gives its request slot back before
// sending: a reply that waits for room in p's queue holds up no other
// peer's requests.
func (n *Node) serve(p *peer, id uint64, m *Msg) {
	e := n.answer(id, m)
	<-n.reqSem
	err := p.send(n.ctx, &e, false)
	if errors.Is(err, transport.ErrFrameTooLarge) {
		err = n.sendError(n.ctx, p, id, m.Topic, codeHandler, fmt.Sprintf("the reply (%d bytes) is over the requester's frame limit", len(e.Body)))
	}
	p.answering.Add(-1)
	signal(p.answered)
	if err != nil {
		n.log.Debug("reply not sent", "peer", p.id, "topic", m.Topic, "err", err)
	}
}

// answer runs the handler for request m (or takes this node's status) and
// returns the reply or error envelope.
func (n *Node) answer(id uint64, m *Msg) codec.Envelope {
	var res any
	if m.Topic == StatusTopic {
		res = n.status()
	} else {
		s := n.local.handler(m.Topic)
		if s == nil {
			return errorEnvelope(id, m.Topic, codeNoResponders, "no handler for topic "+m.Topic)
		}
		var code uint8
		var msg string
		if res, code, msg = n.runHandler(n.ctx, s, m); code != 0 {
			return errorEnvelope(id, m.Topic, code, msg)
		}
	}
	body, flags, err := appendPayload(nil, res)
	if err != nil {
		return errorEnvelope(id, m.Topic, codeHandler, "encoding the reply: "+err.Error())
	}
	return codec.Envelope{Kind: codec.KindReply, Flags: flags, ID: id, Body: body}
}

// runHandler calls a topic handler, turning its error or panic into an
// error code and message for the requester. A panic is logged here with
// its stack; the requester learns only that it happened.
func (n *Node) runHandler(ctx context.Context, s *Subscription, m *Msg) (res any, code uint8, msg string) {
	defer func() {
		if r := recover(); r != nil {
			n.log.Error("handler panicked", "topic", m.Topic, "from", m.FromID, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
			res, code, msg = nil, codePanic, "handler panicked"
		}
	}()
	res, err := s.h(ctx, m)
	if err != nil {
		return nil, codeHandler, err.Error()
	}
	return res, 0, ""
}

// runMsgHandler calls a subscription's handler, recovering a panic.
func (n *Node) runMsgHandler(s *Subscription, m *Msg) {
	defer func() {
		if r := recover(); r != nil {
			n.log.Error("subscription handler panicked", "topic", m.Topic, "from", m.FromID, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
		}
	}()
	s.mh(n.ctx, m)
}

// deliver hands one one-way message to its handler or subscriptions; it
// runs on the sender's inbox goroutine, so messages from one sender are
// handled one at a time, in order.
func (n *Node) deliver(im *inMsg) {
	m := &im.msg
	topic := m.Topic
	if m.flags&flagQueue != 0 {
		if s := n.local.bySub(im.id); s != nil && s.kind == interestQueue && s.topic == m.Topic {
			n.runMsgHandler(s, m)
			return
		}
		// Passed on only once, and only from a peer: this node's own
		// inbox goroutine, which would run it, may not wait on that inbox.
		if m.flags&flagPassedOn == 0 && im.from != nil && n.passOn(im) {
			return
		}
		n.notHandled(im, "its queue subscription is gone")
		return
	}
	if m.flags&flagPublish == 0 {
		if s := n.local.handler(topic); s != nil {
			if _, code, msg := n.runHandler(n.ctx, s, m); code != 0 {
				n.log.Debug("one-way handler failed", "topic", m.Topic, "from", m.FromID, "err", msg)
			}
			return
		}
	}
	subs := n.local.subs(topic)
	for _, s := range subs {
		n.runMsgHandler(s, m)
	}
	if len(subs) == 0 && im.reply {
		n.notHandled(im, "no handler for topic "+m.Topic)
	}
}

// passOn gives a queue message that arrived after its subscription here
// was removed to another member of the subscription's group, so that it
// still reaches exactly one member. It reports false when there is none
// (or the subscription is no longer remembered).
func (n *Node) passOn(im *inMsg) bool {
	s := n.local.goneQueue(im.id)
	if s == nil || s.topic != im.msg.Topic {
		return false
	}
	n.routes.mu.RLock()
	g := n.routes.queues[s.topic][s.group]
	n.routes.mu.RUnlock()
	if g == nil {
		return false
	}
	err := n.sendToGroup(n.ctx, g, s.topic, im.msg.body, im.msg.flags|flagPassedOn)
	if err != nil {
		n.log.Debug("queue message not passed on", "topic", s.topic, "group", s.group, "err", err)
	}
	return err == nil
}

// notHandled reports a one-way message that found no handler: to its
// sender, or to this node's Undeliverable hook if it came from here.
func (n *Node) notHandled(im *inMsg, why string) {
	if im.from == nil {
		n.undeliverable(Undelivered{To: n.id, Topic: im.msg.Topic, Body: im.msg.body,
			Err: &RemoteError{Node: n.cfg.Name, Topic: im.msg.Topic, Code: codeNoResponders, Message: why}})
		return
	}
	n.sendError(n.ctx, im.from, 0, im.msg.Topic, codeNoResponders, why)
}

// errorEnvelope is the answer to request id (0: a one-way message on
// topic) that failed with code and msg.
func errorEnvelope(id uint64, topic string, code uint8, msg string) codec.Envelope {
	e := codec.Envelope{Kind: codec.KindError, ID: id, Body: marshalControl(&errorBody{Code: code, Message: msg})}
	if id == 0 {
		e.Topic = []byte(topic)
	}
	return e
}

// sendError answers request id (0: a one-way message) with an error,
// waiting for room in p's queue until ctx ends.
func (n *Node) sendError(ctx context.Context, p *peer, id uint64, topic string, code uint8, msg string) error {
	e := errorEnvelope(id, topic, code, msg)
	err := p.send(ctx, &e, false)
	if err != nil && ctx != noWait {
		n.log.Debug("error reply not sent", "peer", p.id, "topic", topic, "err", err)
	}
	return err
}

// reportFrame reports an unacknowledged frame that will never be
// delivered: a request's caller has already been failed, a one-way message
// goes to the Undeliverable hook.
func (n *Node) reportFrame(p *peer, b []byte, err error) {
	var e codec.Envelope
	if codec.ParseEnvelope(b, &e, codec.Limits{}) != nil || e.Kind != codec.KindData {
		return
	}
	n.undeliverable(Undelivered{To: p.id, Topic: string(e.Topic), Body: e.Body, Err: err})
}

// undeliverable passes u to the hook, or logs it.
func (n *Node) undeliverable(u Undelivered) {
	n.undelivered.Add(1)
	if h := n.cfg.Undeliverable; h != nil {
		h(u)
		return
	}
	level := "warn"
	if errors.Is(u.Err, ErrClosed) {
		level = "debug"
	}
	if level == "warn" {
		n.log.Warn("message undeliverable", "to", u.To, "topic", u.Topic, "err", u.Err)
	} else {
		n.log.Debug("message undeliverable", "to", u.To, "topic", u.Topic, "err", u.Err)
	}
}
