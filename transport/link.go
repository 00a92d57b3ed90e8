package transport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/seed0811993b/conclave/auth"
	"github.com/seed0811993b/conclave/internal/frame"
)

// Link is a framed message channel over one connection. Frames use Python
// multiprocessing's header; after a native handshake they travel inside
// sealed records.
//
// Send may be called from many goroutines at once: frames are queued and one
// writer goroutine writes them, many per system call when senders outpace the
// network and at once when the link is idle. Recv may also be called
// concurrently; each frame goes to exactly one caller. Close unblocks every
// waiting call.
type Link struct {
	conn    net.Conn
	state   auth.ConnectionState
	maxSend int
	limit   int // send queue bound in bytes

	// mu guards the send queue and the fields below it.
	mu      sync.Mutex
	queued  []byte        // encoded frames waiting for the writer
	cuts    []int         // offsets in queued where large payloads start and end
	writing bool          // the writer holds a batch it has not finished writing
	waiters int           // callers waiting on changed
	changed chan struct{} // closed (and replaced) when the writer makes progress
	stats   Stats         // the send-side counters

	wake       chan struct{}  // tells the writer the queue went from empty to not
	vectored   vectoredWriter // conn, when it can start records where asked
	writerDone chan struct{}

	// recvMu admits one Recv at a time; the holder owns rd. A Recv that
	// finds it taken waits on recvFree (with its context), counted in
	// recvWaiting, so that the common case, one reader, costs a mutex.
	recvMu         sync.Mutex
	recvFree       chan struct{}
	recvWaiting    atomic.Int32
	rd             frameReader
	recvDeadlineOn bool
	framesRecv     atomic.Uint64
	bytesRecv      atomic.Uint64

	closed    chan struct{}
	closeOnce sync.Once
	err       atomic.Pointer[error] // the first failure, ErrClosed after Close
}

// Stats counts a Link's traffic.
type Stats struct {
	FramesSent, BytesSent uint64 // queued by Send (payload bytes)
	FramesRecv, BytesRecv uint64 // returned by Recv (payload bytes)
	Writes                uint64 // batches handed to the connection
}

// NewLink runs the handshake on conn when it has one (an *auth.Conn, or
// anything with HandshakeContext and ConnectionState), bounded by ctx, and
// returns a Link over it. Frame limits come from the handshake; a plain
// connection uses auth.DefaultMaxFrameSize both ways. On error conn is closed.
func NewLink(ctx context.Context, conn net.Conn, cfg *Config) (*Link, error) {
	type handshaker interface {
		HandshakeContext(context.Context) error
	}
	if h, ok := conn.(handshaker); ok {
		if err := h.HandshakeContext(ctx); err != nil {
			_ = conn.Close()
			return nil, err
		}
	}
	st := auth.ConnectionState{MaxFrameSize: auth.DefaultMaxFrameSize, PeerMaxFrameSize: auth.DefaultMaxFrameSize}
	if s, ok := conn.(interface{ ConnectionState() auth.ConnectionState }); ok {
		st = s.ConnectionState()
	}
	l := &Link{
		conn:       conn,
		state:      st,
		maxSend:    st.PeerMaxFrameSize,
		limit:      cfg.sendQueueBytes(),
		changed:    make(chan struct{}),
		wake:       make(chan struct{}, 1),
		writerDone: make(chan struct{}),
		recvFree:   make(chan struct{}, 1),
		rd:         frameReader{r: conn, max: st.MaxFrameSize},
		closed:     make(chan struct{}),
	}
	if v, ok := conn.(vectoredWriter); ok && st.Sealed {
		l.vectored = v
	}
	go l.writeLoop()
	return l, nil
}

// vectoredWriter is an *auth.Conn: each buffer starts a new sealed record.
type vectoredWriter interface {
	WriteVectored(bufs [][]byte) (int, error)
}

// ConnectionState returns the handshake's outcome: mode, cipher, peer name
// and frame limits.
func (l *Link) ConnectionState() auth.ConnectionState { return l.state }

// LocalAddr returns the local network address.
func (l *Link) LocalAddr() net.Addr { return l.conn.LocalAddr() }

// RemoteAddr returns the remote network address.
func (l *Link) RemoteAddr() net.Addr { return l.conn.RemoteAddr() }

// Send queues p as one frame. It waits while the send queue is full, until
// there is room, ctx ends or the Link fails. p may be reused once Send
// returns. A frame over the peer's limit fails with ErrFrameTooLarge and
// leaves the Link usable.
func (l *Link) Send(ctx context.Context, p []byte) error {
	if len(p) > l.maxSend {
		return fmt.Errorf("%w: %d bytes, peer accepts %d", ErrFrameTooLarge, len(p), l.maxSend)
	}
	need := frame.HeaderLen(len(p)) + len(p)
	for {
		l.mu.Lock()
		if err := l.failure(); err != nil {
			l.mu.Unlock()
			return err
		}
		if len(l.queued) == 0 || len(l.queued)+need <= l.limit {
			wasEmpty := len(l.queued) == 0
			l.queued = frame.AppendHeader(l.queued, len(p))
			if len(p) >= directRead && l.vectored != nil {
				l.cuts = append(l.cuts, len(l.queued), len(l.queued)+len(p))
			}
			l.queued = append(l.queued, p...)
			l.stats.FramesSent++
			l.stats.BytesSent += uint64(len(p))
			l.mu.Unlock()
			if wasEmpty {
				select {
				case l.wake <- struct{}{}:
				default:
				}
			}
			return nil
		}
		if err := l.waitLocked(ctx); err != nil {
			return err
		}
	}
}

// waitLocked releases mu and waits for the writer to make progress.
func (l *Link) waitLocked(ctx context.Context) error {
	l.waiters++
	ch := l.changed
	l.mu.Unlock()
	var err error
	select {
	case <-ch:
	case <-ctx.Done():
		err = ctx.Err()
	case <-l.closed:
		err = l.failure()
	}
	l.mu.Lock()
	l.waiters--
	l.mu.Unlock()
	return err
}

// Flush waits until every frame queued so far has been handed to the
// connection, or ctx ends, or the Link fails.
func (l *Link) Flush(ctx context.Context) error {
	for {
		l.mu.Lock()
		if err := l.failure(); err != nil {
			l.mu.Unlock()
			return err
		}
		if len(l.queued) == 0 && !l.writing {
			l.mu.Unlock()
			return nil
		}
		if err := l.waitLocked(ctx); err != nil {
			return err
		}
	}
}

// broadcastLocked wakes everyone waiting for the writer's progress.
func (l *Link) broadcastLocked() {
	if l.waiters > 0 {
		close(l.changed)
		l.changed = make(chan struct{})
	}
}

func (l *Link) writeLoop() {
	defer close(l.writerDone)
	var spare []byte
	var spareCuts []int
	var bufs [][]byte
	for {
		select {
		case <-l.wake:
		case <-l.closed:
			return
		}
		l.mu.Lock()
		if len(l.queued) == 0 {
			// Nothing to take. Swapping anyway would leave the queue and the
			// spare sharing one array.
			l.mu.Unlock()
			continue
		}
		batch, cuts := l.queued, l.cuts
		l.queued, l.cuts = spare[:0], spareCuts[:0]
		l.writing = true
		l.stats.Writes++
		l.broadcastLocked()
		l.mu.Unlock()
		var err error
		if len(cuts) > 0 {
			// Large payloads get records of their own, so the receiver
			// decrypts them straight into the payload's memory.
			bufs = splitAt(bufs[:0], batch, cuts)
			_, err = l.vectored.WriteVectored(bufs)
			clear(bufs)
		} else {
			_, err = l.conn.Write(batch)
		}
		if err != nil {
			l.fail(fmt.Errorf("transport: write: %w", err))
			return
		}
		spareCuts = cuts[:0]
		// Keep the buffer for the next batch: regrowing it per batch costs
		// more than the payload. Only a buffer inflated by one huge frame is
		// let go.
		spare = batch[:0]
		if cap(spare) > 2*l.limit {
			spare = nil
		}
		l.mu.Lock()
		l.writing = false
		l.broadcastLocked()
		l.mu.Unlock()
	}
}

// splitAt appends to dst the pieces of b between consecutive offsets.
func splitAt(dst [][]byte, b []byte, offsets []int) [][]byte {
	start := 0
	for _, o := range offsets {
		dst = append(dst, b[start:o])
		start = o
	}
	return append(dst, b[start:])
}

// Recv returns the next frame. It waits until one arrives, ctx ends or the
// Link fails. A Recv cut short by ctx loses nothing: the next Recv carries on
// with the same frame. After the peer closes cleanly Recv returns io.EOF.
func (l *Link) Recv(ctx context.Context) ([]byte, error) {
	if err := l.lockRecv(ctx); err != nil {
		return nil, err
	}
	defer l.releaseRecv()
	return l.recvLocked(ctx)
}

// RecvBatch is Recv for a reader that can take several frames at once: it
// waits for the next frame as Recv does, then appends it and up to max-1
// further frames that have already arrived to dst, and returns the
// extended slice. Reading a burst of small frames this way costs one
// synchronisation per batch rather than per frame.
func (l *Link) RecvBatch(ctx context.Context, dst [][]byte, max int) ([][]byte, error) {
	if err := l.lockRecv(ctx); err != nil {
		return dst, err
	}
	defer l.releaseRecv()
	p, err := l.recvLocked(ctx)
	if err != nil {
		return dst, err
	}
	dst = append(dst, p)
	for n := 1; n < max && l.rd.buffered(); n++ {
		p, err := l.recv()
		if err != nil {
			break // the Link has failed; the next call reports it
		}
		dst = append(dst, p)
	}
	return dst, nil
}

// lockRecv takes the right to read, waiting for a Recv in progress.
func (l *Link) lockRecv(ctx context.Context) error {
	if l.recvMu.TryLock() {
		return nil
	}
	return l.waitRecv(ctx)
}

// recvLocked reads the next frame; the caller holds recvMu.
func (l *Link) recvLocked(ctx context.Context) ([]byte, error) {
	if err := l.failure(); err != nil {
		return nil, err
	}
	if ctx.Done() != nil {
		return l.recvCtx(ctx)
	}
	if l.recvDeadlineOn {
		_ = l.conn.SetReadDeadline(time.Time{})
		l.recvDeadlineOn = false
	}
	return l.recv()
}

// waitRecv waits for the Recv in progress to finish, then takes recvMu.
func (l *Link) waitRecv(ctx context.Context) error {
	l.recvWaiting.Add(1)
	defer l.recvWaiting.Add(-1)
	for {
		// Checked after counting ourselves: a holder that unlocked before
		// seeing the count left the mutex free for this TryLock.
		if l.recvMu.TryLock() {
			return nil
		}
		select {
		case <-l.recvFree:
		case <-ctx.Done():
			return ctx.Err()
		case <-l.closed:
			return l.failure()
		}
	}
}

// releaseRecv ends a Recv and wakes one waiting Recv, if any.
func (l *Link) releaseRecv() {
	l.recvMu.Unlock()
	if l.recvWaiting.Load() > 0 {
		select {
		case l.recvFree <- struct{}{}:
		default:
		}
	}
}

// recvCtx bounds a read by ctx through the connection's read deadline, so
// that no goroutine is needed per call.
func (l *Link) recvCtx(ctx context.Context) ([]byte, error) {
	d, _ := ctx.Deadline()
	_ = l.conn.SetReadDeadline(d)
	l.recvDeadlineOn = true
	fired := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		_ = l.conn.SetReadDeadline(time.Unix(1, 0))
		close(fired)
	})
	p, err := l.recv()
	if !stop() {
		<-fired
	}
	if err != nil && isTimeout(err) {
		// The socket's deadline can fire a moment before ctx reports it.
		if cerr := ctx.Err(); cerr != nil {
			return nil, cerr
		}
		if !d.IsZero() && !time.Now().Before(d) {
			return nil, context.DeadlineExceeded
		}
	}
	return p, err
}

func (l *Link) recv() ([]byte, error) {
	p, err := l.rd.next()
	if err != nil {
		if isTimeout(err) {
			return nil, err // the reader resumes on the next call
		}
		if !errors.Is(err, io.EOF) {
			err = fmt.Errorf("transport: recv: %w", err)
		}
		l.fail(err)
		return nil, l.failure()
	}
	l.framesRecv.Add(1)
	l.bytesRecv.Add(uint64(len(p)))
	return p, nil
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// Stats returns the Link's counters.
func (l *Link) Stats() Stats {
	l.mu.Lock()
	s := l.stats
	l.mu.Unlock()
	s.FramesRecv, s.BytesRecv = l.framesRecv.Load(), l.bytesRecv.Load()
	return s
}

// Err returns the error that ended the Link, or nil while it is up.
func (l *Link) Err() error { return l.failure() }

// Done returns a channel closed when the Link fails or is closed.
func (l *Link) Done() <-chan struct{} { return l.closed }

func (l *Link) failure() error {
	if p := l.err.Load(); p != nil {
		return *p
	}
	return nil
}

// fail records the first error, then tears the connection down.
func (l *Link) fail(err error) {
	l.closeOnce.Do(func() {
		l.err.Store(&err)
		close(l.closed)
		_ = l.conn.Close()
	})
}

// Close closes the Link, dropping frames not yet written (call Flush first to
// send them), and waits for its writer to stop. Calls after the first return
// nil.
func (l *Link) Close() error {
	l.fail(ErrClosed)
	<-l.writerDone
	return nil
}
