package transport

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/seed0811993b/conclave/auth"
	"github.com/seed0811993b/conclave/internal/frame"
)

func testConfig(t testing.TB, key auth.Key) *Config {
	t.Helper()
	if key == nil {
		var err error
		if key, err = auth.GenerateKey(nil); err != nil {
			t.Fatal(err)
		}
	}
	return &Config{Auth: &auth.Config{Key: key}}
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// linkPair returns a dialed and an accepted Link over loopback TCP.
func linkPair(t testing.TB, dcfg, lcfg *Config) (dialed, accepted *Link) {
	t.Helper()
	ln, err := Listen("tcp", "127.0.0.1:0", lcfg)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ctx := ctxT(t)
	dialed, err = Dial(ctx, "tcp", ln.Addr().String(), dcfg)
	if err != nil {
		t.Fatal(err)
	}
	accepted, err = ln.Accept(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dialed.Close(); accepted.Close() })
	return dialed, accepted
}

// plainPair returns Links over a raw loopback TCP pair (no handshake), plus
// the raw server conn for tests that write bytes themselves.
func plainPair(t testing.TB) (*Link, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	l, err := NewLink(ctxT(t), c, testConfig(t, nil))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close(); s.Close() })
	return l, s
}

func sharedPair(t testing.TB) (*Link, *Link) {
	t.Helper()
	cfg := testConfig(t, nil)
	return linkPair(t, cfg, cfg)
}

func TestSendRecvSizes(t *testing.T) {
	a, b := sharedPair(t)
	ctx := ctxT(t)
	sizes := []int{0, 1, 64, 1000, 64 << 10, 64<<10 + 1, 160 << 10, 1<<20 + 3, 5 << 20}
	var msgs [][]byte
	for _, n := range sizes {
		m := make([]byte, n)
		rand.Read(m)
		msgs = append(msgs, m)
	}
	go func() {
		for _, m := range msgs {
			if err := a.Send(ctx, m); err != nil {
				t.Errorf("send %d: %v", len(m), err)
				return
			}
		}
	}()
	for _, want := range msgs {
		got, err := b.Recv(ctx)
		if err != nil {
			t.Fatalf("recv %d: %v", len(want), err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("frame of %d bytes came back as %d different bytes", len(want), len(got))
		}
	}
	if st := b.Stats(); st.FramesRecv != uint64(len(sizes)) {
		t.Errorf("FramesRecv = %d, want %d", st.FramesRecv, len(sizes))
	}
}

// TestConcurrentSendersKeepOrder checks that frames from each sender arrive
// whole and in that sender's order while many senders share one Link.
func TestConcurrentSendersKeepOrder(t *testing.T) {
	a, b := sharedPair(t)
	ctx := ctxT(t)
	const senders, each = 8, 2000
	var wg sync.WaitGroup
	for s := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 16+s*37)
			for i := range each {
				binary.BigEndian.PutUint32(buf, uint32(s))
				binary.BigEndian.PutUint32(buf[4:], uint32(i))
				if err := a.Send(ctx, buf); err != nil {
					t.Errorf("send: %v", err)
					return
				}
			}
		}()
	}
	next := make([]uint32, senders)
	for range senders * each {
		p, err := b.Recv(ctx)
		if err != nil {
			t.Fatal(err)
		}
		s, i := binary.BigEndian.Uint32(p), binary.BigEndian.Uint32(p[4:])
		if len(p) != 16+int(s)*37 || i != next[s] {
			t.Fatalf("sender %d: got frame %d (len %d), want %d", s, i, len(p), next[s])
		}
		next[s]++
	}
	wg.Wait()
	if st := a.Stats(); st.Writes >= senders*each {
		t.Errorf("%d writes for %d frames: no coalescing", st.Writes, senders*each)
	}
}

func TestRecvContextLosesNothing(t *testing.T) {
	l, raw := plainPair(t)
	msg := bytes.Repeat([]byte("x"), 300<<10) // larger than the read buffer
	wire := frame.Append(nil, msg)
	if _, err := raw.Write(wire[:len(wire)/2]); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := l.Recv(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Recv on half a frame = %v, want DeadlineExceeded", err)
	}
	cctx, ccancel := context.WithCancel(context.Background())
	ccancel()
	if _, err := l.Recv(cctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Recv with cancelled ctx = %v, want Canceled", err)
	}
	if _, err := raw.Write(wire[len(wire)/2:]); err != nil {
		t.Fatal(err)
	}
	got, err := l.Recv(context.Background())
	if err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("Recv after timeouts = %d bytes, %v; want the whole frame", len(got), err)
	}
}

func TestSendOverPeerLimitKeepsLink(t *testing.T) {
	key, _ := auth.GenerateKey(nil)
	small := &Config{Auth: &auth.Config{Key: key, MaxFrameSize: 4096}}
	a, b := linkPair(t, testConfig(t, key), small)
	ctx := ctxT(t)
	if err := a.Send(ctx, make([]byte, 4097)); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("Send over the peer limit = %v, want ErrFrameTooLarge", err)
	}
	if err := a.Send(ctx, make([]byte, 4096)); err != nil {
		t.Fatal(err)
	}
	if p, err := b.Recv(ctx); err != nil || len(p) != 4096 {
		t.Fatalf("Recv = %d, %v", len(p), err)
	}
}

func TestHostileLengths(t *testing.T) {
	for _, tc := range []struct {
		name string
		hdr  []byte
		want error
	}{
		{"over limit", binary.BigEndian.AppendUint32(nil, auth.DefaultMaxFrameSize+1), ErrFrameTooLarge},
		{"huge escaped", append([]byte{0xff, 0xff, 0xff, 0xff}, binary.BigEndian.AppendUint64(nil, 1<<62)...), ErrFrameTooLarge},
		{"negative", []byte{0xff, 0xff, 0xff, 0xfe}, ErrProtocol},
		{"most negative", []byte{0x80, 0, 0, 0}, ErrProtocol},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, raw := plainPair(t)
			if _, err := raw.Write(tc.hdr); err != nil {
				t.Fatal(err)
			}
			_, err := l.Recv(ctxT(t))
			if !errors.Is(err, tc.want) {
				t.Fatalf("Recv = %v, want %v", err, tc.want)
			}
			if !errors.Is(l.Err(), tc.want) {
				t.Fatalf("Link.Err = %v, want the link failed with %v", l.Err(), tc.want)
			}
		})
	}
}

func TestBackpressure(t *testing.T) {
	key, _ := auth.GenerateKey(nil)
	cfg := &Config{Auth: &auth.Config{Key: key}, SendQueueBytes: 64 << 10}
	a, b := linkPair(t, cfg, cfg)
	frameBytes := make([]byte, 32<<10)
	// Nobody reads b: the kernel buffers fill, then the queue, then Send waits.
	var sent int
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		err := a.Send(ctx, frameBytes)
		cancel()
		if errors.Is(err, context.DeadlineExceeded) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		sent++
		if sent > 10000 {
			t.Fatal("Send never blocked: the queue is unbounded")
		}
	}
	// Once the reader drains, every queued frame arrives and Send flows again.
	ctx := ctxT(t)
	go func() {
		if err := a.Send(ctx, []byte("after")); err != nil {
			t.Errorf("send after drain: %v", err)
		}
	}()
	for i := 0; i < sent; i++ {
		if p, err := b.Recv(ctx); err != nil || len(p) != len(frameBytes) {
			t.Fatalf("frame %d of %d: %d bytes, %v", i, sent, len(p), err)
		}
	}
	if p, err := b.Recv(ctx); err != nil || string(p) != "after" {
		t.Fatalf("last frame %q, %v", p, err)
	}
}

func TestCloseUnblocksEveryone(t *testing.T) {
	key, _ := auth.GenerateKey(nil)
	cfg := &Config{Auth: &auth.Config{Key: key}, SendQueueBytes: 1024}
	a, _ := linkPair(t, cfg, cfg)
	errs := make(chan error, 3)
	go func() { _, err := a.Recv(context.Background()); errs <- err }()
	go func() { _, err := a.Recv(context.Background()); errs <- err }()
	go func() {
		for {
			if err := a.Send(context.Background(), make([]byte, 1<<20)); err != nil {
				errs <- err
				return
			}
		}
	}()
	a.Close()
	for range 3 {
		select {
		case err := <-errs:
			if !errors.Is(err, ErrClosed) {
				t.Errorf("blocked call returned %v, want ErrClosed", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("a blocked call did not return after Close")
		}
	}
	if err := a.Close(); err != nil {
		t.Errorf("second Close = %v", err)
	}
}

func TestPeerCloseDeliversThenEOF(t *testing.T) {
	a, b := sharedPair(t)
	ctx := ctxT(t)
	for i := range 100 {
		if err := a.Send(ctx, []byte(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	a.Close()
	for i := range 100 {
		p, err := b.Recv(ctx)
		if err != nil || string(p) != fmt.Sprint(i) {
			t.Fatalf("frame %d = %q, %v", i, p, err)
		}
	}
	if _, err := b.Recv(ctx); !errors.Is(err, io.EOF) {
		t.Fatalf("after the peer closed: %v, want io.EOF", err)
	}
}

func TestWrongKeyIsRefused(t *testing.T) {
	ln, err := Listen("tcp", "127.0.0.1:0", testConfig(t, nil))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ctx := ctxT(t)
	_, err = Dial(ctx, "tcp", ln.Addr().String(), testConfig(t, nil))
	if !errors.Is(err, auth.ErrAuthFailed) {
		t.Fatalf("Dial with the wrong key = %v, want auth.ErrAuthFailed", err)
	}
	actx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	if lk, err := ln.Accept(actx); err == nil {
		lk.Close()
		t.Fatal("the listener accepted a peer with the wrong key")
	}
}

func TestListenerCloseIsClean(t *testing.T) {
	ln, err := Listen("tcp", "127.0.0.1:0", testConfig(t, nil))
	if err != nil {
		t.Fatal(err)
	}
	// A silent connection holds a handshake goroutine; Close must end it.
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	errc := make(chan error, 1)
	go func() { _, err := ln.Accept(context.Background()); errc <- err }()
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; !errors.Is(err, ErrClosed) {
		t.Fatalf("Accept after Close = %v, want ErrClosed", err)
	}
}

// TestRecvBatch: frames read in batches arrive complete and in order,
// batches never exceed their bound, and a burst is taken in few reads.
func TestRecvBatch(t *testing.T) {
	cfg := testConfig(t, nil)
	a, b := linkPair(t, cfg, cfg)
	ctx := ctxT(t)
	const total = 5000
	go func() {
		for i := range total {
			if err := a.Send(ctx, []byte(strconv.Itoa(i))); err != nil {
				return
			}
		}
	}()
	var batch [][]byte
	got, reads := 0, 0
	for got < total {
		var err error
		batch, err = b.RecvBatch(ctx, batch[:0], 16)
		if err != nil {
			t.Fatal(err)
		}
		if len(batch) == 0 || len(batch) > 16 {
			t.Fatalf("batch of %d frames", len(batch))
		}
		for _, p := range batch {
			if string(p) != strconv.Itoa(got) {
				t.Fatalf("frame %d is %q", got, p)
			}
			got++
		}
		reads++
	}
	t.Logf("%d frames in %d batches", total, reads)
	if reads == total {
		t.Error("every batch held one frame: batching never happened")
	}
}
