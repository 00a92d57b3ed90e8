package benchkit

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
)

// Handshaker is a connection whose handshake can be run explicitly, as
// *auth.Conn's and *tls.Conn's can.
type Handshaker interface {
	net.Conn
	HandshakeContext(ctx context.Context) error
}

// HandshakeServer is the accepting side of a handshake benchmark: every
// connection its listener accepts gets a goroutine of its own that runs the
// handshake and closes the connection.
type HandshakeServer struct {
	ln         net.Listener
	waitHangup bool
	ctx        context.Context // cancelled by Close; bounds every handshake
	cancel     context.CancelFunc
	wg         sync.WaitGroup // the accept loop and every connection

	// mu guards conns, the connections being served.
	mu    sync.Mutex
	conns map[net.Conn]struct{}

	completed, failed atomic.Uint64
}

// ServeHandshakes starts accepting on ln, which the server then owns. Each
// accepted connection must be a Handshaker (auth.NewListener and
// tls.NewListener return such listeners). With waitHangup the server keeps a
// connection open after its handshake until the client hangs up, so the
// client always closes first; otherwise it closes at once.
func ServeHandshakes(ln net.Listener, waitHangup bool) *HandshakeServer {
	ctx, cancel := context.WithCancel(context.Background())
	s := &HandshakeServer{ln: ln, waitHangup: waitHangup, ctx: ctx, cancel: cancel, conns: map[net.Conn]struct{}{}}
	s.wg.Add(1)
	go s.acceptLoop()
	return s
}

// Addr returns the listening address.
func (s *HandshakeServer) Addr() net.Addr { return s.ln.Addr() }

// Completed returns how many handshakes have succeeded so far.
func (s *HandshakeServer) Completed() uint64 { return s.completed.Load() }

// Failed returns how many handshakes have failed so far, including those
// Close cut short.
func (s *HandshakeServer) Failed() uint64 { return s.failed.Load() }

// Close closes the listener and every connection still being served, and
// waits for the server's goroutines.
func (s *HandshakeServer) Close() error {
	s.cancel()
	err := s.ln.Close()
	s.mu.Lock()
	for c := range s.conns {
		_ = c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	return err
}

func (s *HandshakeServer) acceptLoop() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return // closed; a benchmark has no use for retrying
		}
		s.mu.Lock()
		if s.ctx.Err() != nil {
			s.mu.Unlock()
			_ = c.Close()
			return
		}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go s.serve(c)
	}
}

func (s *HandshakeServer) serve(c net.Conn) {
	defer s.wg.Done()
	defer func() {
		_ = c.Close()
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
	}()
	h, ok := c.(Handshaker)
	if !ok || h.HandshakeContext(s.ctx) != nil {
		s.failed.Add(1)
		return
	}
	s.completed.Add(1)
	if s.waitHangup {
		var b [1]byte
		_, _ = c.Read(b[:])
	}
}
