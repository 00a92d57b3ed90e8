package node

import (
	"context"
	"errors"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// cutDialer dials real TCP connections and can cut the newest one, as a
// flaky network or a restarted proxy would.
type cutDialer struct {
	mu    sync.Mutex
	conns []net.Conn
	dials atomic.Int64
}

func (d *cutDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	d.mu.Lock()
	d.conns = append(d.conns, c)
	d.mu.Unlock()
	d.dials.Add(1)
	return c, nil
}

// cutAll closes every connection dialled so far.
func (d *cutDialer) cutAll() {
	d.mu.Lock()
	conns := d.conns
	d.conns = nil
	d.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
}

// TestNoLossAcrossCuts cuts the TCP connection of a busy link 200 times
// and checks that every one-way message arrived exactly once and in order,
// and that every request got its reply.
func TestNoLossAcrossCuts(t *testing.T) {
	cuts := 200
	if testing.Short() {
		cuts = 50
	}
	d := &cutDialer{}
	nodes := startCluster(t, 2, func(i int, c *Config) {
		c.NetDialer = d
		// Small queues keep the backlog resent after each cut, and the
		// requests queued behind one-way traffic, short.
		c.SendQueueBytes, c.InboxBytes = 64<<10, 64<<10
	})
	a, b := nodes[0], nodes[1]

	var next atomic.Int64
	var bad atomic.Value
	b.Handle("seq", func(ctx context.Context, m *Msg) (any, error) {
		var v int64
		if err := m.Decode(&v); err != nil {
			bad.Store(err)
		}
		if want := next.Load(); v != want {
			bad.Store(errors.New("out of order or duplicated"))
			t.Errorf("got message %d, want %d", v, want)
		}
		next.Add(1)
		return v * 2, nil
	})
	ctx := testCtx(t, 60*time.Second)
	if err := a.WaitPeer(ctx, "n1"); err != nil {
		t.Fatal(err)
	}

	stop := make(chan struct{})
	var sent int64
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { // one-way traffic
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if err := a.Send(ctx, "n1", "seq", sent); err != nil {
				t.Errorf("send %d: %v", sent, err)
				return
			}
			sent++
		}
	}()
	var requests atomic.Int64
	go func() { // requests on the same link
		defer wg.Done()
		for i := int64(0); ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			var out int64
			// "seq" checks order too, so requests use their own topic.
			if err := a.Request(ctx, "n1", "double", i, &out); err != nil || out != 2*i {
				t.Errorf("request %d = %d, %v", i, out, err)
				return
			}
			requests.Add(1)
		}
	}()
	b.Handle("double", func(ctx context.Context, m *Msg) (any, error) {
		var v int64
		m.Decode(&v)
		return 2 * v, nil
	})

	for range cuts {
		before := d.dials.Load()
		time.Sleep(time.Duration(rand.IntN(3000)) * time.Microsecond) // cut at a random point of the traffic
		d.cutAll()
		waitFor(t, "a new link after a cut", 10*time.Second, func() bool {
			return d.dials.Load() > before && a.WaitPeer(ctx, "n1") == nil && b.WaitPeer(ctx, "n0") == nil
		})
	}
	close(stop)
	wg.Wait()
	if err := a.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the last message", 10*time.Second, func() bool { return next.Load() == sent })
	if v := bad.Load(); v != nil {
		t.Fatal(v)
	}
	st := a.Stats().Peers[0]
	t.Logf("%d cuts, %d messages, %d requests, %d resent, %d duplicates dropped at b, %d dials",
		cuts, sent, requests.Load(), st.Resent, b.Stats().Peers[0].Duplicates, d.dials.Load())
	if sent < 1000 || requests.Load() < 20 {
		t.Fatalf("too little traffic to mean anything: %d messages, %d requests", sent, requests.Load())
	}
	if a.Stats().Undeliverable != 0 {
		t.Fatalf("%d messages reported undeliverable", a.Stats().Undeliverable)
	}
}
