package transport

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"io"
	"math/big"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/seed0811993b/conclave/auth"
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
// receiver that allocates each payload.
func BenchmarkRawFraming(b *testing.B) {
	for _, size := range benchSizes {
		b.Run(strconv.Itoa(size), func(b *testing.B) {
			c, s := rawTCPPair(b)
			q := make(chan []byte, 1024)
			wdone := make(chan struct{})
			go func() {
				defer close(wdone)
				w := bufio.NewWriterSize(c, 64<<10)
				var hdr [4]byte
				for p := range q {
					for {
						binary.BigEndian.PutUint32(hdr[:], uint32(len(p)))
						w.Write(hdr[:])
						w.Write(p)
						select {
						case p = <-q:
							if p != nil {
								continue
							}
						default:
						}
						break
					}
					w.Flush()
				}
			}()
			r := bufio.NewReaderSize(s, 64<<10)
			benchOneWay(b, size,
				func(_ context.Context, p []byte) error { q <- p; return nil },
				func(context.Context) ([]byte, error) {
					var hdr [4]byte
					if _, err := io.ReadFull(r, hdr[:]); err != nil {
						return nil, err
					}
					p := make([]byte, binary.BigEndian.Uint32(hdr[:]))
					_, err := io.ReadFull(r, p)
					return p, err
				})
			close(q)
			<-wdone
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
		cert := selfSigned(b)
		ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13})
		if err != nil {
			b.Fatal(err)
		}
		pool := x509.NewCertPool()
		pool.AddCert(cert.Leaf)
		ccfg := &tls.Config{RootCAs: pool, ServerName: "bench", MinVersion: tls.VersionTLS13, ClientSessionCache: nil}
		benchHandshakes(b, ln, func(ctx context.Context) (net.Conn, error) {
			return (&tls.Dialer{Config: ccfg}).DialContext(ctx, "tcp", ln.Addr().String())
		})
	})
}

func benchHandshakes(b *testing.B, ln net.Listener, dial func(context.Context) (net.Conn, error)) {
	defer ln.Close()
	type handshaker interface{ HandshakeContext(context.Context) error }
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				if err := c.(handshaker).HandshakeContext(context.Background()); err != nil {
					return
				}
				c.Read(make([]byte, 1)) // wait for the client to hang up
			}()
		}
	}()
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		c, err := dial(ctx)
		if err != nil {
			b.Fatal(err)
		}
		c.Close()
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "handshakes/s")
}

func selfSigned(b *testing.B) tls.Certificate {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), DNSNames: []string{"bench"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		b.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		b.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: k, Leaf: leaf}
}
