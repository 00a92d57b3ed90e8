package benchkit

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/seed0811993b/conclave/internal/leaktest"
)

func TestMain(m *testing.M) { leaktest.Main(m) }

func TestRawRoundTrip(t *testing.T) {
	c, s := net.Pipe()
	defer s.Close()
	tx := NewRawSender(c)
	rx := NewRawReceiver(s, 1<<20)
	frames := [][]byte{[]byte("hello"), {}, nil, bytes.Repeat([]byte{7}, 100<<10)}
	go func() {
		for _, f := range frames {
			if err := tx.Send(f); err != nil {
				t.Error(err)
			}
		}
		if err := tx.Close(); err != nil {
			t.Error(err)
		}
		c.Close()
	}()
	for i, want := range frames {
		got, err := rx.Recv()
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("frame %d: %d bytes, %v; want %d bytes", i, len(got), err, len(want))
		}
	}
	if _, err := rx.Recv(); !errors.Is(err, io.EOF) {
		t.Fatalf("after the last frame: %v", err)
	}
}

func TestRawSenderReportsWriteFailure(t *testing.T) {
	c, s := net.Pipe()
	s.Close()
	tx := NewRawSender(c)
	p := make([]byte, 1<<10)
	var err error
	for i := 0; err == nil && i < 1000*RawQueueLen; i++ {
		err = tx.Send(p)
	}
	if err == nil {
		t.Fatal("Send kept succeeding on a dead connection")
	}
	if cerr := tx.Close(); cerr == nil {
		t.Error("Close reported no error")
	}
}

func TestRawReceiverLimit(t *testing.T) {
	rx := NewRawReceiver(bytes.NewReader([]byte{0, 0, 1, 0}), 255)
	if _, err := rx.Recv(); err == nil {
		t.Fatal("a 256-byte frame passed a 255-byte limit")
	}
}

func TestTLSHandshakes(t *testing.T) {
	cert, err := SelfSignedCert()
	if err != nil {
		t.Fatal(err)
	}
	ccfg, err := TLSClientConfig(cert.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	for _, waitHangup := range []bool{false, true} {
		inner, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		srv := ServeHandshakes(tls.NewListener(inner, TLSServerConfig(cert)), waitHangup)
		d := &tls.Dialer{Config: ccfg}
		dial := func(ctx context.Context) (net.Conn, error) { return d.DialContext(ctx, "tcp", srv.Addr().String()) }
		n, err := Handshakes(context.Background(), dial, func(done int) bool { return done < 5 })
		if err != nil || n != 5 {
			t.Fatalf("waitHangup %v: %d handshakes, %v", waitHangup, n, err)
		}
		// A TLS 1.3 client is done half a round trip before the server.
		for deadline := time.Now().Add(5 * time.Second); srv.Completed()+srv.Failed() < 5 && time.Now().Before(deadline); {
			time.Sleep(time.Millisecond)
		}
		if err := srv.Close(); err != nil {
			t.Fatal(err)
		}
		if srv.Completed() != 5 || srv.Failed() != 0 {
			t.Errorf("waitHangup %v: server saw %d completed, %d failed", waitHangup, srv.Completed(), srv.Failed())
		}
	}
	if _, err := TLSClientConfig([]byte("not a certificate")); err == nil {
		t.Error("TLSClientConfig accepted garbage")
	}
}
