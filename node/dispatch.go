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

// dispatch handles one accepted sequenced envelope from p. It runs on the
// link's reader with p.inMu held, so it must not wait for anything but
// room for received work: replies and control are handled here, one-way
// messages go to p's inbox (in order, through st's batch) and requests to
// workers, so a handler that itself waits on p never blocks p's replies.
func (n *Node) dispatch(p *peer, e *codec.Envelope, size int, st *readState) error {
	ident := p.ident.Load()
	if e.Kind != codec.KindData {
		// Whatever came before is in the inbox before this is handled.
		if err := st.flush(p); err != nil {
			return err
		}
	}
	switch e.Kind {
	case codec.KindData:
		if !ident.maySend(string(e.Topic)) {
			n.forbidden(p, ident, 0, string(e.Topic), "send to topic "+string(e.Topic))
			return nil
		}
		return st.hold(p, inMsg{
			from:  p,
			msg:   Msg{From: p.name, FromID: p.id, Topic: n.local.intern(e.Topic), body: e.Body, flags: e.Flags},
			id:    e.ID,
			size:  size,
			reply: e.Flags&(flagPublish|flagBroadcast) == 0,
		})
	case codec.KindRequest:
		if string(e.Topic) == StatusTopic {
			n.serveStatus(p, e.ID)
			return nil
		}
		if !ident.maySend(string(e.Topic)) {
			n.forbidden(p, ident, e.ID, string(e.Topic), "send requests to topic "+string(e.Topic))
			return nil
		}
		select {
		case n.reqSem <- struct{}{}:
		default:
			p.stalled.Add(1)
			select {
			case n.reqSem <- struct{}{}:
				p.stalled.Add(-1)
			case <-n.done:
				p.stalled.Add(-1)
				return ErrClosed
			}
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

// serve runs the handler for a request from p and sends its answer.
func (n *Node) serve(p *peer, id uint64, m *Msg) {
	s := n.local.handler(m.Topic)
	if s == nil {
		n.sendError(p, id, m.Topic, codeNoResponders, "no handler for topic "+m.Topic)
		return
	}
	res, code, msg := n.runHandler(n.ctx, s, m)
	if code != 0 {
		n.sendError(p, id, m.Topic, code, msg)
		return
	}
	body, flags, err := appendPayload(nil, res)
	if err != nil {
		n.sendError(p, id, m.Topic, codeHandler, "encoding the reply: "+err.Error())
		return
	}
	if err := p.send(n.ctx, &codec.Envelope{Kind: codec.KindReply, Flags: flags, ID: id, Body: body}, false); err != nil {
		if errors.Is(err, transport.ErrFrameTooLarge) {
			n.sendError(p, id, m.Topic, codeHandler, fmt.Sprintf("the reply (%d bytes) is over the requester's frame limit", len(body)))
			return
		}
		n.log.Debug("reply not sent", "peer", p.id, "topic", m.Topic, "err", err)
	}
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

// notHandled reports a one-way message that found no handler: to its
// sender, or to this node's Undeliverable hook if it came from here.
func (n *Node) notHandled(im *inMsg, why string) {
	if im.from == nil {
		n.undeliverable(Undelivered{To: n.id, Topic: im.msg.Topic, Body: im.msg.body,
			Err: &RemoteError{Node: n.cfg.Name, Topic: im.msg.Topic, Code: codeNoResponders, Message: why}})
		return
	}
	n.sendError(im.from, 0, im.msg.Topic, codeNoResponders, why)
}

// sendError answers request id (0: a one-way message) with an error.
func (n *Node) sendError(p *peer, id uint64, topic string, code uint8, msg string) {
	e := codec.Envelope{Kind: codec.KindError, ID: id, Body: marshalControl(&errorBody{Code: code, Message: msg})}
	if id == 0 {
		e.Topic = []byte(topic)
	}
	if err := p.send(n.ctx, &e, false); err != nil {
		n.log.Debug("error reply not sent", "peer", p.id, "topic", topic, "err", err)
	}
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
