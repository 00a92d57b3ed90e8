package auth

import (
	"bytes"
	"crypto/ecdh"
	"crypto/mlkem"
	"crypto/mlkem/mlkemtest"
	"crypto/sha256"
	"encoding/hex"
	"testing"
)

// seq returns n bytes counting up from start.
func seq(start byte, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = start + byte(i)
	}
	return b
}

// nativeKAT runs both real state machines on fixed inputs (randoms,
// ephemeral keys, encapsulation randomness) and returns every value the
// protocol puts on the wire or derives.
func nativeKAT(t *testing.T) map[string]string {
	t.Helper()
	key := Key(bytes.Repeat([]byte{0x42}, 32))
	cx, err := ecdh.X25519().NewPrivateKey(seq(0x10, 32))
	if err != nil {
		t.Fatal(err)
	}
	dk, err := mlkem.NewDecapsulationKey768(seq(0x50, 64))
	if err != nil {
		t.Fatal(err)
	}
	sx, err := ecdh.X25519().NewPrivateKey(seq(0x30, 32))
	if err != nil {
		t.Fatal(err)
	}
	c := newNativeClient(&Config{Key: key, Name: "worker-1", Ciphers: []CipherSuite{AES256GCM, ChaCha20Poly1305},
		Rand: bytes.NewReader(seq(0x00, 32))})
	c.keys = &clientKeys{x: cx, dk: dk}
	s := newNativeServer(&Config{Key: key, Name: "coordinator", Ciphers: []CipherSuite{AES256GCM, ChaCha20Poly1305},
		Rand: bytes.NewReader(seq(0x70, 32))}, "")
	s.xk = sx
	s.encapsulate = func(ek *mlkem.EncapsulationKey768) ([]byte, []byte) {
		ss, ct, err := mlkemtest.Encapsulate768(ek, seq(0x90, 32))
		if err != nil {
			t.Fatal(err)
		}
		return ss, ct
	}
	step := func(h handshaker, in []byte) []byte {
		t.Helper()
		out, _, err := h.step(in)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	ch := step(c, nil)
	step(s, nil)
	sh := step(s, ch[4:])
	cf := step(c, sh[4:])
	sf := step(s, cf[4:])
	if _, done, err := c.step(sf[4:]); !done || err != nil {
		t.Fatalf("client did not finish: %v", err)
	}
	var w halfConn
	if err := w.init(AES256GCM, c.res.writeSecret); err != nil {
		t.Fatal(err)
	}
	rec, err := w.seal(nil, recordData, []byte("hello"))
	if err != nil {
		t.Fatal(err)
	}
	sum := func(b []byte) string { h := sha256.Sum256(b); return hex.EncodeToString(h[:]) }
	return map[string]string{
		"ClientHello frame SHA-256": sum(ch),
		"ServerHello frame SHA-256": sum(sh),
		"ClientFinished frame":      hex.EncodeToString(cf),
		"ServerFinished frame":      hex.EncodeToString(sf),
		"c2s secret":                hex.EncodeToString(c.res.writeSecret),
		"s2c secret":                hex.EncodeToString(c.res.readSecret),
		"server c2s secret":         hex.EncodeToString(s.res.readSecret),
		"first c2s record":          hex.EncodeToString(rec),
	}
}

// TestNativeKnownAnswer pins the conclave/1 bytes: message layouts, the
// transcript, the key schedule and the record format. The same values are in
// docs/protocol.md; a change here is a protocol change.
func TestNativeKnownAnswer(t *testing.T) {
	want := map[string]string{
		"ClientHello frame SHA-256": "7d90c3ef1308d2b13b087a50a05d2c027f692ce9c77aca63e6d251f664dc81e7",
		"ServerHello frame SHA-256": "9fe0b88927d1fb433e0ce87fc7cfc69af7d4cfbe4c3ec3a01d838b77a0145528",
		"ClientFinished frame":      "00000029636f6e636c61766503ae6f2be28984e5964883b2ab27e2772f8b29850c3493849744aa0ae07dbe81b3",
		"ServerFinished frame":      "00000029636f6e636c617665044caa8f2355243c53493f3878927008b23f618e521502a6c826c1c101a7cc8035",
		"c2s secret":                "bbde308d5a6ebfd7928c9c1fc135e7bda4c2a9fac1bc5295546a90396eec89bd",
		"s2c secret":                "c45a5ec32d602d14b5e8dbc8ed20696dc345d8fc8b01d7326f1b0ab55f79bb93",
		"first c2s record":          "17000015d8b00d2d40f44cb27f06ad52646d44cc43b70eb7bb",
	}
	got := nativeKAT(t)
	if got["c2s secret"] != got["server c2s secret"] {
		t.Fatal("client and server derived different c2s secrets")
	}
	for k, w := range want {
		if got[k] != w {
			t.Errorf("%s = %s, want %s", k, got[k], w)
		}
	}
}
