package node

import (
	"fmt"
	"log"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
)

// Bounds on inbound gossip streams (TCP). memberlist reads a whole sealed
// stream (up to 20 MiB) into memory before it can tell that the sender
// lacks the key, and serves any number of streams at once, each for up to
// the profile's TCP timeout: without bounds a process that only knows the
// gossip address could hold gigabytes of a node's memory. A push-pull of
// the full membership is far smaller: under 600 bytes per member with the
// largest meta, before compression.
const (
	gossipStreamMaxBytes = 2 << 20 // per stream: room for over 3000 members
	gossipStreams        = 8       // read at once
	gossipStreamWaiters  = 64      // waiting for one of those slots; more are closed
)

// errGossipStreamTooLong ends a stream that sent more than
// gossipStreamMaxBytes.
var errGossipStreamTooLong = fmt.Errorf("node: gossip stream longer than %d bytes", gossipStreamMaxBytes)

// guardedTransport is memberlist's own TCP/UDP transport with the stream
// bounds above. Packets (UDP) are bounded by their size already.
type guardedTransport struct {
	*memberlist.NetTransport
	streams chan net.Conn
	slots   chan struct{}
	wait    time.Duration // longest a stream waits for a slot
	waiting atomic.Int32
	done    chan struct{}
	wg      sync.WaitGroup
	stop    sync.Once
}

// newGuardedTransport binds memberlist's transport on addr:port; port 0
// lets the OS choose, and Port reports it. slotWait bounds how long an
// inbound stream waits for a slot: well under the peer's TCP timeout.
func newGuardedTransport(addr string, port int, logger *log.Logger, slotWait time.Duration) (*guardedTransport, error) {
	nc := &memberlist.NetTransportConfig{BindAddrs: []string{addr}, BindPort: port, Logger: logger}
	var nt *memberlist.NetTransport
	var err error
	// With port 0 the OS picks a TCP port that may be taken for UDP:
	// memberlist retries such binds, and so do we.
	for range 10 {
		if nt, err = memberlist.NewNetTransport(nc); err == nil || port != 0 || !strings.Contains(err.Error(), "address already in use") {
			break
		}
	}
	if err != nil {
		return nil, err
	}
	t := &guardedTransport{
		NetTransport: nt,
		streams:      make(chan net.Conn),
		slots:        make(chan struct{}, gossipStreams),
		wait:         slotWait,
		done:         make(chan struct{}),
	}
	t.wg.Add(1)
	go t.forward()
	return t, nil
}

// Port is the bound port.
func (t *guardedTransport) Port() int { return t.GetAutoBindPort() }

// StreamCh hands memberlist the inbound streams that got a slot.
func (t *guardedTransport) StreamCh() <-chan net.Conn { return t.streams }

// Shutdown stops the listeners, then the streams still waiting.
func (t *guardedTransport) Shutdown() error {
	// The forwarder drains NetTransport's accept loop while it stops.
	err := t.NetTransport.Shutdown()
	t.stop.Do(func() { close(t.done) })
	t.wg.Wait()
	return err
}

func (t *guardedTransport) forward() {
	defer t.wg.Done()
	for {
		select {
		case c := <-t.NetTransport.StreamCh():
			t.admit(c)
		case <-t.done:
			return
		}
	}
}

// admit hands c over with a slot, or lets it wait for one, or closes it
// when too many wait already.
func (t *guardedTransport) admit(c net.Conn) {
	select {
	case t.slots <- struct{}{}:
		t.hand(c)
		return
	default:
	}
	if t.waiting.Add(1) > gossipStreamWaiters {
		t.waiting.Add(-1)
		_ = c.Close()
		return
	}
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		defer t.waiting.Add(-1)
		timer := time.NewTimer(t.wait)
		defer timer.Stop()
		select {
		case t.slots <- struct{}{}:
			t.hand(c)
		case <-timer.C:
			_ = c.Close()
		case <-t.done:
			_ = c.Close()
		}
	}()
}

// hand passes c, which holds a slot, to memberlist.
func (t *guardedTransport) hand(c net.Conn) {
	g := &guardedConn{Conn: c, left: gossipStreamMaxBytes, release: func() { <-t.slots }}
	select {
	case t.streams <- g:
	case <-t.done:
		_ = g.Close()
	}
}

// guardedConn is an inbound gossip stream: it reads at most left bytes and
// gives its slot back when closed.
type guardedConn struct {
	net.Conn
	left    int
	release func()
	once    sync.Once
}

func (c *guardedConn) Read(p []byte) (int, error) {
	if c.left <= 0 {
		return 0, errGossipStreamTooLong
	}
	n, err := c.Conn.Read(p[:min(len(p), c.left)])
	c.left -= n
	return n, err
}

func (c *guardedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}
