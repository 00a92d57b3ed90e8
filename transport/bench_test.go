package transport

import (
	"context"
	"crypto/tls"
	"net"
	"strconv"
	"testing"

	"github.com/seed0811993b/conclave/auth"
	"github.com/seed0811993b/conclave/internal/benchkit"
)

var benchSizes = []int{64, 1 << 10, 64 << 10}

// BenchmarkLink measures one-way frames over loopback TCP through the public
// Link API: sealed (native handshake) and plain (no handshake, same framing).
// The anchor, raw length-prefixed framing through a queue, is BenchmarkRawFraming.
func BenchmarkLink(b *testing.B) {
	for _, mode := range []string{"sealed", "plain"} {
		for _, size := range benchSizes {
			b.Run(mode+"/"+strconv.Itoa(size), func(b *testing.B) {
				var tx, rx *Link
				if mode == "sealed" {
					cfg := testConfig(b, nil)
					tx, rx = linkPair(b, cfg, cfg)
				} else {
					tx, rx = plainLinkPair(b)
				}
				benchOneWay(b, size, func(ctx context.Context, p []byte) error { return tx.Send(ctx, p) },
					func(ctx context.Context) ([]byte, error) { return rx.Recv(ctx) })
			})
		}
	}
}

func plainLinkPair(b testing.TB) (*Link, *Link) {
	c, s := rawTCPPair(b)
	cfg := testConfig(b, nil)
	tx, err := NewLink(context.Background(), c, cfg)
	if err != nil {
		b.Fatal(err)
	}
	rx, err := NewLink(context.Background(), s, cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { tx.Close(); rx.Close() })
	return tx, rx
}

func rawTCPPair(b testing.TB) (net.Conn, net.Conn) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	s, err := ln.Accept()
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close(); s.Close() })
	return c, s
}

// benchOneWay sends b.N frames of size bytes from one goroutine and receives
// them in another, reporting frames/s and MB/s.
func benchOneWay(b *testing.B, size int, send func(context.Context, []byte) error, recv func(context.Context) ([]byte, error)) {
	ctx := context.Background()
	p := make([]byte, size)
	b.SetBytes(int64(size))
	b.ReportAllocs()
	done := make(chan error, 1)
	b.ResetTimer()
	go func() {
		for i := 0; i < b.N; i++ {
			if _, err := recv(ctx); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	for i := 0; i < b.N; i++ {
		if err := send(ctx, p); err != nil {
			b.Fatal(err)
		}
	}
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "frames/s")
}

// BenchmarkRawFraming is the anchor: 4-byte length prefix framing with no
// authentication, senders handing frames to a writer goroutine through a
// channel that flushes a bufio.Writer when the channel runs dry, and a
// receiver that allocates each payload (benchkit.RawSender, RawReceiver).
func BenchmarkRawFraming(b *testing.B) {
	for _, size := range benchSizes {
		b.Run(strconv.Itoa(size), func(b *testing.B) {
			c, s := rawTCPPair(b)
			tx := benchkit.NewRawSender(c)
			rx := benchkit.NewRawReceiver(s, auth.DefaultMaxFrameSize)
			benchOneWay(b, size,
				func(_ context.Context, p []byte) error { return tx.Send(p) },
				func(context.Context) ([]byte, error) { return rx.Recv() })
			if err := tx.Close(); err != nil {
				b.Fatal(err)
			}
		})
	}
}

// BenchmarkHandshake measures complete handshakes per second, TCP connect
// included, for the native and Python modes, next to Go's TLS 1.3 with its
// default (hybrid post-quantum) key exchange, all in one process.
func BenchmarkHandshake(b *testing.B) {
	key, _ := auth.GenerateKey(nil)
	for _, mode := range []auth.Mode{auth.ModeNative, auth.ModePython} {
		b.Run(mode.String(), func(b *testing.B) {
			cfg := &auth.Config{Key: key, Mode: mode}
			ln, err := auth.Listen("tcp", "127.0.0.1:0", cfg)
			if err != nil {
				b.Fatal(err)
			}
			benchHandshakes(b, ln, func(ctx context.Context) (net.Conn, error) {
				return (&auth.Dialer{Config: cfg}).DialContext(ctx, "tcp", ln.Addr().String())
			})
		})
	}
	b.Run("tls13", func(b *testing.B) {
		cert, err := benchkit.SelfSignedCert()
		if err != nil {
			b.Fatal(err)
		}
		ln, err := tls.Listen("tcp", "127.0.0.1:0", benchkit.TLSServerConfig(cert))
		if err != nil {
			b.Fatal(err)
		}
		ccfg, err := benchkit.TLSClientConfig(cert.Certificate[0])
		if err != nil {
			b.Fatal(err)
		}
		benchHandshakes(b, ln, func(ctx context.Context) (net.Conn, error) {
			return (&tls.Dialer{Config: ccfg}).DialContext(ctx, "tcp", ln.Addr().String())
		})
	})
}

// benchHandshakes runs b.N handshakes against ln, whose connections are
// handshaked and then held until the client hangs up.
func benchHandshakes(b *testing.B, ln net.Listener, dial benchkit.DialFunc) {
	srv := benchkit.ServeHandshakes(ln, true)
	defer srv.Close()
	b.ReportAllocs()
	b.ResetTimer()
	n, err := benchkit.Handshakes(context.Background(), dial, func(done int) bool { return done < b.N })
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "handshakes/s")
}
