package auth

import (
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"hash"
)

// Labels of the conclave/1 key schedule (docs/protocol.md, "Key schedule").
const (
	labelFinished    = "conclave/1 finished"
	labelClientProof = "conclave/1 client proof"
	labelServerProof = "conclave/1 server proof"
	labelC2S         = "conclave/1 c2s"
	labelS2C         = "conclave/1 s2c"
	labelKey         = "conclave/1 key"
	labelIV          = "conclave/1 iv"
	labelNext        = "conclave/1 next"
	labelSCRAMMask   = "conclave/1 scram mask"
)

// transcript hashes every handshake frame, header included, in wire order.
type transcript struct{ h hash.Hash }

func newTranscript() *transcript { return &transcript{h: sha256.New()} }

func (t *transcript) add(frame []byte) { t.h.Write(frame) }

func (t *transcript) sum() []byte { return t.h.Sum(nil) }

// handshakeSecret mixes the cluster key with both shared secrets. Neither a
// party without the key nor a party without the ephemeral secrets can compute
// it, so a passive recording of a handshake gives no offline test of a guessed
// key.
func handshakeSecret(key, mlkemSecret, x25519Secret []byte) []byte {
	ikm := make([]byte, 0, len(mlkemSecret)+len(x25519Secret))
	ikm = append(append(ikm, mlkemSecret...), x25519Secret...)
	prk, err := hkdf.Extract(sha256.New, ikm, key)
	if err != nil {
		panic("auth: hkdf extract: " + err.Error()) // only on a FIPS-mode key-length rule we never break
	}
	return prk
}

func expand(secret []byte, label string, context []byte, n int) []byte {
	out, err := hkdf.Expand(sha256.New, secret, label+string(context), n)
	if err != nil {
		panic("auth: hkdf expand: " + err.Error()) // n is a constant far below HKDF's limit
	}
	return out
}

// proof is the MAC a role sends in its Finished message: the role's label and
// the transcript hash so far, keyed by the finished key.
func proof(hs []byte, label string, th []byte) []byte {
	m := hmac.New(sha256.New, expand(hs, labelFinished, nil, 32))
	m.Write([]byte(label))
	m.Write(th)
	return m.Sum(nil)
}

// scramMasks returns the pads that hide a user login's client proof and
// server signature on the wire. Both are computed from the password and
// bytes a recording holds, so sent in the clear either would let whoever
// records one login test password guesses offline; the pads come from the
// handshake secret, which a recording does not give.
func scramMasks(hs, th2 []byte) (client, server []byte) {
	m := expand(hs, labelSCRAMMask, th2, 2*sha256.Size)
	return m[:sha256.Size], m[sha256.Size:]
}

// trafficSecrets returns the client-to-server and server-to-client secrets,
// bound to the whole handshake transcript.
func trafficSecrets(hs, th []byte) (c2s, s2c []byte) {
	return expand(hs, labelC2S, th, 32), expand(hs, labelS2C, th, 32)
}
