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

// katUsers is the credential store of the user-login known answers: alice,
// password "pencil", salt c0 c1 .. cf, 4096 iterations; the server's nonces
// come from d0 d1 .. and its fake-salt secret is 5a x 32.
func katUsers(t *testing.T) *SCRAMServer {
	t.Helper()
	cred, err := NewCredential("pencil", MinSCRAMIterations, bytes.NewReader(seq(0xc0, SCRAMSaltLen)))
	if err != nil {
		t.Fatal(err)
	}
	users, err := NewSCRAMServer(CredentialMap{"alice": cred}, SCRAMServerOptions{
		Secret: bytes.Repeat([]byte{0x5a}, 32), Rand: bytes.NewReader(seq(0xd0, 32))})
	if err != nil {
		t.Fatal(err)
	}
	return users
}

// nativeKAT runs both real state machines on fixed inputs (randoms,
// ephemeral keys, encapsulation randomness) and returns every value the
// protocol puts on the wire or derives. With users, the client logs in as
// alice (mechanism 02, no cluster key) and its nonce is b0 b1 .. bf.
func nativeKAT(t *testing.T, users *SCRAMServer) map[string]string {
	t.Helper()
	key := Key(bytes.Repeat([]byte{0x42}, 32))
	ccfg := &Config{Key: key, Name: "worker-1", Ciphers: []CipherSuite{AES256GCM, ChaCha20Poly1305},
		Rand: bytes.NewReader(seq(0x00, 32))}
	scfg := &Config{Key: key, Name: "coordinator", Ciphers: []CipherSuite{AES256GCM, ChaCha20Poly1305},
		Rand: bytes.NewReader(seq(0x70, 32))}
	if users != nil {
		ccfg.Key, ccfg.User, ccfg.Password = nil, "alice", "pencil"
		ccfg.Rand = bytes.NewReader(append(seq(0x00, 32), seq(0xb0, SCRAMNonceLen)...))
		scfg.Key, scfg.Users, scfg.Require = nil, users, RequireUser
	}
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
	c := newNativeClient(ccfg)
	c.keys = &clientKeys{x: cx, dk: dk}
	s := newNativeServer(scfg, "")
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
	th2 := sha256.Sum256(append(append([]byte(nil), ch...), sh...))
	proofPad, sigPad := scramMasks(c.hs, th2[:]) // before the client forgets hs
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
	if users != nil {
		hello, err := parseServerHello(sh[4:])
		if err != nil {
			t.Fatal(err)
		}
		challenge, err := parseServerSCRAM(hello.mechData)
		if err != nil {
			t.Fatal(err)
		}
		mac, proofText, err := parseFinished(cf[4:], msgClientFinished, true)
		if err != nil {
			t.Fatal(err)
		}
		smac, sigText, err := parseFinished(sf[4:], msgServerFinished, true)
		if err != nil {
			t.Fatal(err)
		}
		return map[string]string{
			"ClientHello frame SHA-256": sum(ch),
			"ServerHello frame SHA-256": sum(sh),
			"TH2":                       hex.EncodeToString(th2[:]),
			"combined nonce":            challenge.CombinedNonce,
			"salt":                      challenge.Salt,
			"client MAC":                hex.EncodeToString(mac),
			"client proof":              xorB64(proofText, proofPad),
			"proof mask":                hex.EncodeToString(proofPad),
			"client proof on the wire":  proofText,
			"server MAC":                hex.EncodeToString(smac),
			"server signature":          xorB64(sigText, sigPad),
			"signature mask":            hex.EncodeToString(sigPad),
			"signature on the wire":     sigText,
			"c2s secret":                hex.EncodeToString(c.res.writeSecret),
			"server c2s secret":         hex.EncodeToString(s.res.readSecret),
		}
	}
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
	checkKAT(t, nativeKAT(t, nil), want)
}

// TestNativeUserLoginKnownAnswer pins a user login (mechanism 02): the SCRAM
// fields, their channel binding and the masks that hide the proof and the
// signature. The same values are in docs/protocol.md.
func TestNativeUserLoginKnownAnswer(t *testing.T) {
	want := map[string]string{
		"ClientHello frame SHA-256": "f2d8fcbdf1e53be6d60f8260df9dbbee6a4e7353463dfe34c04712f3df9cf9cc",
		"ServerHello frame SHA-256": "1c74eeae2ef454cb68edb736875089edfbb700b01209b41633ada1f68ff1d52f",
		"TH2":                       "fc33792b9a42ead9297174fa6e8f1a5c68e91a328ad3eafbef4ffdf9a1f74325",
		"combined nonce":            "sLGys7S1tre4ubq7vL2+vw==0NHS09TV1tfY2drb3N3e3+Dh",
		"salt":                      "wMHCw8TFxsfIycrLzM3Ozw==",
		"client MAC":                "97dcc3092c3004c98599a3b1225910d8d66ad8d551a5e1adfe2934c3edf8d431",
		"client proof":              "yXzel1phi/lSBJ9iMhw8IDpqf9uKArWSyG7J7RiBOI8=",
		"proof mask":                "5ec9d7dc3481a80193912061156364e5aab38dc3aa4181fd67723ce1137670d9",
		"client proof on the wire":  "l7UJS27gI/jBlb8DJ39YxZDZ8hggQzRvrxz1DAv3SFY=",
		"server MAC":                "41eeb4c9df435b5e4bfee09aed3ffac2b0066aa81d156a0bd725410c90a1f75b",
		"server signature":          "UqjbRKMABMo3rwaIL+bWP8vYF475/K0UB0iSX7iTm0w=",
		"signature mask":            "c12bb96e8325f6185c57aa84605b680c402a768ec7c0e91d196a381d55dd9965",
		"signature on the wire":     "k4NiKiAl8tJr+KwMT72+M4vyYQA+PEQJHiKqQu1OAik=",
		"c2s secret":                "6b94e3e52ff08ee6d60db0663978a248d07b8bc22a8f178eee37221e20fa2f65",
	}
	checkKAT(t, nativeKAT(t, katUsers(t)), want)
}

// checkKAT compares a nativeKAT run with the published values.
func checkKAT(t *testing.T, got, want map[string]string) {
	t.Helper()
	if got["c2s secret"] != got["server c2s secret"] {
		t.Fatal("client and server derived different c2s secrets")
	}
	for k, w := range want {
		if got[k] != w {
			t.Errorf("%s = %s, want %s", k, got[k], w)
		}
	}
}
