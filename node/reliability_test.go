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

// freezeDialer dials connections that can be frozen: writes vanish and
// reads never return, as across a silent partition where no RST or FIN
// ever arrives.
type freezeDialer struct {
	mu    sync.Mutex
	conns []*freezable
}

type freezable struct {
	net.Conn
	frozen chan struct{}
	once   sync.Once
}

func (c *freezable) freeze() { c.once.Do(func() { close(c.frozen) }) }

func (c *freezable) Write(p []byte) (int, error) {
	select {
	case <-c.frozen:
		return len(p), nil
	default:
		return c.Conn.Write(p)
	}
}

func (c *freezable) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	select {
	case <-c.frozen:
		// Swallow what arrives; return only when the connection closes.
		for err == nil {
			_, err = c.Conn.Read(p)
		}
		return 0, err
	default:
		return n, err
	}
}

func (d *freezeDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	f := &freezable{Conn: c, frozen: make(chan struct{})}
	d.mu.Lock()
	d.conns = append(d.conns, f)
	d.mu.Unlock()
	return f, nil
}

func (d *freezeDialer) freezeAll() {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, c := range d.conns {
		c.freeze()
	}
}

// TestSilentPartitionIsNoticed: a link that goes silent without closing is
// dropped after the heartbeat timeout and re-dialled, and the messages sent
// meanwhile arrive, once each.
func TestSilentPartitionIsNoticed(t *testing.T) {
	d := &freezeDialer{}
	nodes := startCluster(t, 2, func(i int, c *Config) {
		c.NetDialer = d
		c.HeartbeatInterval, c.HeartbeatTimeout = 50*time.Millisecond, 300*time.Millisecond
	})
	a, b := nodes[0], nodes[1]
	got := make(chan int, 100)
	b.Handle("n", func(ctx context.Context, m *Msg) (any, error) {
		var v int
		m.Decode(&v)
		got <- v
		return nil, nil
	})
	waitFor(t, "handler known", 2*time.Second, func() bool { return len(a.Servers("n")) == 1 })
	ctx := testCtx(t, 10*time.Second)
	frozenAt := time.Now()
	d.freezeAll()
	for i := range 10 {
		if err := a.Send(ctx, "n1", "n", i); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 10 {
		select {
		case v := <-got:
			if v != i {
				t.Fatalf("got %d, want %d", v, i)
			}
		case <-ctx.Done():
			t.Fatalf("message %d never arrived after the partition", i)
		}
	}
	took := time.Since(frozenAt)
	t.Logf("messages sent into a silent link arrived after %v (heartbeat timeout 300 ms)", took)
	if took < 300*time.Millisecond {
		t.Fatalf("arrived after %v: the link was not frozen", took)
	}
	if err := a.Flush(ctx); err != nil {
		t.Fatal(err)
	}
}
