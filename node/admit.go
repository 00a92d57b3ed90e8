package node

import (
	"errors"

	"github.com/seed0811993b/conclave/codec"
)

// Admission of received work.
//
// A link's reader must never wait for anything that needs the same link's
// acknowledgements: they arrive on that link, behind the frame it is
// stuck on. It did wait, for room in the inbox and for a request slot, and
// two nodes whose handlers answer each other with Send could stop for good:
// B's handler waits for room towards A, A's acknowledgements wait in B's
// socket behind a reader that waits for B's handler.
//
// So the reader hands work over only when that cannot wait: one-way
// messages to an inbox with room, requests to a free worker slot when the
// peer's queue has room for the reply. When it cannot, the work is parked,
// in order, with everything after it, and an admitter goroutine hands it
// over, waiting as needed, while the reader goes on reading (and applying
// the peer's acknowledgements, and completing replies). Parked work is not
// acknowledged until it is handed over, so a peer can have at most its own
// queue bound parked here; past parkLimit (a peer that ignores its bound)
// the reader stops reading that peer, as it used to.
//
// A parked item is lost only when its peer ends or the node closes; it was
// never acknowledged, so its sender reports it (Config.Undeliverable, or a
// failed request).

// parkedItem is received work waiting for admission.
type parkedItem struct {
	seq   uint64 // the last sequence number it covers
	epoch uint64 // the stream it came on
	size  int
	held  []inMsg         // one-way messages for the inbox, or
	e     *codec.Envelope // one sequenced envelope to dispatch
	l     *plink          // the link e came on (a leave is acknowledged on it)
}

// errPark tells the reader that work would have to wait, and is parked.
var errPark = errors.New("work must wait for admission")

// parkLimit bounds the bytes parked for one peer.
func (n *Node) parkLimit() int {
	return 2 * max(n.cfg.SendQueueBytes, n.cfg.InboxBytes)
}

// parkLocked queues it for the admitter, starting one if none runs.
// Callers hold p.inMu.
func (p *peer) parkLocked(it parkedItem) {
	it.epoch = p.inEpoch.Load()
	p.parked = append(p.parked, it)
	p.parkedBytes += it.size
	if !p.admitting {
		p.admitting = true
		p.n.wg.Add(1)
		go p.n.admit(p)
	}
}

// park parks a copy of e, which came on l in a frame of size bytes.
// Callers hold p.inMu.
func (p *peer) park(l *plink, e codec.Envelope, size int) {
	p.parkLocked(parkedItem{seq: e.Seq, size: size, e: &e, l: l})
}

// admit hands p's parked work over in order until none is left.
func (n *Node) admit(p *peer) {
	defer n.wg.Done()
	sinceAck := 0
	for {
		p.inMu.Lock()
		if len(p.parked) == 0 {
			p.admitting = false
			p.admitted.Store(p.recvSeq.Load())
			p.inMu.Unlock()
			p.ackSoon()
			return
		}
		it := p.parked[0]
		p.parked[0] = parkedItem{}
		p.parked = p.parked[1:]
		p.parkedBytes -= it.size
		p.inMu.Unlock()
		signal(p.parkRoom)
		stop, err := n.admitItem(p, it)
		if err != nil || stop {
			p.inMu.Lock()
			p.parked, p.parkedBytes, p.admitting = nil, 0, false
			p.inMu.Unlock()
			signal(p.parkRoom)
			return
		}
		p.inMu.Lock()
		if p.inEpoch.Load() == it.epoch && it.seq > p.admitted.Load() {
			p.admitted.Store(it.seq)
		}
		p.inMu.Unlock()
		if sinceAck += it.size; sinceAck >= ackBytes {
			sinceAck = 0
			p.ackSoon()
		}
	}
}

// admitItem hands one parked item over, waiting as needed. stop means the
// peer has left.
func (n *Node) admitItem(p *peer, it parkedItem) (stop bool, err error) {
	if it.held != nil {
		return false, p.inbox.putAll(n.ctx, p.inbox.gone, it.held, it.size)
	}
	if it.e.Kind == codec.KindControl && string(it.e.Topic) == ctlLeave {
		p.inMu.Lock()
		if p.inEpoch.Load() == it.epoch {
			p.admitted.Store(it.seq)
		}
		p.inMu.Unlock()
		it.l.ackNow()
		n.peerLeft(p, "it left the cluster")
		return true, nil
	}
	return false, n.dispatch(p, it.e, it.size, nil)
}

// ackSoon has p's current link acknowledge what has been admitted.
func (p *peer) ackSoon() {
	if l := p.readyLink(); l != nil {
		l.needAck.Store(true)
		signal(l.kick)
	}
}

// waitParkRoom waits, with p.inMu released, until size more bytes may be
// parked for p, the admitter has finished, or the link or node ends.
// Callers hold p.inMu through st.
func (st *readState) waitParkRoom(p *peer, l *plink, size int) error {
	limit := p.n.parkLimit()
	for p.admitting && p.parkedBytes > 0 && p.parkedBytes+size > limit {
		st.release(p)
		p.stalled.Add(1)
		select {
		case <-p.parkRoom:
		case <-l.done:
		case <-p.n.done:
		}
		p.stalled.Add(-1)
		select {
		case <-l.done:
			return errLinkClosed
		case <-p.n.done:
			return ErrClosed
		default:
		}
		st.lock(p)
	}
	return nil
}

// errLinkClosed ends a reader whose link closed while it waited.
var errLinkClosed = errors.New("node: link closed")
