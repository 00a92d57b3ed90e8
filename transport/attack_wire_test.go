package transport_test

// The attacker's view of the wire: conclave/1 handshake messages and records
// parsed and built by hand from docs/protocol.md, independently of auth.

import (
	"bytes"
	"crypto/ecdh"
	"crypto/mlkem"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/seed0811993b/conclave/auth"
	"github.com/seed0811993b/conclave/internal/frame"
)

func msgType(p []byte) int {
	if len(p) <= len(wireMagic) || string(p[:len(wireMagic)]) != wireMagic {
		return -1
	}
	return int(p[len(wireMagic)])
}

func finishedMsg(typ byte, mac []byte) []byte {
	return append(append([]byte(wireMagic), typ), mac...)
}

func failureFrame(code byte) []byte {
	return frame.Append(nil, []byte(wireMagic+string([]byte{msgFailure, code})))
}

// skipFrames returns b after its first n frames.
func skipFrames(b []byte, n int) ([]byte, error) {
	for range n {
		m, hdr, need, err := frame.ParseHeader(b, attackFrameLimit)
		if err != nil || need > 0 || hdr+m > len(b) {
			return nil, fmt.Errorf("no whole frame in %d bytes (%v)", len(b), err)
		}
		b = b[hdr+m:]
	}
	return b, nil
}

// splitFrames splits a byte stream into frame payloads; rest is an
// incomplete trailing frame.
func splitFrames(b []byte) (msgs [][]byte, rest []byte) {
	for len(b) > 0 {
		n, hdr, need, err := frame.ParseHeader(b, attackFrameLimit)
		if err != nil || need > 0 || hdr+n > len(b) {
			return msgs, b
		}
		msgs = append(msgs, b[hdr:hdr+n])
		b = b[hdr+n:]
	}
	return msgs, nil
}

type clientHelloMsg struct {
	versions []byte
	mech     byte
	ciphers  []byte
	maxFrame uint32
	name     string
	random   []byte
	x25519   []byte
	kemKey   []byte
	mechData []byte
}

type serverHelloMsg struct {
	version  byte
	mech     byte
	cipher   byte
	maxFrame uint32
	name     string
	random   []byte
	x25519   []byte
	kemCT    []byte
	mechData []byte
}

// cursor walks a message; a short message sets err.
type cursor struct {
	b   []byte
	err error
}

func (c *cursor) take(n int) []byte {
	if c.err != nil || n > len(c.b) {
		c.err = errors.New("message truncated")
		return nil
	}
	v := bytes.Clone(c.b[:n])
	c.b = c.b[n:]
	return v
}

func (c *cursor) byte() byte {
	if v := c.take(1); v != nil {
		return v[0]
	}
	return 0
}

func (c *cursor) header(want byte) {
	if string(c.take(len(wireMagic))) != wireMagic || c.byte() != want {
		c.err = fmt.Errorf("not a conclave message of type %#x", want)
	}
}

func (c *cursor) done() error {
	if c.err == nil && len(c.b) != 0 {
		c.err = errors.New("trailing bytes")
	}
	return c.err
}

func parseClientHello(p []byte) (*clientHelloMsg, error) {
	c := &cursor{b: p}
	c.header(msgClientHello)
	m := &clientHelloMsg{}
	m.versions = c.take(int(c.byte()))
	m.mech = c.byte()
	m.ciphers = c.take(int(c.byte()))
	m.maxFrame = binary.BigEndian.Uint32(append(c.take(4), 0, 0, 0, 0))
	m.name = string(c.take(int(c.byte())))
	m.random = c.take(randomLen)
	m.x25519 = c.take(x25519Len)
	m.kemKey = c.take(mlkem.EncapsulationKeySize768)
	m.mechData = c.take(int(binary.BigEndian.Uint16(append(c.take(2), 0, 0))))
	return m, c.done()
}

func (m *clientHelloMsg) marshal() []byte {
	b := append([]byte(wireMagic), msgClientHello)
	b = append(append(b, byte(len(m.versions))), m.versions...)
	b = append(b, m.mech)
	b = append(append(b, byte(len(m.ciphers))), m.ciphers...)
	b = binary.BigEndian.AppendUint32(b, m.maxFrame)
	b = append(append(b, byte(len(m.name))), m.name...)
	b = append(append(append(b, m.random...), m.x25519...), m.kemKey...)
	b = binary.BigEndian.AppendUint16(b, uint16(len(m.mechData)))
	return append(b, m.mechData...)
}

func parseServerHello(p []byte) (*serverHelloMsg, error) {
	c := &cursor{b: p}
	c.header(msgServerHello)
	m := &serverHelloMsg{}
	m.version, m.mech, m.cipher = c.byte(), c.byte(), c.byte()
	m.maxFrame = binary.BigEndian.Uint32(append(c.take(4), 0, 0, 0, 0))
	m.name = string(c.take(int(c.byte())))
	m.random = c.take(randomLen)
	m.x25519 = c.take(x25519Len)
	m.kemCT = c.take(mlkem.CiphertextSize768)
	m.mechData = c.take(int(binary.BigEndian.Uint16(append(c.take(2), 0, 0))))
	return m, c.done()
}

func (m *serverHelloMsg) marshal() []byte {
	b := append([]byte(wireMagic), msgServerHello, m.version, m.mech, m.cipher)
	b = binary.BigEndian.AppendUint32(b, m.maxFrame)
	b = append(append(b, byte(len(m.name))), m.name...)
	b = append(append(append(b, m.random...), m.x25519...), m.kemCT...)
	b = binary.BigEndian.AppendUint16(b, uint16(len(m.mechData)))
	return append(b, m.mechData...)
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

// attackerClientHello is a well-formed ClientHello with the attacker's own
// ephemeral X25519 and ML-KEM keys: the attacker knows every secret of the
// key exchange, only the cluster key is missing.
func attackerClientHello() (*clientHelloMsg, error) {
	xk, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	dk, err := mlkem.GenerateKey768()
	if err != nil {
		return nil, err
	}
	return &clientHelloMsg{
		versions: []byte{protocolVersion1},
		mech:     mechSharedKey,
		ciphers:  []byte{byte(auth.AES256GCM), byte(auth.ChaCha20Poly1305)},
		maxFrame: attackerMaxFrame,
		name:     "mallory",
		random:   randomBytes(randomLen),
		x25519:   xk.PublicKey().Bytes(),
		kemKey:   dk.EncapsulationKey().Bytes(),
	}, nil
}

// attackerServerHello answers ch as a server would, with the attacker's own
// X25519 key and an ML-KEM encapsulation to the client's key.
func attackerServerHello(ch *clientHelloMsg) (*serverHelloMsg, error) {
	xk, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	ek, err := mlkem.NewEncapsulationKey768(ch.kemKey)
	if err != nil {
		return nil, err
	}
	_, ct := ek.Encapsulate()
	return &serverHelloMsg{
		version:  ch.versions[0],
		mech:     ch.mech,
		cipher:   ch.ciphers[0],
		maxFrame: attackerMaxFrame,
		name:     "coordinator",
		random:   randomBytes(randomLen),
		x25519:   xk.PublicKey().Bytes(),
		kemCT:    ct,
	}, nil
}

// ---- records ----

// forgedRecord is a record with a valid header and random ciphertext.
func forgedRecord(typ byte, ctLen int) []byte {
	return append([]byte{typ, byte(ctLen >> 16), byte(ctLen >> 8), byte(ctLen)}, randomBytes(ctLen)...)
}

func readRecord(r io.Reader) ([]byte, error) {
	hdr := make([]byte, recordHeaderLen)
	if _, err := io.ReadFull(r, hdr); err != nil {
		return nil, err
	}
	n := int(hdr[1])<<16 | int(hdr[2])<<8 | int(hdr[3])
	rec := make([]byte, recordHeaderLen+n)
	copy(rec, hdr)
	if _, err := io.ReadFull(r, rec[recordHeaderLen:]); err != nil {
		return nil, err
	}
	return rec, nil
}

// ---- the man in the middle ----
