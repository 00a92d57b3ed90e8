package node

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/seed0811993b/conclave/codec"
	"github.com/seed0811993b/conclave/transport"
)

// peerState is where a peer incarnation (one boot id) is in its life.
type peerState uint8

const (
	stateAlive  peerState = iota + 1
	stateLeft             // announced its leave
	stateFailed           // declared failed, or replaced by a new boot id
)

// peer is this node's view of one other process: the reliable session
// between them and the link that currently carries it.
//
// The outbound half numbers every message (seq), keeps it until the peer
// acknowledges it, and sends it again on the next link when a connection
// breaks. The inbound half remembers the last sequence number accepted, so
// resent messages are dropped instead of delivered twice. Both halves
// survive reconnections; they end only when the peer leaves, fails or
// restarts, or the node closes, and then everything unacknowledged is
// reported.
type peer struct {
	n              *Node
	id, name, boot string
	inbox          *inbox
	stopInbox      func() // ends inbox.run, and waits for its room, once the node forgets the peer

	// spare holds buffers of acknowledged frames for reuse (guarded by
	// p.mu), taken only under sendMu: a resend, which also holds sendMu,
	// may still be writing a frame that an ack has just dropped.
	spare      [][]byte
	spareBytes int

	// sendMu orders sequenced frames onto the link: a frame's sequence
	// number is assigned and the frame handed to the link under it, and a
	// new link's resend holds it until the backlog is written.
	sendMu  sync.Mutex
	nextSeq uint64 // guarded by sendMu

	mu       sync.Mutex
	state    peerState
	stateErr error // why the peer is no longer alive
	// refusal: the peer refused our key or login on our latest dial, and
	// no link has come up since. It outlives a revival by gossip.
	refusal   error
	addr      netip.AddrPort
	tags      map[string]string
	epoch     uint64 // our outbound stream's id, random per session
	acked     uint64 // cumulative ack received for epoch
	unacked   frameQueue
	queued    int           // bytes of unacked
	room      chan struct{} // closed when unacked shrinks or state changes
	link      *plink        // newest link
	ready     bool          // link has finished its resend: write directly
	dialing   bool
	pending   map[uint64]*call
	gone      time.Time
	interests map[uint64]interestOp // guarded by the node's interest lock

	// inMu serialises accepting and dispatching sequenced frames: during a
	// switch of links two readers may hold frames of the same stream.
	// inEpoch and recvSeq are written under it and read atomically (see
	// inPos) by the goroutine that sends acknowledgements.
	inMu     sync.Mutex
	inEpoch  atomic.Uint64 // the peer's outbound stream being received; 0 while it changes
	recvSeq  atomic.Uint64 // last sequence number accepted from it
	admitted atomic.Uint64 // last sequence number handed over: what is acknowledged

	// Work accepted but waiting for admission (admit.go), guarded by inMu.
	parked      []parkedItem
	parkedBytes int
	admitting   bool          // an admitter runs; new work queues behind it
	parkRoom    chan struct{} // rung when parked work shrinks

	up atomic.Bool // state == stateAlive, readable without p.mu

	resyncPending atomic.Bool // an answer to the peer's resync request waits to start

	answering atomic.Int32  // the peer's requests taken and not yet answered (serve)
	answered  chan struct{} // rung when one is answered

	// maxFrame is the largest frame the peer accepts, from the latest
	// handshake; until then, our own limit.
	maxFrame atomic.Int64

	// ident is the user the peer logged in as on a link it dialled to us,
	// which bounds what it may do here; nil: it proved the cluster key
	// only, a full member. inGossip says gossip knows it.
	ident atomic.Pointer[identity]
	// announced is the user a member that we dialled says it logs in as
	// (iam). It grants nothing; it binds the member's ID and name against
	// other users' logins here (claim.go), as a login to us would.
	announced atomic.Pointer[string]
	inGossip  atomic.Bool

	// gossipDead: gossip declared the peer dead while its link was
	// healthy; the peer fails as soon as that link is lost.
	gossipDead atomic.Bool

	// leaveSent: our Leave has queued its leave notice to the peer.
	leaveSent atomic.Bool

	// stalled counts the link readers waiting for room to park work
	// (waitParkRoom): such a link is quiet because of us, not because the
	// peer went silent. The admitter's waits do not count: the reader goes
	// on counting what arrives meanwhile.
	stalled atomic.Int32

	sent, resent, recv, dups atomic.Uint64
}

// resume applies the peer's hello to the inbound stream. A new epoch means
// the peer started its stream over (it has reported what it dropped), so
// counting restarts just before the first sequence number it will send.
// Returns true when the epoch changed.
func (p *peer) resume(h hello) bool {
	p.inMu.Lock()
	defer p.inMu.Unlock()
	if h.Epoch == p.inEpoch.Load() {
		return false
	}
	fresh := p.inEpoch.Load() == 0
	p.inEpoch.Store(0)
	p.recvSeq.Store(h.FirstSeq - 1)
	p.admitted.Store(h.FirstSeq - 1)
	// Work parked from the old stream was never acknowledged: its sender
	// has reported it.
	clear(p.parked)
	p.parked, p.parkedBytes = p.parked[:0], 0
	p.inEpoch.Store(h.Epoch)
	if fresh && h.FirstSeq > 1 {
		// We lost our state about a stream the peer continues (we had
		// forgotten the peer): ask for its interests again.
		p.n.log.Warn("resuming a stream without its start", "peer", p.id, "first_seq", h.FirstSeq)
		p.n.requestResync(p)
	} else {
		p.n.dropInterests(p)
	}
	return true
}

// inPos returns the inbound stream position to acknowledge, the last
// sequence number handed over; ok is false while it is being changed.
func (p *peer) inPos() (epoch, seq uint64, ok bool) {
	e1 := p.inEpoch.Load()
	s := p.admitted.Load()
	e2 := p.inEpoch.Load()
	return e1, s, e1 != 0 && e1 == e2
}

// outFrame is a sequenced frame kept until acknowledged.
type outFrame struct {
	seq  uint64
	b    []byte
	size int // bytes charged to the queue
}

func newPeer(n *Node, id, name, boot string) *peer {
	p := &peer{
		n: n, id: id, name: name, boot: boot,
		inbox:     newInbox(n.cfg.InboxBytes),
		state:     stateAlive,
		epoch:     newEpoch(),
		nextSeq:   1,
		room:      make(chan struct{}),
		parkRoom:  make(chan struct{}, 1),
		answered:  make(chan struct{}, 1),
		pending:   make(map[uint64]*call),
		interests: make(map[uint64]interestOp),
	}
	p.up.Store(true)
	p.maxFrame.Store(int64(n.cfg.MaxFrameSize))
	return p
}

// newEpoch returns a random non-zero stream id.
func newEpoch() uint64 {
	var b [8]byte
	for {
		rand.Read(b[:])
		if e := binary.LittleEndian.Uint64(b[:]); e != 0 {
			return e
		}
	}
}

// frameOverhead bounds the envelope bytes around topic and body.
const frameOverhead = 48

// send queues one sequenced envelope. Unless control is set it first waits
// for room in the peer's queue (or ctx); control frames are small and must
// not wait behind data. It returns once the frame is queued: delivery is
// guaranteed while both processes live, or reported.
func (p *peer) send(ctx context.Context, e *codec.Envelope, control bool) error {
	return p.sendTail(ctx, e, nil, control)
}

// sendTail is send for an envelope whose body continues with tail: a raw
// payload goes into the frame straight after its bin header (e.Body),
// copied once.
func (p *peer) sendTail(ctx context.Context, e *codec.Envelope, tail []byte, control bool) error {
	size := len(e.Topic) + len(e.Body) + len(tail) + frameOverhead
	if limit := int(p.maxFrame.Load()); size > limit { // size over-counts the envelope: on the safe side
		// Refused before it takes a sequence number: a frame the link
		// cannot carry would stall the stream behind it for good.
		return fmt.Errorf("%w: a message of about %d bytes, %s accepts %d", transport.ErrFrameTooLarge, size, p.name, limit)
	}
	max := p.n.cfg.SendQueueBytes
	for {
		// The sequence number is taken and the frame handed to the link
		// under sendMu, so frames reach the link in sequence order.
		p.sendMu.Lock()
		p.mu.Lock()
		if p.state != stateAlive {
			return p.sendFailedLocked()
		}
		if !control && p.queued > 0 && p.queued+size > max {
			room := p.room
			p.mu.Unlock()
			p.sendMu.Unlock()
			select {
			case <-room:
			case <-ctx.Done():
				return ctx.Err()
			case <-p.n.done:
				return ErrClosed
			}
			continue
		}
		e.Seq = p.nextSeq
		buf := p.spareLocked(size)
		var b []byte
		if size <= encodeLockedMax {
			b = append(codec.AppendEnvelope(buf, e), tail...)
		} else {
			// Copy a large payload without holding up acknowledgements.
			// Only the peer's end can intervene (it waits for sendMu to
			// take the queue), and acknowledgements only make room.
			p.mu.Unlock()
			b = append(codec.AppendEnvelope(buf, e), tail...)
			p.mu.Lock()
			if p.state != stateAlive {
				return p.sendFailedLocked()
			}
		}
		p.nextSeq++
		p.queued += size
		p.unacked.push(outFrame{seq: e.Seq, b: b, size: size})
		var l *plink
		if p.ready {
			l = p.link
		}
		p.mu.Unlock()
		if l != nil {
			l.write(b)
		}
		p.sendMu.Unlock()
		p.sent.Add(1)
		return nil
	}
}

// hasRoom reports whether the peer's queue is under its bound.
func (p *peer) hasRoom() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.queued < p.n.cfg.SendQueueBytes
}

// endedErr is the error for work for a peer that ended or a node that
// closed while the work waited.
func (p *peer) endedErr() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.state != stateAlive {
		return p.deadErr()
	}
	return ErrClosed
}

// waitRoom waits until the peer's queue is under its bound, and reports
// false if the peer ends or the node closes first.
func (p *peer) waitRoom() bool {
	for {
		p.mu.Lock()
		if p.state != stateAlive {
			p.mu.Unlock()
			return false
		}
		if p.queued < p.n.cfg.SendQueueBytes {
			p.mu.Unlock()
			return true
		}
		room := p.room
		p.mu.Unlock()
		select {
		case <-room:
		case <-p.n.done:
			return false
		}
	}
}

// sendFailedLocked lets p.mu and sendMu go and returns the error of a send
// to a peer that is no longer alive.
func (p *peer) sendFailedLocked() error {
	err := p.deadErr()
	p.mu.Unlock()
	p.sendMu.Unlock()
	return err
}

// encodeLockedMax is the largest frame encoded while holding p.mu: one
// lock round instead of two for the common small message, and no long
// copy in the way of the link reader's acknowledgements.
const encodeLockedMax = 64 << 10

// deadErr is the error for a send to a peer that is no longer alive.
// Callers hold p.mu.
func (p *peer) deadErr() error {
	if p.stateErr == nil {
		return &PeerError{Peer: p.id, Reason: "its session restarted", Err: ErrPeerFailed}
	}
	return &PeerError{Peer: p.id, Err: p.stateErr}
}

// applyAck drops the frames the peer has acknowledged and wakes waiting
// senders.
func (p *peer) applyAck(epoch, ack uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if epoch != p.epoch || ack <= p.acked {
		return
	}
	p.acked = ack
	bytes, count := p.unacked.dropThrough(ack, p.keepSpare)
	if count == 0 {
		return
	}
	p.queued -= bytes
	close(p.room)
	p.room = make(chan struct{})
}

// drained reports whether everything sent has been acknowledged, and
// returns a channel that is closed when that may have changed. After our
// leave notice, a lost link counts as drained: the peer closes its end once
// it has taken the notice (everything before it was acknowledged already),
// and a close with our next frames unread can reset the connection before
// its acknowledgement reaches us. At worst the peer sees a failure, not a
// leave.
func (p *peer) drained() (bool, <-chan struct{}) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.unacked.len() == 0 || p.state != stateAlive || (p.leaveSent.Load() && p.link == nil), p.room
}

// readyLink returns the link when it is ready for traffic.
func (p *peer) readyLink() *plink {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ready {
		return p.link
	}
	return nil
}

// end marks the peer no longer alive for reason, closes its link, fails
// its pending requests and reports its unacknowledged one-way messages.
// The outbound stream restarts under a new epoch in case the same process
// is seen again. It returns false if the peer was not alive.
func (p *peer) end(state peerState, err error, reason string) bool {
	p.mu.Lock()
	if p.state != stateAlive {
		p.mu.Unlock()
		return false
	}
	p.state, p.stateErr = state, err
	p.up.Store(false)
	p.gone = time.Now()
	l := p.link
	p.link, p.ready = nil, false
	close(p.room)
	p.room = make(chan struct{})
	p.mu.Unlock()
	if l != nil {
		l.close() // unblocks a sender writing to it, so sendMu comes free
	}

	p.sendMu.Lock()
	p.mu.Lock()
	frames := p.unacked.reset()
	pending := p.pending
	p.queued, p.acked = 0, 0
	p.pending = make(map[uint64]*call)
	p.epoch = newEpoch()
	p.nextSeq = 1
	p.mu.Unlock()
	p.sendMu.Unlock()

	perr := &PeerError{Peer: p.id, Reason: reason, Err: err}
	for _, c := range pending {
		c.finish(reply{err: perr})
	}
	for _, f := range frames {
		p.n.reportFrame(p, f.b, perr)
	}
	return true
}

// revive makes a peer that was declared failed alive again: it was seen
// again under the same boot id, so the process is the same one and its
// inbound stream state still applies. The outbound stream starts a new
// epoch.
func (p *peer) revive() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	// Only a failure can be a false alarm: a process that left or was
	// replaced by a restart never comes back under its boot id.
	if p.state != stateFailed || errors.Is(p.stateErr, ErrPeerRestarted) || errors.Is(p.stateErr, ErrClosed) {
		return false
	}
	p.state, p.stateErr = stateAlive, nil
	p.up.Store(true)
	return true
}

// maxSpareBytes bounds the memory of the frame buffers a peer keeps for
// reuse. Under load an acknowledgement covers up to 2 ms of frames; with
// large messages that is many buffers, and each one not kept is a fresh
// allocation (page faults and GC work: 21% of a 64 KiB sender's CPU at
// 256 KiB). The heartbeat drops them when the peer goes idle (dropSpares).
const maxSpareBytes = 1 << 20

// spareLocked returns an empty buffer with room for size bytes, reusing
// the buffer of an acknowledged frame when one is large enough. Callers
// hold sendMu and p.mu.
func (p *peer) spareLocked(size int) []byte {
	if k := len(p.spare); k > 0 {
		b := p.spare[k-1]
		if cap(b) >= size && cap(b) <= 2*size+frameOverhead {
			p.spare[k-1] = nil
			p.spare = p.spare[:k-1]
			p.spareBytes -= cap(b)
			return b[:0]
		}
	}
	return make([]byte, 0, size)
}

// dropSpares lets the kept frame buffers (and an empty queue's ring) go,
// for a peer nothing was sent to for a while.
func (p *peer) dropSpares() {
	p.mu.Lock()
	clear(p.spare)
	p.spare, p.spareBytes = p.spare[:0], 0
	if p.unacked.len() == 0 {
		p.unacked = frameQueue{} // its ring may have grown to a busy window
	}
	p.mu.Unlock()
}

// keepSpare keeps an acknowledged frame's buffer for reuse, within
// maxSpareBytes. Callers hold p.mu.
func (p *peer) keepSpare(b []byte) {
	if p.spareBytes+cap(b) <= maxSpareBytes {
		p.spare = append(p.spare, b)
		p.spareBytes += cap(b)
	}
}
