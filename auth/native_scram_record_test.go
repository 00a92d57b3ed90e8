package auth

import (
	"bytes"
	"crypto/sha256"
	"net"
	"sync"
	"testing"

	"github.com/seed0811993b/conclave/internal/frame"
)

// recordingConn keeps every byte a connection sends and receives, as a
// passive eavesdropper on the wire would.
type recordingConn struct {
	net.Conn
	mu        sync.Mutex
	sent, got bytes.Buffer
}

func (c *recordingConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.mu.Lock()
	c.sent.Write(p[:n])
	c.mu.Unlock()
	return n, err
}

func (c *recordingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.mu.Lock()
	c.got.Write(p[:n])
	c.mu.Unlock()
	return n, err
}

// nextFrame splits the first handshake frame, header included, off wire.
func nextFrame(t *testing.T, wire *[]byte) (frameBytes, payload []byte) {
	t.Helper()
	n, hdr, _, err := frame.ParseHeader(*wire, maxHandshakeFrame)
	if err != nil || len(*wire) < hdr+n {
		t.Fatalf("recording holds no whole frame: %v", err)
	}
	f := (*wire)[:hdr+n]
	*wire = (*wire)[hdr+n:]
	return f, f[hdr:]
}

// TestNativeUserLoginRecordingTestsNoGuess records real user logins over
// TCP and plays the eavesdropper who has guessed the right password: from
// the recording alone it computes the client proof and the server signature
// that password gives. They must not match what crossed the wire, or every
// guess could be checked offline against one recorded login.
func TestNativeUserLoginRecordingTestsNoGuess(t *testing.T) {
	users := userServer(t)
	key := testKey(t)
	for _, tc := range []struct {
		name           string
		client, server *Config
	}{
		{"user only", &Config{User: "alice", Password: "pencil"}, &Config{Users: users, Require: RequireUser}},
		{"key and user", &Config{Key: key, User: "alice", Password: "pencil"}, &Config{Key: key, Users: users, Require: RequireKeyAndUser}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rc, rs := tcpPair(t)
			rec := &recordingConn{Conn: rc}
			c, s := Client(rec, tc.client), Server(rs, tc.server)
			t.Cleanup(func() { c.Close(); s.Close() })
			done := make(chan error, 1)
			go func() { done <- s.Handshake() }()
			if err := c.Handshake(); err != nil {
				t.Fatal(err)
			}
			if err := <-done; err != nil {
				t.Fatal(err)
			}

			sent, got := rec.sent.Bytes(), rec.got.Bytes()
			chFrame, chPayload := nextFrame(t, &sent)
			shFrame, shPayload := nextFrame(t, &got)
			_, cfPayload := nextFrame(t, &sent)
			_, sfPayload := nextFrame(t, &got)
			ch, err := parseClientHello(chPayload)
			if err != nil {
				t.Fatal(err)
			}
			sh, err := parseServerHello(shPayload)
			if err != nil {
				t.Fatal(err)
			}
			user, cnonce, err := parseClientSCRAM(ch.mechData)
			if err != nil {
				t.Fatal(err)
			}
			challenge, err := parseServerSCRAM(sh.mechData)
			if err != nil {
				t.Fatal(err)
			}
			_, wireProof, err := parseFinished(cfPayload, msgClientFinished, true)
			if err != nil {
				t.Fatal(err)
			}
			_, wireSig, err := parseFinished(sfPayload, msgServerFinished, true)
			if err != nil {
				t.Fatal(err)
			}

			th2 := sha256.Sum256(append(append([]byte(nil), chFrame...), shFrame...))
			cbind, err := scramChannelBinding(th2[:])
			if err != nil {
				t.Fatal(err)
			}
			salt, err := decodeB64(challenge.Salt)
			if err != nil {
				t.Fatal(err)
			}
			clientKey, storedKey, serverKey, err := scramClientKeys("pencil", salt, challenge.Iterations)
			if err != nil {
				t.Fatal(err)
			}
			am := scramAuthMessage(user, cnonce, challenge.CombinedNonce, challenge.Salt, challenge.Iterations, cbind)
			if wireProof == encodeB64(scramClientProof(clientKey, storedKey, am)) {
				t.Error("the recorded client proof confirms the right password: a recording allows offline guessing")
			}
			if wireSig == encodeB64(scramServerSignature(serverKey, am)) {
				t.Error("the recorded server signature confirms the right password: a recording allows offline guessing")
			}
		})
	}
}
