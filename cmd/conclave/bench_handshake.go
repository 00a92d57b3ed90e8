package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"time"

	"github.com/seed0811993b/conclave/auth"
	"github.com/seed0811993b/conclave/internal/benchkit"
)

// Handshake kinds: conclave's two modes, Go's TLS 1.3 and CPython's own
// multiprocessing.connection (both ends Python).
var handshakeKinds = []string{"native", "python-mode", "tls13", "cpython"}

// handshakes measures every handshake kind -runs times, interleaved.
func (b *benchRun) handshakes(ctx context.Context) error {
	py, err := findPython(ctx)
	if err != nil {
		b.res.Notes = append(b.res.Notes, "cpython: not found")
	} else {
		b.res.Notes = append(b.res.Notes, fmt.Sprintf("cpython: %s (%s)", py.version, py.exe))
	}
	perRun := map[string][]float64{}
	for run := 1; run <= b.opts.runs; run++ {
		for _, kind := range handshakeKinds {
			var hps float64
			switch {
			case kind != "cpython":
				hps, err = b.measureHandshake(ctx, kind)
			case py != nil:
				hps, err = b.measureCPython(ctx, py)
			default:
				continue
			}
			if err != nil {
				return fmt.Errorf("bench: handshake %s: %w", kind, err)
			}
			perRun[kind] = append(perRun[kind], hps)
			b.progress("handshake %-11s run %d/%d: %.0f handshakes/s", kind, run, b.opts.runs, hps)
		}
	}
	med := map[string]float64{}
	for _, kind := range handshakeKinds {
		if runs := perRun[kind]; len(runs) > 0 {
			med[kind] = median(runs)
			b.res.Handshake = append(b.res.Handshake, handshakeFigure{Kind: kind, PerSec: med[kind],
				Spread: spread(runs), RunsPerSec: runs})
		}
	}
	b.res.HandshakeRatios = append(b.res.HandshakeRatios, newRatio("native/tls13", 0, med["native"], med["tls13"], 2))
	if py != nil {
		b.res.HandshakeRatios = append(b.res.HandshakeRatios,
			newRatio("python-mode/cpython", 0, med["python-mode"], med["cpython"], 2))
	}
	return nil
}

// measureHandshake serves one kind of handshake here while the peer dials in
// a loop, and returns the peer's count of complete handshakes per second.
func (b *benchRun) measureHandshake(ctx context.Context, kind string) (float64, error) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	var ln net.Listener
	var cert []byte
	if kind == "tls13" {
		ln = tls.NewListener(inner, benchkit.TLSServerConfig(b.tlsCert))
		cert = b.tlsCert.Certificate[0]
	} else {
		ln = auth.NewListener(inner, linkAuth(b.key, kind))
	}
	srv := benchkit.ServeHandshakes(ln, false)
	defer srv.Close()
	err = b.peer.send(peerCmd{Op: "dial", Kind: kind, Addr: ln.Addr().String(),
		Warmup: b.opts.warmup, Dur: b.opts.dur, Cert: cert})
	if err != nil {
		return 0, err
	}
	r, err := b.peer.reply(b.opts.warmup + b.opts.dur + connectTimeout + replyTimeout)
	if err != nil {
		return 0, err
	}
	if f := srv.Failed(); f > 0 {
		b.progress("handshake %s: %d failed on the server side", kind, f)
	}
	return float64(r.Count) / r.Secs, nil
}

// peerDial is the peer's side of a handshake measurement: handshakes back to
// back for c.Warmup, then counted for c.Dur.
func peerDial(ctx context.Context, key auth.Key, c peerCmd) (peerReply, error) {
	var dial benchkit.DialFunc
	switch c.Kind {
	case "native", "python-mode":
		d := &auth.Dialer{Config: linkAuth(key, c.Kind)}
		dial = func(ctx context.Context) (net.Conn, error) { return d.DialContext(ctx, "tcp", c.Addr) }
	case "tls13":
		cfg, err := benchkit.TLSClientConfig(c.Cert)
		if err != nil {
			return peerReply{}, err
		}
		d := &tls.Dialer{Config: cfg}
		dial = func(ctx context.Context) (net.Conn, error) { return d.DialContext(ctx, "tcp", c.Addr) }
	default:
		return peerReply{}, fmt.Errorf("unknown handshake kind %q", c.Kind)
	}
	if _, err := benchkit.Handshakes(ctx, dial, benchkit.Until(time.Now().Add(c.Warmup))); err != nil {
		return peerReply{}, err
	}
	start := time.Now()
	n, err := benchkit.Handshakes(ctx, dial, benchkit.Until(start.Add(c.Dur)))
	return peerReply{Count: n, Secs: time.Since(start).Seconds()}, err
}
