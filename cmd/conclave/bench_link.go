package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync/atomic"
	"time"

	"github.com/seed0811993b/conclave/auth"
	"github.com/seed0811993b/conclave/internal/benchkit"
	"github.com/seed0811993b/conclave/transport"
)

// Link kinds: a Link after the native handshake, a Link after the
// Python-compatible one (plaintext frames), and the raw framing anchor.
var (
	linkKinds = []string{"raw", "sealed", "plain"}
	linkSizes = []int{64, 1 << 10, 64 << 10}
)

// Setup bounds: how long a peer may take to connect and handshake, and to
// answer once the measurement is over.
const (
	connectTimeout = 10 * time.Second
	replyTimeout   = 10 * time.Second
)

// linkAuth is the handshake configuration both ends use for a link or
// handshake kind.
func linkAuth(key auth.Key, kind string) *auth.Config {
	cfg := &auth.Config{Key: key}
	if kind == "plain" || kind == "python-mode" {
		cfg.Mode = auth.ModePython
	}
	return cfg
}

// links measures every link kind and size, -runs times each, interleaved so
// that a slow spell of the machine does not land on one kind only.
func (b *benchRun) links(ctx context.Context) error {
	perRun := map[string][]float64{}
	for run := 1; run <= b.opts.runs; run++ {
		for _, size := range linkSizes {
			for _, kind := range linkKinds {
				fps, err := b.measureLink(ctx, kind, size)
				if err != nil {
					return fmt.Errorf("bench: link %s %s: %w", kind, sizeName(size), err)
				}
				k := kind + "/" + sizeName(size)
				perRun[k] = append(perRun[k], fps)
				b.progress("link %-6s %-6s run %d/%d: %s frames/s, %.1f MB/s",
					kind, sizeName(size), run, b.opts.runs, fmtCount(fps), fps*float64(size)/1e6)
			}
		}
	}
	for _, size := range linkSizes {
		med := map[string]float64{}
		for _, kind := range linkKinds {
			runs := perRun[kind+"/"+sizeName(size)]
			med[kind] = median(runs)
			b.res.Link = append(b.res.Link, linkFigure{Kind: kind, Size: size, FramesPerSec: med[kind],
				MBPerSec: med[kind] * float64(size) / 1e6, Spread: spread(runs), RunsFramesPerSec: runs})
		}
		goal := map[int]float64{64: 0.5, 64 << 10: 0.8}[size]
		b.res.LinkRatios = append(b.res.LinkRatios,
			newRatio("sealed/raw", size, med["sealed"], med["raw"], goal),
			newRatio("plain/raw", size, med["plain"], med["raw"], 0))
	}
	return nil
}

// measureLink has the peer send size-byte frames of one kind as fast as it
// can and returns the frames per second this process receives.
func (b *benchRun) measureLink(ctx context.Context, kind string, size int) (float64, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	limit := b.opts.warmup + b.opts.dur + connectTimeout
	if err := b.peer.send(peerCmd{Op: "send", Kind: kind, Addr: ln.Addr().String(), Size: size, Dur: limit}); err != nil {
		return 0, err
	}
	conn, err := acceptPeer(ln, b.peer)
	if err != nil {
		return 0, err
	}
	var recv func() ([]byte, error)
	var stop func() error
	if kind == "raw" {
		rx := benchkit.NewRawReceiver(conn, auth.DefaultMaxFrameSize)
		recv, stop = rx.Recv, conn.Close
	} else {
		cfg := linkAuth(b.key, kind)
		hctx, cancel := context.WithTimeout(ctx, connectTimeout)
		link, err := transport.NewLink(hctx, auth.Server(conn, cfg), &transport.Config{Auth: cfg})
		cancel()
		if err != nil {
			return 0, err
		}
		recv = func() ([]byte, error) { return link.Recv(context.Background()) }
		stop = link.Close
	}
	fps, err := receiveWindow(ctx, recv, stop, b.opts.warmup, b.opts.dur)
	if _, rerr := b.peer.reply(replyTimeout); err == nil {
		err = rerr
	}
	return fps, err
}

// acceptPeer accepts the peer's connection, giving up when the peer answers
// first (it failed to connect) or after connectTimeout.
func acceptPeer(ln net.Listener, peer *peerProc) (net.Conn, error) {
	type accepted struct {
		c   net.Conn
		err error
	}
	ch := make(chan accepted, 1)
	go func() {
		c, err := ln.Accept()
		ch <- accepted{c, err}
	}()
	t := time.NewTimer(connectTimeout)
	defer t.Stop()
	var err error
	select {
	case a := <-ch:
		return a.c, a.err
	case r, ok := <-peer.replies:
		_, err = checkReply(r, ok)
		if err == nil {
			err = errors.New("the peer ended before connecting")
		}
	case <-t.C:
		err = errors.New("the peer did not connect in time")
	}
	_ = ln.Close()
	if a := <-ch; a.c != nil {
		_ = a.c.Close()
	}
	return nil, err
}

// mark is the receiver's count at one moment.
type mark struct {
	at            time.Time
	frames, bytes uint64
}

// receiveWindow receives with recv in a goroutine of its own and returns the
// frames per second received between two marks dur apart, the first taken
// after warmup. The receiving goroutine counts in local variables and checks
// one atomic load per frame for a mark request, so counting costs the
// receiver next to nothing. stop ends the stream.
func receiveWindow(ctx context.Context, recv func() ([]byte, error), stop func() error, warmup, dur time.Duration) (float64, error) {
	var want atomic.Int32 // marks requested so far
	marks := make(chan mark, 2)
	done := make(chan error, 1)
	go func() {
		var frames, bytes uint64
		var taken int32
		for {
			p, err := recv()
			if err != nil {
				done <- err
				return
			}
			frames++
			bytes += uint64(len(p))
			if want.Load() != taken {
				taken++
				marks <- mark{time.Now(), frames, bytes}
			}
		}
	}()
	defer func() {
		_ = stop()
		<-done
	}()
	take := func(after time.Duration) (mark, error) {
		t := time.NewTimer(after)
		defer t.Stop()
		select {
		case <-t.C:
		case err := <-done:
			done <- err
			return mark{}, fmt.Errorf("receive: %w", err)
		case <-ctx.Done():
			return mark{}, ctx.Err()
		}
		want.Add(1)
		t.Reset(connectTimeout)
		select {
		case m := <-marks:
			return m, nil
		case err := <-done:
			done <- err
			return mark{}, fmt.Errorf("receive: %w", err)
		case <-t.C:
			return mark{}, errors.New("no frame arrived for a mark")
		case <-ctx.Done():
			return mark{}, ctx.Err()
		}
	}
	m0, err := take(warmup)
	if err != nil {
		return 0, err
	}
	m1, err := take(time.Until(m0.at.Add(dur)))
	if err != nil {
		return 0, err
	}
	return float64(m1.frames-m0.frames) / m1.at.Sub(m0.at).Seconds(), nil
}

// peerSend is the peer's side of a link measurement: connect, then send
// frames until the parent hangs up, c.Dur passes or ctx ends. Only a failure
// to connect is an error: the stream always ends in one.
func peerSend(ctx context.Context, key auth.Key, c peerCmd) error {
	var stopped atomic.Bool
	t := time.AfterFunc(c.Dur, func() { stopped.Store(true) })
	defer t.Stop()
	defer context.AfterFunc(ctx, func() { stopped.Store(true) })()
	dctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	p := make([]byte, c.Size)
	switch c.Kind {
	case "raw":
		conn, err := (&net.Dialer{}).DialContext(dctx, "tcp", c.Addr)
		if err != nil {
			return err
		}
		tx := benchkit.NewRawSender(conn)
		for !stopped.Load() && tx.Send(p) == nil {
		}
		_ = conn.Close()
		_ = tx.Close()
	case "sealed", "plain":
		link, err := transport.Dial(dctx, "tcp", c.Addr, &transport.Config{Auth: linkAuth(key, c.Kind)})
		if err != nil {
			return err
		}
		for !stopped.Load() && link.Send(ctx, p) == nil {
		}
		_ = link.Close()
	default:
		return fmt.Errorf("unknown link kind %q", c.Kind)
	}
	return nil
}
