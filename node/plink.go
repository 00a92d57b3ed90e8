package node

import (
	"context"
	"errors"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/seed0811993b/conclave/codec"
	"github.com/seed0811993b/conclave/transport"
)

// Acknowledgement policy: a receiver acknowledges after ackBytes of
// sequenced frames, or ackDelay after the first unacknowledged one, which
// keeps acks to a few percent of small-message traffic while a sender's
// queue (megabytes) never waits long for room.
const (
	ackBytes = 32 << 10
	ackDelay = 2 * time.Millisecond
)

// plink is one authenticated connection to a peer and the two goroutines
// that serve it: reader (frames in) and control (hello, resend, acks,
// heartbeats). Sequenced frames are written by the senders themselves.
type plink struct {
	p       *peer
	tl      *transport.Link
	dialer  string // member ID of the side that dialled
	created time.Time

	helloCh chan hello
	kick    chan struct{}
	needAck atomic.Bool
	needPin atomic.Bool
	armed   atomic.Bool
	timer   *time.Timer

	recvd, sentN atomic.Uint64

	// heartbeat bookkeeping, written only by the node's heartbeat goroutine
	hbRecv, hbSent uint64
	hbHeard        atomic.Int64 // unix nanos when frames were last seen arriving

	closeOnce sync.Once
	done      chan struct{}
}

func newPlink(p *peer, tl *transport.Link, dialer string) *plink {
	l := &plink{
		p: p, tl: tl, dialer: dialer, created: time.Now(),
		helloCh: make(chan hello, 1),
		kick:    make(chan struct{}, 1),
		done:    make(chan struct{}),
	}
	l.hbHeard.Store(time.Now().UnixNano())
	l.timer = time.AfterFunc(time.Hour, func() {
		l.armed.Store(false)
		l.needAck.Store(true)
		signal(l.kick)
	})
	l.timer.Stop()
	return l
}

// start runs the link's goroutines.
func (l *plink) start() {
	n := l.p.n
	n.wg.Add(2)
	go func() { defer n.wg.Done(); l.control() }()
	go func() { defer n.wg.Done(); l.read() }()
}

// write hands a frame to the connection's writer. A failure means the
// link is dying; its reader notices and the session moves to a new link.
//
// The writer's queue has room for everything the peer's bound admits, so
// a frame waits for room only when the peer has stopped reading (its
// socket is full) behind more control frames than that. Callers hold
// sendMu and may hold the node's interest lock, so the wait is bounded:
// after HeartbeatTimeout the link is dropped, and what it carried stays
// queued for the next one.
func (l *plink) write(b []byte) {
	err := l.tl.Send(noWait, b)
	if errors.Is(err, context.Canceled) {
		ctx, cancel := context.WithTimeout(context.Background(), l.p.n.cfg.HeartbeatTimeout)
		err = l.tl.Send(ctx, b)
		cancel()
		if errors.Is(err, context.DeadlineExceeded) {
			l.p.n.log.Warn("dropping a link whose peer is not reading", "peer", l.p.id, "waited", l.p.n.cfg.HeartbeatTimeout)
			l.close()
		}
	}
	if err == nil {
		l.sentN.Add(1)
	}
}

// noWait is a context that has ended: a Send with it queues only if
// there is room at once.
var noWait = func() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}()

// writeEnvelope encodes and writes an unsequenced envelope.
func (l *plink) writeEnvelope(e *codec.Envelope) {
	l.write(codec.AppendEnvelope(nil, e))
}

// close closes the connection; safe to call many times.
func (l *plink) close() {
	l.closeOnce.Do(func() {
		close(l.done)
		l.timer.Stop()
		l.tl.Close()
	})
}

// control sends this side's hello, waits for the peer's, resends what the
// peer has not acknowledged, marks the link ready and then sends acks and
// heartbeats when kicked.
func (l *plink) control() {
	p := l.p
	p.mu.Lock()
	h := hello{Epoch: p.epoch, FirstSeq: p.acked + 1, AckEpoch: p.inEpoch.Load(), Ack: p.admitted.Load()}
	p.mu.Unlock()
	l.writeEnvelope(&codec.Envelope{Kind: codec.KindControl, Topic: []byte(ctlHello), Body: marshalControl(&h)})

	var peerHello hello
	select {
	case peerHello = <-l.helloCh:
	case <-l.done:
		return
	}

	p.sendMu.Lock()
	p.applyAck(peerHello.AckEpoch, peerHello.Ack)
	p.mu.Lock()
	current := p.link == l && p.state == stateAlive
	var backlog []outFrame
	if current {
		backlog = p.unacked.frames()
	}
	p.mu.Unlock()
	for _, f := range backlog {
		l.write(f.b)
	}
	p.resent.Add(uint64(len(backlog)))
	p.mu.Lock()
	if p.link == l && p.state == stateAlive {
		p.ready = true
	}
	p.mu.Unlock()
	p.sendMu.Unlock()
	p.n.changed()

	for {
		select {
		case <-l.kick:
		case <-l.done:
			return
		}
		if l.needAck.Swap(false) {
			if epoch, seq, ok := p.inPos(); ok {
				l.writeEnvelope(&codec.Envelope{Kind: codec.KindAck, Ack: seq, ID: epoch})
			}
		}
		if l.needPin.Swap(false) {
			l.writeEnvelope(&codec.Envelope{Kind: codec.KindControl, Topic: []byte(ctlPing)})
		}
	}
}

// read receives frames until the link fails, then hands the session to the
// next link.
func (l *plink) read() {
	p, n := l.p, l.p.n
	err := l.readFrames()
	l.close()
	p.mu.Lock()
	active := p.link == l
	if active {
		p.link, p.ready = nil, false
		if p.leaveSent.Load() {
			// A Leave may be waiting for this peer (drained).
			close(p.room)
			p.room = make(chan struct{})
		}
	}
	alive := p.state == stateAlive
	p.mu.Unlock()
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, transport.ErrClosed) && n.ctx.Err() == nil {
		n.log.Debug("link down", "peer", p.id, "err", err)
	}
	if active && alive && p.gossipDead.Load() {
		n.peerDown(p, stateFailed, ErrPeerFailed, "gossip declared it dead and its link is gone")
		return
	}
	if !active || !alive || n.closing() {
		return
	}
	p.mu.Lock()
	canDial := p.addr.IsValid()
	p.mu.Unlock()
	if canDial {
		n.dial(p, 0)
		return
	}
	// A client, or a peer gossip never told us about: only it can dial us
	// again. If it does not, soon, it is gone, and what it left pending
	// must fail rather than wait forever.
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		t := time.NewTimer(linkOnlyGrace)
		defer t.Stop()
		select {
		case <-t.C:
		case <-n.done:
			return
		}
		if p.readyLink() == nil && !p.inGossip.Load() {
			n.peerDown(p, stateFailed, ErrPeerFailed, "its link is gone and it did not dial again")
		}
	}()
}

// linkOnlyGrace is how long a peer we cannot dial (a client) has to dial
// again after its link breaks: longer than a client's longest redial
// backoff.
const linkOnlyGrace = dialBackoffMax + 2*time.Second

// readFrames is read's loop; it returns why the link ended.
func (l *plink) readFrames() error {
	var st readState
	st.first = true
	var batch [][]byte
	for {
		// No context: a cancellable one costs a timer per read, and the
		// link is closed when the node or the session ends.
		var err error
		batch, err = l.tl.RecvBatch(context.Background(), batch[:0], readBatch)
		if err != nil {
			return err
		}
		l.recvd.Add(uint64(len(batch)))
		for i, b := range batch {
			batch[i] = nil
			if stop, err := l.frame(b, &st); stop || err != nil {
				st.release(l.p)
				return err
			}
		}
		st.release(l.p)
		st.ackIfDue(l)
	}
}

// readBatch is the most frames taken from the link per read: enough to
// spread the read's synchronisation over a burst, few enough that acks
// stay timely.
const readBatch = 64

// readState is what the reader carries from frame to frame.
type readState struct {
	first        bool // the next frame must be the peer's hello
	pendingBytes int  // sequenced bytes accepted since the last ack kick

	// The sequenced frames of one read are accepted under one hold of
	// p.inMu, and their one-way messages go to the inbox in one step:
	// per message, the inbox's lock was a cache line shared with its
	// consumer on the other core.
	locked    bool    // this reader holds p.inMu
	held      []inMsg // accepted one-way messages not yet in the inbox
	heldBytes int
	heldSeq   uint64 // the sequence number of the last one
}

// maxHeldBytes is when held messages go to the inbox without waiting for
// the end of the read, so the inbox bound still means something.
const maxHeldBytes = 256 << 10

// lock takes p.inMu for the rest of the read.
func (st *readState) lock(p *peer) {
	if !st.locked {
		p.inMu.Lock()
		st.locked = true
	}
}

// hold queues m, which has sequence number seq, for the inbox. Callers
// hold p.inMu (lock).
func (st *readState) hold(p *peer, seq uint64, m inMsg) {
	st.held = append(st.held, m)
	st.heldBytes += m.size
	st.heldSeq = seq
	if st.heldBytes >= maxHeldBytes {
		st.flush(p)
	}
}

// flush hands the held messages to the inbox, in order, or parks them
// when it has no room (admit.go). Callers hold p.inMu.
func (st *readState) flush(p *peer) {
	if len(st.held) == 0 {
		return
	}
	if !p.inbox.tryPutAll(st.held, st.heldBytes) {
		p.parkLocked(parkedItem{seq: st.heldSeq, size: st.heldBytes, held: slices.Clone(st.held)})
	}
	clear(st.held)
	st.held, st.heldBytes = st.held[:0], 0
}

// release flushes and lets p.inMu go: at the end of a read, and before
// anything that takes p.inMu itself or ends the peer. Unless work is
// parked, everything accepted has now been handed over.
func (st *readState) release(p *peer) {
	if !st.locked {
		return
	}
	st.flush(p)
	if !p.admitting {
		p.admitted.Store(p.recvSeq.Load())
	}
	p.inMu.Unlock()
	st.locked = false
}

// ackIfDue asks for an acknowledgement once enough has arrived, or arms
// the delayed-ack timer.
func (st *readState) ackIfDue(l *plink) {
	if st.pendingBytes == 0 {
		return
	}
	if st.pendingBytes >= ackBytes {
		st.pendingBytes = 0
		l.needAck.Store(true)
		signal(l.kick)
	} else if !l.armed.Swap(true) {
		l.timer.Reset(ackDelay)
	}
}

// frame handles one received frame; stop means the link is done.
func (l *plink) frame(b []byte, st *readState) (stop bool, err error) {
	p, n := l.p, l.p.n
	var e codec.Envelope
	if err := codec.ParseEnvelope(b, &e, codec.Limits{}); err != nil {
		return true, n.protocolError(p, err)
	}
	if st.first {
		st.first = false
		if e.Kind != codec.KindControl || string(e.Topic) != ctlHello || e.Seq != 0 {
			return true, n.protocolError(p, errors.New("first envelope is not a hello"))
		}
		var h hello
		if err := codec.Msgpack.Unmarshal(e.Body, &h); err != nil || h.Epoch == 0 || h.FirstSeq == 0 {
			return true, n.protocolError(p, errors.New("malformed hello"))
		}
		st.release(p)
		p.resume(h)
		l.helloCh <- h
		return false, nil
	}
	if e.Seq == 0 {
		switch {
		case e.Kind == codec.KindAck:
			p.applyAck(e.ID, e.Ack)
		case e.Kind == codec.KindControl && string(e.Topic) == ctlPing:
		case e.Kind == codec.KindControl && string(e.Topic) == ctlLeave:
			st.release(p)
			n.peerLeft(p, "it closed")
			return true, nil
		default:
			return true, n.protocolError(p, errors.New("unsequenced "+e.Kind.String()+" envelope"))
		}
		return false, nil
	}
	st.lock(p)
	if p.admitting {
		// Parked work goes first; a reader that has to wait for room to
		// park does so before it accepts the frame, so that nothing
		// accepted is lost if its link closes meanwhile.
		if err := st.waitParkRoom(p, l, len(b)); err != nil {
			return true, err
		}
	}
	cur := p.recvSeq.Load()
	if e.Seq <= cur {
		p.dups.Add(1)
		return false, nil
	}
	if e.Seq != cur+1 {
		st.release(p)
		return true, n.protocolError(p, errors.New("sequence gap"))
	}
	p.recvSeq.Store(e.Seq)
	p.recv.Add(1)
	st.pendingBytes += len(b)
	if p.admitting && e.Kind != codec.KindReply && e.Kind != codec.KindError {
		p.park(l, e, len(b))
		return false, nil
	}
	err = n.dispatch(p, &e, len(b), st)
	if errors.Is(err, errPark) {
		p.park(l, e, len(b))
		return false, nil
	}
	if err != nil {
		return true, err
	}
	if e.Kind == codec.KindControl && string(e.Topic) == ctlLeave {
		st.release(p)
		// The peer's Leave waits for this acknowledgement, which the
		// delayed-ack timer would send after the link is gone.
		l.ackNow()
		n.peerLeft(p, "it left the cluster")
		return true, nil
	}
	return false, nil
}

// ackNow writes an acknowledgement of everything accepted so far and waits
// for it to reach the connection, which closes next: the leaving peer's
// Leave waits for this very ack, so a loaded machine gets a second rather
// than a tenth of one.
func (l *plink) ackNow() {
	epoch, seq, ok := l.p.inPos()
	if !ok {
		return
	}
	l.writeEnvelope(&codec.Envelope{Kind: codec.KindAck, Ack: seq, ID: epoch})
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	l.tl.Flush(ctx)
}

// heardWithin reports whether frames arrived on the link within d, as of
// the last heartbeat tick.
func (l *plink) heardWithin(d time.Duration) bool {
	return time.Since(time.Unix(0, l.hbHeard.Load())) < d
}
