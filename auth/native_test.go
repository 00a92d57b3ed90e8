package auth

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"testing"
	"time"

	"golang.org/x/net/nettest"
)

func testKey(t testing.TB) Key {
	t.Helper()
	k, err := GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// tcpPair returns a connected loopback TCP pair.
func tcpPair(t testing.TB) (client, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type res struct {
		c   net.Conn
		err error
	}
	ch := make(chan res, 1)
	go func() {
		c, err := ln.Accept()
		ch <- res{c, err}
	}()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	r := <-ch
	if r.err != nil {
		t.Fatal(r.err)
	}
	t.Cleanup(func() { client.Close(); r.c.Close() })
	return client, r.c
}

// handshakePair runs both sides of a handshake concurrently and returns the
// Conns and each side's error.
func handshakePair(t testing.TB, ccfg, scfg *Config) (c, s *Conn, cerr, serr error) {
	t.Helper()
	rc, rs := tcpPair(t)
	c, s = Client(rc, ccfg), Server(rs, scfg)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- s.HandshakeContext(ctx) }()
	cerr = c.HandshakeContext(ctx)
	serr = <-done
	t.Cleanup(func() { c.Close(); s.Close() })
	return c, s, cerr, serr
}

// sealedPair returns both ends of a finished native handshake.
func sealedPair(t testing.TB) (c, s *Conn) {
	t.Helper()
	key := testKey(t)
	c, s, cerr, serr := handshakePair(t, &Config{Key: key}, &Config{Key: key})
	if cerr != nil || serr != nil {
		t.Fatal(cerr, serr)
	}
	return c, s
}

func TestNativeHandshake(t *testing.T) {
	key := testKey(t)
	c, s, cerr, serr := handshakePair(t,
		&Config{Key: key, Name: "worker-1", MaxFrameSize: 1 << 20},
		&Config{Key: key, Name: "coordinator"})
	if cerr != nil || serr != nil {
		t.Fatalf("handshake: client %v, server %v", cerr, serr)
	}
	cs, ss := c.ConnectionState(), s.ConnectionState()
	if !cs.HandshakeComplete || !cs.Sealed || cs.Version != 1 || cs.Mode != ModeNative {
		t.Errorf("client state %+v", cs)
	}
	if cs.PeerName != "coordinator" || ss.PeerName != "worker-1" {
		t.Errorf("peer names: client sees %q, server sees %q", cs.PeerName, ss.PeerName)
	}
	if cs.CipherSuite != ss.CipherSuite || cs.CipherSuite != defaultCiphers[0] {
		t.Errorf("cipher: client %v server %v", cs.CipherSuite, ss.CipherSuite)
	}
	if ss.PeerMaxFrameSize != 1<<20 || cs.PeerMaxFrameSize != DefaultMaxFrameSize {
		t.Errorf("frame limits: server sees peer %d, client sees peer %d", ss.PeerMaxFrameSize, cs.PeerMaxFrameSize)
	}
	echoBothWays(t, c, s)
}

// echoBothWays sends a large random message each way, concurrently, so that
// records are split, batched and decrypted both in place and straight into
// the caller's buffer.
func echoBothWays(t *testing.T, a, b net.Conn) {
	t.Helper()
	for _, pair := range [][2]net.Conn{{a, b}, {b, a}} {
		msg := make([]byte, 3<<20+123)
		rand.Read(msg)
		errc := make(chan error, 1)
		go func() {
			_, err := pair[0].Write(msg)
			errc <- err
		}()
		got := make([]byte, len(msg))
		if _, err := io.ReadFull(pair[1], got); err != nil {
			t.Fatalf("read: %v", err)
		}
		if err := <-errc; err != nil {
			t.Fatalf("write: %v", err)
		}
		if !bytes.Equal(got, msg) {
			t.Fatal("message corrupted in transit")
		}
	}
}

func TestNativeWrongKey(t *testing.T) {
	_, _, cerr, serr := handshakePair(t, &Config{Key: testKey(t)}, &Config{Key: testKey(t)})
	if !errors.Is(serr, ErrAuthFailed) {
		t.Errorf("server: %v, want ErrAuthFailed", serr)
	}
	if !errors.Is(cerr, ErrAuthFailed) {
		t.Errorf("client: %v, want ErrAuthFailed", cerr)
	}
}

func TestNativeCipherNegotiation(t *testing.T) {
	key := testKey(t)
	for _, tc := range []struct {
		name           string
		client, server []CipherSuite
		want           CipherSuite
		wantErr        error
	}{
		{"server preference wins", []CipherSuite{ChaCha20Poly1305, AES256GCM}, []CipherSuite{AES256GCM, ChaCha20Poly1305}, AES256GCM, nil},
		{"only chacha offered", []CipherSuite{ChaCha20Poly1305}, []CipherSuite{AES256GCM, ChaCha20Poly1305}, ChaCha20Poly1305, nil},
		{"nothing in common", []CipherSuite{ChaCha20Poly1305}, []CipherSuite{AES256GCM}, 0, ErrUnsupportedCipher},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, s, cerr, serr := handshakePair(t, &Config{Key: key, Ciphers: tc.client}, &Config{Key: key, Ciphers: tc.server})
			if tc.wantErr != nil {
				if !errors.Is(cerr, tc.wantErr) || !errors.Is(serr, tc.wantErr) {
					t.Fatalf("client %v, server %v; want %v", cerr, serr, tc.wantErr)
				}
				return
			}
			if cerr != nil || serr != nil {
				t.Fatalf("client %v, server %v", cerr, serr)
			}
			if got := c.ConnectionState().CipherSuite; got != tc.want {
				t.Fatalf("cipher %v, want %v", got, tc.want)
			}
			echoBothWays(t, c, s)
		})
	}
}

func TestNativeSilentPeerTimesOut(t *testing.T) {
	rc, _ := tcpPair(t)
	c := Client(rc, &Config{Key: testKey(t), HandshakeTimeout: 200 * time.Millisecond})
	start := time.Now()
	err := c.Handshake()
	if !errors.Is(err, ErrHandshakeTimeout) {
		t.Fatalf("err %v, want ErrHandshakeTimeout", err)
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Fatalf("timeout took %v", el)
	}
}

func TestNativeContextCancelAborts(t *testing.T) {
	_, rs := tcpPair(t)
	s := Server(rs, &Config{Key: testKey(t)})
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- s.HandshakeContext(ctx) }()
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("err %v, want context.Canceled", err)
	}
}

func TestCloseNotifyIsEOF(t *testing.T) {
	c, s := sealedPair(t)
	if _, err := c.Write([]byte("last words")); err != nil {
		t.Fatal(err)
	}
	c.Close()
	got, err := io.ReadAll(s)
	if err != nil || string(got) != "last words" {
		t.Fatalf("ReadAll = %q, %v; want the data then a clean EOF", got, err)
	}
}

func TestTruncationIsNotEOF(t *testing.T) {
	c, s := sealedPair(t)
	c.NetConn().Close() // no close_notify
	_, err := io.ReadAll(s)
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("err %v, want io.ErrUnexpectedEOF", err)
	}
}

func TestTamperedRecordIsRejected(t *testing.T) {
	c, s := sealedPair(t)
	// Seal a record as the client would, flip one ciphertext bit, and write
	// it raw.
	rec, err := c.out.seal(nil, recordData, []byte("pay 10 coins"))
	if err != nil {
		t.Fatal(err)
	}
	rec[len(rec)-20] ^= 1
	if _, err := c.NetConn().Write(rec); err != nil {
		t.Fatal(err)
	}
	_, err = s.Read(make([]byte, 64))
	if !errors.Is(err, ErrProtocol) {
		t.Fatalf("err %v, want ErrProtocol", err)
	}
	if _, err2 := s.Read(make([]byte, 64)); !errors.Is(err2, ErrProtocol) {
		t.Fatalf("second read %v: the failure must be permanent", err2)
	}
}

func TestRekeyKeepsBothSidesInStep(t *testing.T) {
	for _, suite := range []CipherSuite{AES256GCM, ChaCha20Poly1305} {
		secret := bytes.Repeat([]byte{7}, 32)
		var w, r halfConn
		if err := w.init(suite, secret); err != nil {
			t.Fatal(err)
		}
		if err := r.init(suite, secret); err != nil {
			t.Fatal(err)
		}
		w.seq, r.seq = rekeyInterval-2, rekeyInterval-2
		firstKey := w.secret
		for i := 0; i < 4; i++ {
			msg := []byte{byte(i)}
			rec, err := w.seal(nil, recordData, msg)
			if err != nil {
				t.Fatal(err)
			}
			got, err := r.open(nil, rec[:recordHeaderLen], rec[recordHeaderLen:])
			if err != nil || !bytes.Equal(got, msg) {
				t.Fatalf("%v record %d: %q, %v", suite, i, got, err)
			}
		}
		if bytes.Equal(w.secret, firstKey) {
			t.Fatalf("%v: no rekey after %d records", suite, rekeyInterval)
		}
	}
}

func TestConnPassesNettest(t *testing.T) {
	key := testKey(t)
	nettest.TestConn(t, func() (c1, c2 net.Conn, stop func(), err error) {
		ln, err := nettest.NewLocalListener("tcp")
		if err != nil {
			return nil, nil, nil, err
		}
		defer ln.Close()
		type res struct {
			c   net.Conn
			err error
		}
		ch := make(chan res, 1)
		go func() {
			c, err := ln.Accept()
			if err != nil {
				ch <- res{nil, err}
				return
			}
			s := Server(c, &Config{Key: key})
			ch <- res{s, s.Handshake()}
		}()
		c, err := Dial(context.Background(), "tcp", ln.Addr().String(), &Config{Key: key})
		if err != nil {
			return nil, nil, nil, err
		}
		r := <-ch
		if r.err != nil {
			return nil, nil, nil, r.err
		}
		return c, r.c, func() { c.Close(); r.c.Close() }, nil
	})
}

// TestWriteVectoredStartsRecords checks that each buffer of WriteVectored
// starts a record of its own (what lets a reader decrypt a large payload
// straight into place), splitting at 64 KiB, and that the bytes arrive as
// their concatenation.
func TestWriteVectoredStartsRecords(t *testing.T) {
	c, s := sealedPair(t)
	bufs := [][]byte{make([]byte, 10), make([]byte, 70000), nil, make([]byte, 5)}
	for _, b := range bufs {
		rand.Read(b)
	}
	errc := make(chan error, 1)
	go func() {
		n, err := c.WriteVectored(bufs)
		if err == nil && n != 70015 {
			err = fmt.Errorf("wrote %d bytes, want 70015", n)
		}
		errc <- err
	}()
	// Read the raw records: the plaintext lengths must follow the buffers.
	var lens []int
	var got []byte
	raw := s.NetConn()
	for total := 0; total < 70015; {
		hdr := make([]byte, recordHeaderLen)
		if _, err := io.ReadFull(raw, hdr); err != nil {
			t.Fatal(err)
		}
		_, clen, err := parseRecordHeader(hdr)
		if err != nil {
			t.Fatal(err)
		}
		ct := make([]byte, clen)
		if _, err := io.ReadFull(raw, ct); err != nil {
			t.Fatal(err)
		}
		pt, err := s.in.open(nil, hdr, ct)
		if err != nil {
			t.Fatal(err)
		}
		lens = append(lens, len(pt))
		got = append(got, pt...)
		total += len(pt)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if want := []int{10, 65536, 70000 - 65536, 5}; !slices.Equal(lens, want) {
		t.Fatalf("record plaintext lengths %v, want %v", lens, want)
	}
	if !bytes.Equal(got, bytes.Join(bufs, nil)) {
		t.Fatal("the records do not hold the buffers' bytes in order")
	}
}
