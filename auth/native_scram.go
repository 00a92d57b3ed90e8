package auth

import "fmt"

// The user mechanisms of conclave/1 carry a SCRAM-SHA-256 login in the
// handshake's four messages (docs/protocol.md §2.4):
//
//	ClientHello mech data   user, client nonce
//	ServerHello mech data   salt, iterations, combined nonce
//	ClientFinished          MAC, then the client proof, bound to SHA-256(ClientHello || ServerHello)
//	ServerFinished          MAC, then the server signature
//
// The binding makes a proof useless on any other connection: a relay or a
// splice has another transcript.

// mechanismFor is the mechanism a client offers.
func (c *Config) mechanismFor() byte {
	switch {
	case c.User != "" && len(c.Key) > 0:
		return mechKeyAndSCRAM
	case c.User != "":
		return mechSCRAM
	}
	return mechSharedKey
}

// mechanismRequired is the mechanism a server demands.
func (c *Config) mechanismRequired() byte {
	switch c.Require {
	case RequireUser:
		return mechSCRAM
	case RequireKeyAndUser:
		return mechKeyAndSCRAM
	}
	return mechSharedKey
}

// usesKey and usesSCRAM tell what a mechanism proves.
func usesKey(mech byte) bool   { return mech != mechSCRAM }
func usesSCRAM(mech byte) bool { return mech == mechSCRAM || mech == mechKeyAndSCRAM }

// The values of ConnectionState.Mechanism after a native handshake: what
// the peer proved.
const (
	MechanismKey        = "cluster key"
	MechanismUser       = "user login" // a password, and no cluster key
	MechanismKeyAndUser = "cluster key and user login"
)

// mechanismName names a mechanism for errors and ConnectionState.
func mechanismName(mech byte) string {
	switch mech {
	case mechSharedKey:
		return MechanismKey
	case mechSCRAM:
		return MechanismUser
	case mechKeyAndSCRAM:
		return MechanismKeyAndUser
	}
	return fmt.Sprintf("mechanism %d", mech)
}

// appendText appends a one-byte length and s (at most 255 bytes).
func appendText(b []byte, s string) []byte {
	return append(append(b, byte(len(s))), s...)
}

func marshalClientSCRAM(user, cnonce string) []byte {
	return appendText(appendText(nil, user), cnonce)
}

func parseClientSCRAM(b []byte) (user, cnonce string, err error) {
	r := &reader{b: b}
	user = r.text("user name")
	cnonce = r.text("client nonce")
	return user, cnonce, r.end()
}

func marshalServerSCRAM(ch SCRAMChallenge) []byte {
	b := appendText(nil, ch.Salt)
	b = append(b, byte(ch.Iterations>>24), byte(ch.Iterations>>16), byte(ch.Iterations>>8), byte(ch.Iterations))
	return appendText(b, ch.CombinedNonce)
}

func parseServerSCRAM(b []byte) (SCRAMChallenge, error) {
	r := &reader{b: b}
	var ch SCRAMChallenge
	ch.Salt = r.text("salt")
	ch.Iterations = int(r.u32())
	ch.CombinedNonce = r.text("combined nonce")
	return ch, r.end()
}
