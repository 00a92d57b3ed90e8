package auth

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/seed0811993b/conclave/internal/frame"
)

// ConnectionState describes a finished handshake.
type ConnectionState struct {
	// HandshakeComplete is true once the handshake has succeeded.
	HandshakeComplete bool
	// Mode is the handshake that ran.
	Mode Mode
	// Version is the negotiated protocol version (1 for conclave/1; 0 in
	// ModePython, whose protocol has no version).
	Version uint8
	// CipherSuite seals the records; zero in ModePython.
	CipherSuite CipherSuite
	// Sealed reports whether traffic after the handshake is encrypted and
	// authenticated. False in ModePython: its frames travel in plaintext.
	Sealed bool
	// Mechanism is what the native handshake proved: MechanismKey,
	// MechanismUser or MechanismKeyAndUser. Empty in ModePython.
	Mechanism string
	// PeerName is the name the peer announced and proved along with the key.
	// Any key holder may claim any name. Empty in ModePython.
	PeerName string
	// PeerUser, PeerRoles and PeerTopics are the user a client logged in as
	// and that user's roles and topic rules in the credential store, on the
	// server's side of a user login; empty otherwise. The name is proven:
	// the client knew the user's password.
	PeerUser   string
	PeerRoles  []string
	PeerTopics TopicRules
	// PythonDigest is the digest a ModePython peer used: "sha256", or "md5"
	// for a legacy peer admitted by Config.PythonLegacyMD5.
	PythonDigest string
	// MaxFrameSize is the largest frame this side accepts.
	MaxFrameSize int
	// PeerMaxFrameSize is the largest frame the peer accepts: senders must
	// stay under it. In ModePython it equals MaxFrameSize.
	PeerMaxFrameSize int
}

// Conn is a connection secured by a conclave handshake. It wraps a net.Conn
// as crypto/tls.Conn does and is itself a net.Conn: the handshake runs on
// first Read or Write, or explicitly with HandshakeContext.
//
// After a native handshake every byte is carried in sealed records; in
// ModePython bytes pass through unchanged. One Read and one Write may run
// concurrently with each other and with Close; concurrent Reads (or Writes)
// are serialized.
type Conn struct {
	conn     net.Conn
	cfg      *Config
	isClient bool

	// hsMu serializes handshakes; hsErr and state are written once under it
	// before hsDone is set.
	hsMu   sync.Mutex
	hsDone atomic.Bool
	hsErr  error
	// spoke: a whole handshake message from the peer has arrived.
	spoke atomic.Bool
	state ConnectionState

	// inMu guards the reading side.
	inMu    sync.Mutex
	in      halfConn
	rawIn   []byte // ciphertext read but not yet opened is rawIn[inR:inW]
	inR     int
	inW     int
	pending []byte // plaintext opened but not yet returned
	inErr   error  // sticky: io.EOF after close_notify, or a protocol failure

	// outMu guards the writing side.
	outMu   sync.Mutex
	out     halfConn
	outBuf  []byte
	outTail []byte // sealed bytes a timed-out Write left unsent; sent first next time
	outErr  error  // sticky: any write failure other than a timeout

	closeOnce sync.Once
	closeErr  error
}

var _ net.Conn = (*Conn)(nil)

// Client returns the dialing side of a handshake over conn. It does no I/O.
func Client(conn net.Conn, cfg *Config) *Conn {
	return &Conn{conn: conn, cfg: cfg, isClient: true}
}

// Server returns the accepting side of a handshake over conn. It does no I/O.
func Server(conn net.Conn, cfg *Config) *Conn {
	return &Conn{conn: conn, cfg: cfg}
}

// Handshake runs the handshake if it has not run yet; see HandshakeContext.
func (c *Conn) Handshake() error { return c.HandshakeContext(context.Background()) }

// HandshakeContext runs the handshake once and caches its result. It is
// bounded by ctx and by Config.HandshakeTimeout, whichever ends first;
// cancelling ctx aborts it. A failed handshake closes the connection.
func (c *Conn) HandshakeContext(ctx context.Context) error {
	if c.hsDone.Load() {
		return c.hsErr
	}
	c.hsMu.Lock()
	defer c.hsMu.Unlock()
	if c.hsDone.Load() {
		return c.hsErr
	}
	c.hsErr = c.handshake(ctx)
	c.hsDone.Store(true)
	return c.hsErr
}

func (c *Conn) handshake(ctx context.Context) (err error) {
	if err := c.cfg.check(); err != nil {
		_ = c.conn.Close()
		return err
	}
	deadline := time.Now().Add(c.cfg.handshakeTimeout())
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	_ = c.conn.SetDeadline(deadline)
	interrupted := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		_ = c.conn.SetDeadline(time.Unix(1, 0))
		close(interrupted)
	})
	defer func() {
		if !stop() {
			<-interrupted   // the interrupt must not land after we clear the deadline
			if err != nil { // a handshake that finished stands, whatever ctx did since
				err = handshakeCtxErr(ctx)
			}
		} else if isTimeout(err) {
			err = fmt.Errorf("%w after %v", ErrHandshakeTimeout, c.cfg.handshakeTimeout())
		}
		if err != nil {
			c.cfg.logger().Debug("auth: handshake failed", "mode", c.cfg.Mode.String(),
				"client", c.isClient, "remote", c.conn.RemoteAddr().String(), "err", err)
			_ = c.conn.Close()
			return
		}
		_ = c.conn.SetDeadline(time.Time{})
	}()

	h := c.newHandshaker()
	err = c.run(h)
	if r, ok := h.(interface{ release() }); ok {
		r.release() // a handshake cut short between steps holds state to drop
	}
	if a, ok := h.(interface{ abandon() }); ok && err != nil {
		a.abandon() // a login the handshake started frees its place at once
	}
	if err != nil {
		return err
	}
	res := h.result()
	c.state = res.state
	c.state.HandshakeComplete = true
	if res.state.Sealed {
		if err := c.in.init(res.state.CipherSuite, res.readSecret); err != nil {
			return err
		}
		if err := c.out.init(res.state.CipherSuite, res.writeSecret); err != nil {
			return err
		}
	}
	return nil
}

// handshakeCtxErr reports a handshake that ctx cut short.
func handshakeCtxErr(ctx context.Context) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("%w: %w", ErrHandshakeTimeout, ctx.Err())
	}
	return fmt.Errorf("auth: handshake: %w", ctx.Err())
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func (c *Conn) newHandshaker() handshaker {
	conn := connEndpoints(c.conn.LocalAddr(), c.conn.RemoteAddr())
	switch {
	case c.cfg.Mode == ModePython && c.isClient:
		return newPythonClient(c.cfg, conn)
	case c.cfg.Mode == ModePython:
		h := newPythonServer(c.cfg, conn).(*pythonServer)
		h.remoteKey = SCRAMRemoteKey(c.conn.RemoteAddr())
		return h
	case c.isClient:
		return newNativeClient(c.cfg)
	}
	return newNativeServer(c.cfg, SCRAMRemoteKey(c.conn.RemoteAddr()))
}

// run drives a handshaker: write what it says, read one bounded frame, repeat.
func (c *Conn) run(h handshaker) error {
	out, done, err := h.step(nil)
	for {
		// Frames the peer pipelined are answered before anything is
		// written, so the replies leave in one write (Python mode: a
		// client's answer and challenge get #WELCOME# and our answer).
		for err == nil && !done && c.frameBuffered(h.readLimit()) {
			in, rerr := c.readHandshakeFrame(h.readLimit())
			if rerr != nil {
				break
			}
			var more []byte
			more, done, err = h.step(in)
			out = append(out, more...)
		}
		if len(out) > 0 {
			if _, werr := c.conn.Write(out); werr != nil && err == nil {
				err = fmt.Errorf("auth: handshake: %w", werr)
			}
		}
		if err != nil || done {
			return err
		}
		in, rerr := c.readHandshakeFrame(h.readLimit())
		if rerr != nil {
			return handshakeReadErr(rerr)
		}
		c.spoke.Store(true)
		out, done, err = h.step(in)
	}
}

// readHandshakeFrame reads one frame through the input buffer, so a message
// costs one read system call; bytes the peer sent after it (its first
// records) stay buffered for Read.
func (c *Conn) readHandshakeFrame(limit int) ([]byte, error) {
	for {
		n, hdr, need, err := frame.ParseHeader(c.rawIn[c.inR:c.inW], limit)
		if err != nil {
			return nil, err
		}
		if need == 0 {
			need = hdr + n
			if c.inW-c.inR >= need {
				p := c.rawIn[c.inR+hdr : c.inR+need : c.inR+need]
				c.inR += need
				return p, nil
			}
		}
		if err := c.fill(need); err != nil {
			return nil, err
		}
	}
}

// frameBuffered reports whether a whole handshake frame is already read.
func (c *Conn) frameBuffered(limit int) bool {
	n, hdr, need, err := frame.ParseHeader(c.rawIn[c.inR:c.inW], limit)
	return err == nil && need == 0 && c.inW-c.inR >= hdr+n
}

func handshakeReadErr(err error) error {
	switch {
	case errors.Is(err, frame.ErrTooLarge), errors.Is(err, frame.ErrNegativeLength):
		return fmt.Errorf("%w: handshake %w", ErrProtocol, err)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return fmt.Errorf("auth: peer closed the connection during the handshake: %w", io.ErrUnexpectedEOF)
	}
	return fmt.Errorf("auth: handshake: %w", err)
}

// PeerSpoke reports whether a whole handshake message from the peer has
// arrived. A server that must shed unauthenticated connections drops those
// that have not spoken first: holding one open costs an attacker nothing.
func (c *Conn) PeerSpoke() bool { return c.spoke.Load() }

// ConnectionState returns the state of a finished handshake; before that it
// returns the zero value.
func (c *Conn) ConnectionState() ConnectionState {
	if !c.hsDone.Load() || c.hsErr != nil {
		return ConnectionState{}
	}
	return c.state
}

// NetConn returns the wrapped connection. Writing to it directly corrupts the
// record stream.
func (c *Conn) NetConn() net.Conn { return c.conn }

// Read reads plaintext, running the handshake first if needed. A peer that
// closed with close_notify yields io.EOF; a connection that ends without it
// yields io.ErrUnexpectedEOF, so a truncation cannot pass for a clean close.
func (c *Conn) Read(p []byte) (int, error) {
	if err := c.Handshake(); err != nil {
		return 0, err
	}
	if len(p) == 0 {
		return 0, nil
	}
	c.inMu.Lock()
	defer c.inMu.Unlock()
	if !c.state.Sealed {
		if c.inR < c.inW { // read along with the handshake's last message
			n := copy(p, c.rawIn[c.inR:c.inW])
			c.inR += n
			return n, nil
		}
		return c.conn.Read(p)
	}
	for len(c.pending) == 0 {
		if c.inErr != nil {
			return 0, c.inErr
		}
		if n, err := c.readRecord(p); n > 0 || err != nil {
			return n, err
		}
	}
	n := copy(p, c.pending)
	c.pending = c.pending[n:]
	return n, nil
}

// readRecord reads and opens one record. A data record that fits p is
// decrypted straight into it (n > 0); otherwise it lands in c.pending.
func (c *Conn) readRecord(p []byte) (n int, err error) {
	if err := c.fill(recordHeaderLen); err != nil {
		return 0, err
	}
	hdr := c.rawIn[c.inR : c.inR+recordHeaderLen]
	typ, clen, err := parseRecordHeader(hdr)
	if err != nil {
		return 0, c.failRead(err)
	}
	if err := c.fill(recordHeaderLen + clen); err != nil {
		return 0, err
	}
	hdr = c.rawIn[c.inR : c.inR+recordHeaderLen]
	ct := c.rawIn[c.inR+recordHeaderLen : c.inR+recordHeaderLen+clen]
	dst := ct[:0]
	direct := typ == recordData && len(p) >= clen-aeadOverhead
	if direct {
		dst = p[:0]
	}
	pt, err := c.in.open(dst, hdr, ct)
	c.inR += recordHeaderLen + clen
	if err != nil {
		return 0, c.failRead(err)
	}
	if typ == recordClose {
		if len(pt) != 0 {
			return 0, c.failRead(fmt.Errorf("%w: close record with a body", ErrProtocol))
		}
		c.inErr = io.EOF
		return 0, io.EOF
	}
	if direct {
		return len(pt), nil
	}
	c.pending = pt
	return 0, nil
}

// failRead makes a protocol failure permanent and closes the connection:
// nothing read after a bad record can be trusted.
func (c *Conn) failRead(err error) error {
	c.inErr = err
	_ = c.conn.Close()
	return err
}

// fill reads until rawIn holds at least n unread bytes. A timeout leaves what
// was read in place, so a later Read resumes mid-record.
func (c *Conn) fill(n int) error {
	for c.inW-c.inR < n {
		if c.rawIn == nil || c.inR+n > len(c.rawIn) {
			c.compact(n)
		}
		m, err := c.conn.Read(c.rawIn[c.inW:])
		c.inW += m
		if c.inW-c.inR >= n {
			return nil
		}
		if err != nil {
			if err == io.EOF {
				err = fmt.Errorf("auth: connection closed without close_notify: %w", io.ErrUnexpectedEOF)
				c.inErr = err
			}
			return err
		}
	}
	return nil
}

// initialReadBuf holds the largest handshake message, so an unauthenticated
// peer costs a few KiB; the buffer grows to a full record only when an
// authenticated peer sends one.
const initialReadBuf = maxHandshakeFrame + frame.ShortHeaderLen

func (c *Conn) compact(n int) {
	size := max(len(c.rawIn), initialReadBuf)
	for size < n {
		size *= 2
	}
	buf := c.rawIn
	if size > len(buf) {
		buf = make([]byte, size)
	}
	copy(buf, c.rawIn[c.inR:c.inW])
	c.inW -= c.inR
	c.inR = 0
	c.rawIn = buf
}

// maxWriteBatch bounds how much ciphertext one Write hands to the kernel in
// a single call.
const maxWriteBatch = 256 << 10

// Write seals p into records and writes them, running the handshake first if
// needed. A Write that times out keeps the record stream intact: sealed bytes
// that did not reach the wire go out first on the next Write (and count as
// written), so the Conn stays usable once the deadline moves. Any other write
// failure is permanent.
func (c *Conn) Write(p []byte) (int, error) {
	return c.WriteVectored([][]byte{p})
}

// WriteVectored writes the buffers in order, as Write writes their
// concatenation, except that each buffer starts a new record. A framing layer
// uses it to give a large payload records of its own, which the reader can
// then decrypt straight into the payload's memory. Everything goes to the
// connection in as few system calls as possible (writev without sealing).
func (c *Conn) WriteVectored(bufs [][]byte) (int, error) {
	if err := c.Handshake(); err != nil {
		return 0, err
	}
	if !c.state.Sealed {
		nb := net.Buffers(slices.Clone(bufs))
		n, err := nb.WriteTo(c.conn)
		return int(n), err
	}
	c.outMu.Lock()
	defer c.outMu.Unlock()
	if err := c.flushTail(); err != nil {
		return 0, err
	}
	n, i, rest := 0, 0, []byte(nil) // rest: what remains of bufs[i]
	if len(bufs) > 0 {
		rest = bufs[0]
	}
	for {
		for len(rest) == 0 && i+1 < len(bufs) {
			i++
			rest = bufs[i]
		}
		if len(rest) == 0 {
			return n, nil
		}
		saved := c.out
		buf, batched := c.outBuf[:0], 0
		for len(rest) > 0 && len(buf) < maxWriteBatch {
			chunk := rest[:min(len(rest), maxRecordPlaintext)]
			var err error
			if buf, err = c.out.seal(buf, recordData, chunk); err != nil {
				c.outErr = err
				return n, err
			}
			rest = rest[len(chunk):]
			batched += len(chunk)
			for len(rest) == 0 && i+1 < len(bufs) {
				i++
				rest = bufs[i]
			}
		}
		c.outBuf = buf
		w, err := c.conn.Write(buf)
		if err != nil {
			switch {
			case !isTimeout(err):
				c.outErr = err
			case w == 0:
				c.out = saved // nothing reached the wire: unseal the batch
			default:
				c.outTail = buf[w:]
				n += batched
			}
			return n, err
		}
		n += batched
	}
}

// flushTail writes what a timed-out Write left behind.
func (c *Conn) flushTail() error {
	if c.outErr != nil {
		return c.outErr
	}
	if len(c.outTail) == 0 {
		return nil
	}
	w, err := c.conn.Write(c.outTail)
	c.outTail = c.outTail[w:]
	if err != nil && !isTimeout(err) {
		c.outErr = err
	}
	return err
}

// closeNotifyTimeout bounds how long Close waits to tell the peer.
const closeNotifyTimeout = time.Second

// Close sends close_notify when it can do so without waiting on a blocked
// writer, then closes the connection. It is safe to call more than once.
func (c *Conn) Close() error {
	c.closeOnce.Do(func() {
		if c.hsDone.Load() && c.hsErr == nil && c.state.Sealed && c.outMu.TryLock() {
			_ = c.conn.SetWriteDeadline(time.Now().Add(closeNotifyTimeout))
			if c.flushTail() == nil {
				if buf, err := c.out.seal(c.outBuf[:0], recordClose, nil); err == nil {
					_, _ = c.conn.Write(buf)
				}
			}
			c.outErr = net.ErrClosed
			c.outMu.Unlock()
		}
		c.closeErr = c.conn.Close()
	})
	return c.closeErr
}

// LocalAddr returns the local network address.
func (c *Conn) LocalAddr() net.Addr { return c.conn.LocalAddr() }

// RemoteAddr returns the remote network address.
func (c *Conn) RemoteAddr() net.Addr { return c.conn.RemoteAddr() }

// SetDeadline sets the read and write deadlines of the wrapped connection.
// Reads and Writes that time out may be retried.
func (c *Conn) SetDeadline(t time.Time) error { return c.conn.SetDeadline(t) }

// SetReadDeadline sets the read deadline; a Read that times out may be retried.
func (c *Conn) SetReadDeadline(t time.Time) error { return c.conn.SetReadDeadline(t) }

// SetWriteDeadline sets the write deadline; a Write that times out may be
// retried.
func (c *Conn) SetWriteDeadline(t time.Time) error { return c.conn.SetWriteDeadline(t) }

// String names the connection by its addresses.
func (c *Conn) String() string {
	return "auth.Conn(" + c.conn.LocalAddr().String() + " -> " + c.conn.RemoteAddr().String() + ")"
}

// GoString is String.
func (c *Conn) GoString() string { return c.String() }

// Format prints String for every verb: the struct holds the session's
// traffic secrets, which %+v would print.
func (c *Conn) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, c.String()) }
