package transport_test

// Attack tests on sealed records: an on-path attacker edits, replays, reorders,
// drops or injects records after the handshake. Helpers: attack_proxy_test.go.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/seed0811993b/conclave/auth"
	"github.com/seed0811993b/conclave/transport"
)

// TestAttackTamperReplayInjectReorderDrop: an on-path attacker edits the
// sealed record stream (Python weakness 4). The receiver delivers the frames
// before the attack point, then fails; never an altered, repeated or foreign
// frame.
func TestAttackTamperReplayInjectReorderDrop(t *testing.T) {
	key := attackKey(t)
	cfg := attackConfig(key)
	srv := startServer(t, cfg)
	m := startMITM(t, srv.addr, relay(relayOpts{}))
	const nFrames = 4
	payload := func(i int) []byte { // equal sizes: every record is 4+104+16 = 124 bytes long
		return fmt.Appendf(nil, "frame-%d|%0100d", i, i)
	}

	// open runs an honest session through the proxy. The server sends the
	// client one frame; then the client sends nFrames frames, one record
	// each, and closes. The proxy holds the client's records back. The
	// returned records are the client's data records r[0..nFrames-1], its
	// close_notify r[closeRec] and the server's data record r[srvRec].
	const closeRec, srvRec = nFrames, nFrames + 1
	open := func(t *testing.T) (*session, *transport.Link, [][]byte) {
		t.Helper()
		c := dialLink(t, m.addr(), cfg)
		sess := m.next(t)
		s := srv.accept(t)
		ctx := attackCtx(t, attackWait)
		if err := s.Send(ctx, payload(9)); err != nil {
			t.Fatal(err)
		}
		if got, err := c.Recv(ctx); err != nil || !bytes.Equal(got, payload(9)) {
			t.Fatalf("client Recv = %q, %v", got, err)
		}
		_, s2c := sess.seen()
		s2c, err := skipFrames(s2c, 2) // ServerHello, ServerFinished
		if err != nil {
			t.Fatal(err)
		}
		back, err := readRecord(bytes.NewReader(s2c))
		if err != nil {
			t.Fatalf("server record: %v", err)
		}
		for i := range nFrames {
			if err := c.Send(ctx, payload(i)); err != nil {
				t.Fatal(err)
			}
			if err := c.Flush(ctx); err != nil {
				t.Fatal(err)
			}
		}
		_ = c.Close()
		recs := append(sess.takeRecords(t, nFrames+1), back)
		for i, r := range recs {
			want := []byte{recordData, 0, 0, byte(4 + len(payload(i)) + aeadTagLen)}
			if i == closeRec {
				want = []byte{recordClose, 0, 0, aeadTagLen}
			}
			if !bytes.Equal(r[:recordHeaderLen], want) || len(r) != recordHeaderLen+int(want[3]) {
				t.Fatalf("record %d: header %x, %d bytes; want header %x: one frame per record, then close_notify", i, r[:4], len(r), want)
			}
		}
		return sess, s, recs
	}

	// A different session with the same key, delivered honestly; its records
	// are then injected into other sessions at the same sequence numbers.
	foreignSess, foreignSrv, foreign := open(t)
	mustWrite(t, foreignSess.server, bytes.Join(foreign[:closeRec+1], nil))
	for i := range nFrames {
		if got, err := foreignSrv.Recv(attackCtx(t, attackWait)); err != nil || !bytes.Equal(got, payload(i)) {
			t.Fatalf("foreign session frame %d = %q, %v", i, got, err)
		}
	}
	if _, err := foreignSrv.Recv(attackCtx(t, attackWait)); !errors.Is(err, io.EOF) {
		t.Fatalf("foreign session end = %v, want io.EOF", err)
	}

	flip := func(r []byte, i int, bit byte) []byte {
		r = bytes.Clone(r)
		r[i] ^= bit
		return r
	}
	join := func(rs ...[]byte) []byte { return bytes.Join(rs, nil) }
	for _, tc := range []struct {
		name      string
		wire      func(r [][]byte) []byte
		closeConn bool  // the attacker then closes its connection to the server
		delivered int   // frames the receiver must deliver first
		want      error // and then fail with
	}{
		{"untouched stream (control)", func(r [][]byte) []byte { return join(r[:closeRec+1]...) }, false, nFrames, io.EOF},
		{"flip ciphertext bit", func(r [][]byte) []byte { return join(r[0], flip(r[1], 20, 0x01), r[2], r[3]) }, false, 1, auth.ErrProtocol},
		{"flip tag bit", func(r [][]byte) []byte { return join(r[0], flip(r[1], len(r[1])-1, 0x80), r[2], r[3]) }, false, 1, auth.ErrProtocol},
		{"header type data->close", func(r [][]byte) []byte { return join(r[0], flip(r[1], 0, recordData^recordClose), r[2], r[3]) }, false, 1, auth.ErrProtocol},
		{"header type unknown", func(r [][]byte) []byte { return join(r[0], flip(r[1], 0, 0x01), r[2], r[3]) }, false, 1, auth.ErrProtocol},
		{"header length minus 8", func(r [][]byte) []byte { return join(r[0], flip(r[1], 3, 0x08), r[2], r[3]) }, false, 1, auth.ErrProtocol},
		{"header length plus 1", func(r [][]byte) []byte { return join(r[0], flip(r[1], 3, 0x01), r[2], r[3]) }, false, 1, auth.ErrProtocol},
		{"header length over the limit", func(r [][]byte) []byte { return join(r[0], flip(r[1], 1, 0x80), r[2], r[3]) }, false, 1, auth.ErrProtocol},
		{"header length zero", func(r [][]byte) []byte {
			h := bytes.Clone(r[1])
			h[1], h[2], h[3] = 0, 0, 0
			return join(r[0], h, r[2], r[3])
		}, false, 1, auth.ErrProtocol},
		{"replay", func(r [][]byte) []byte { return join(r[0], r[1], r[1], r[2], r[3]) }, false, 2, auth.ErrProtocol},
		{"replay first record at the end", func(r [][]byte) []byte { return join(r[0], r[1], r[2], r[3], r[0]) }, false, 4, auth.ErrProtocol},
		{"reorder", func(r [][]byte) []byte { return join(r[0], r[2], r[1], r[3]) }, false, 1, auth.ErrProtocol},
		{"drop", func(r [][]byte) []byte { return join(r[0], r[2], r[3]) }, false, 1, auth.ErrProtocol},
		{"inject foreign record, same sequence number", func(r [][]byte) []byte { return join(r[0], foreign[1], r[2], r[3]) }, false, 1, auth.ErrProtocol},
		{"inject foreign record, extra", func(r [][]byte) []byte { return join(r[0], foreign[1], r[1], r[2], r[3]) }, false, 1, auth.ErrProtocol},
		{"reflect the server's record back, same sequence number", func(r [][]byte) []byte { return join(r[srvRec], r[0], r[1]) }, false, 0, auth.ErrProtocol},
		{"reflect the server's record back, later", func(r [][]byte) []byte { return join(r[0], r[srvRec], r[1]) }, false, 1, auth.ErrProtocol},
		{"inject random record", func(r [][]byte) []byte { return join(r[0], forgedRecord(recordData, len(r[1])-4), r[1]) }, false, 1, auth.ErrProtocol},
		{"forged close_notify", func(r [][]byte) []byte { return join(r[0], forgedRecord(recordClose, aeadTagLen)) }, false, 1, auth.ErrProtocol},
		{"real record relabelled close_notify", func(r [][]byte) []byte {
			return join(r[0], flip(r[1], 0, recordData^recordClose))
		}, false, 1, auth.ErrProtocol},
		{"close_notify relabelled data", func(r [][]byte) []byte {
			return join(join(r[:nFrames]...), flip(r[closeRec], 0, recordData^recordClose))
		}, false, nFrames, auth.ErrProtocol},
		{"close_notify moved early", func(r [][]byte) []byte { return join(r[0], r[closeRec]) }, false, 1, auth.ErrProtocol},
		{"foreign close_notify", func(r [][]byte) []byte { return join(r[0], foreign[closeRec]) }, false, 1, auth.ErrProtocol},
		// Truncation must not pass for a clean close.
		{"truncate at a record boundary", func(r [][]byte) []byte { return r[0] }, true, 1, io.ErrUnexpectedEOF},
		{"truncate inside a record", func(r [][]byte) []byte { return join(r[0], r[1][:30]) }, true, 1, io.ErrUnexpectedEOF},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sess, s, recs := open(t)
			mustWrite(t, sess.server, tc.wire(recs))
			if tc.closeConn {
				_ = sess.server.Close()
			}
			ctx := attackCtx(t, attackWait)
			var got [][]byte
			var err error
			for len(got) <= nFrames+1 {
				var p []byte
				if p, err = s.Recv(ctx); err != nil {
					break
				}
				got = append(got, p)
			}
			if errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("receiver hung after %d frames", len(got))
			}
			for i, p := range got {
				if i >= tc.delivered || !bytes.Equal(p, payload(i)) {
					t.Fatalf("receiver delivered frame %d = %q; want only %d untouched frames before the attack", i, p, tc.delivered)
				}
			}
			if len(got) != tc.delivered {
				t.Fatalf("receiver delivered %d frames, want %d", len(got), tc.delivered)
			}
			if !errors.Is(err, tc.want) || (tc.want != io.EOF && errors.Is(err, io.EOF)) {
				t.Fatalf("receiver failed with %v, want %v (and not a clean io.EOF)", err, tc.want)
			}
			if !errors.Is(s.Err(), tc.want) {
				t.Fatalf("receiver Link.Err = %v, want %v", s.Err(), tc.want)
			}
			if _, err := s.Recv(ctx); !errors.Is(err, tc.want) {
				t.Fatalf("Recv after the failure = %v, want the same sticky error", err)
			}
		})
	}

	// The other direction: the attacker flips a bit in the server's second
	// record; the client delivers the first and fails.
	t.Run("server to client: flip ciphertext bit", func(t *testing.T) {
		m := startMITM(t, srv.addr, relay(relayOpts{autoForward: true, tamperS2C: func(i int, rec []byte) []byte {
			if i == 1 {
				rec = bytes.Clone(rec)
				rec[recordHeaderLen+3] ^= 0x04
			}
			return rec
		}}))
		c := dialLink(t, m.addr(), cfg)
		s := srv.accept(t)
		ctx := attackCtx(t, attackWait)
		for i := range 3 {
			if err := s.Send(ctx, payload(i)); err != nil {
				t.Fatal(err)
			}
			if err := s.Flush(ctx); err != nil {
				t.Fatal(err)
			}
		}
		if got, err := c.Recv(ctx); err != nil || !bytes.Equal(got, payload(0)) {
			t.Fatalf("client Recv = %q, %v; want frame 0", got, err)
		}
		if got, err := c.Recv(ctx); !errors.Is(err, auth.ErrProtocol) {
			t.Fatalf("client Recv after a tampered record = %q, %v; want auth.ErrProtocol", got, err)
		}
	})
}
