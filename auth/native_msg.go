package auth

import (
	"cmp"
	"crypto/mlkem"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// Wire constants of conclave/1 (docs/protocol.md is normative).
const (
	nativeMagic = "conclave"

	msgClientHello    = 0x01
	msgServerHello    = 0x02
	msgClientFinished = 0x03
	msgServerFinished = 0x04
	msgFailure        = 0x7f

	version1 = 0x01

	mechSharedKey   = 0x01
	mechSCRAM       = 0x02 // a user login, SCRAM-SHA-256 bound to the transcript
	mechKeyAndSCRAM = 0x03 // the cluster key and a user login

	randomLen   = 32
	x25519Len   = 32
	macLen      = 32
	maxListLen  = 8
	minFrameCap = 1024

	// maxHandshakeFrame caps every frame read before authentication; the
	// largest shared-key message, a ClientHello with a 255-byte name and eight
	// versions and ciphers, is 1538 bytes.
	maxHandshakeFrame = 4096
)

// Failure codes a peer may send in place of the next handshake message.
// Only the code travels; the detail stays in the local error.
const (
	failAuth        = 0x01
	failVersion     = 0x02
	failCipher      = 0x03
	failProtocol    = 0x04
	failMechanism   = 0x05
	failRateLimited = 0x06 // too many failed logins: try later
	failNotAllowed  = 0x07 // authenticated, refused by the server's policy
	failUnspecified = 0xff
)

type clientHello struct {
	versions  []byte
	mechanism byte
	ciphers   []byte
	maxFrame  uint32
	name      string
	random    []byte // randomLen
	x25519    []byte // x25519Len
	mlkemKey  []byte // mlkem.EncapsulationKeySize768
	mechData  []byte
}

type serverHello struct {
	version   byte
	mechanism byte
	cipher    byte
	maxFrame  uint32
	name      string
	random    []byte
	x25519    []byte
	mlkemCT   []byte // mlkem.CiphertextSize768
	mechData  []byte
}

func appendMsgHeader(b []byte, typ byte) []byte {
	return append(append(b, nativeMagic...), typ)
}

func (m *clientHello) marshal() []byte {
	b := make([]byte, 0, 64+len(m.name)+randomLen+x25519Len+len(m.mlkemKey)+len(m.mechData))
	b = appendMsgHeader(b, msgClientHello)
	b = append(append(b, byte(len(m.versions))), m.versions...)
	b = append(b, m.mechanism)
	b = append(append(b, byte(len(m.ciphers))), m.ciphers...)
	b = binary.BigEndian.AppendUint32(b, m.maxFrame)
	b = append(append(b, byte(len(m.name))), m.name...)
	b = append(b, m.random...)
	b = append(b, m.x25519...)
	b = append(b, m.mlkemKey...)
	b = binary.BigEndian.AppendUint16(b, uint16(len(m.mechData)))
	return append(b, m.mechData...)
}

func (m *serverHello) marshal() []byte {
	b := make([]byte, 0, 64+len(m.name)+randomLen+x25519Len+len(m.mlkemCT)+len(m.mechData))
	b = appendMsgHeader(b, msgServerHello)
	b = append(b, m.version, m.mechanism, m.cipher)
	b = binary.BigEndian.AppendUint32(b, m.maxFrame)
	b = append(append(b, byte(len(m.name))), m.name...)
	b = append(b, m.random...)
	b = append(b, m.x25519...)
	b = append(b, m.mlkemCT...)
	b = binary.BigEndian.AppendUint16(b, uint16(len(m.mechData)))
	return append(b, m.mechData...)
}

// marshalFinished builds a Finished message: the MAC, then, in the user
// mechanisms, the SCRAM proof or signature as a one-byte length and text.
func marshalFinished(typ byte, mac []byte, scram string) []byte {
	b := append(appendMsgHeader(make([]byte, 0, len(nativeMagic)+2+macLen+len(scram)), typ), mac...)
	if scram != "" {
		b = append(append(b, byte(len(scram))), scram...)
	}
	return b
}

func marshalFailure(code byte) []byte {
	return append(appendMsgHeader(nil, msgFailure), code)
}

// reader walks a handshake message. Every take checks the bytes left first,
// so a short or lying message is an error, never a panic or a big allocation.
type reader struct {
	b   []byte
	err error
}

func (r *reader) take(n int) []byte {
	if r.err != nil {
		return nil
	}
	if n > len(r.b) {
		r.err = fmt.Errorf("%w: handshake message truncated", ErrProtocol)
		return nil
	}
	v := r.b[:n:n]
	r.b = r.b[n:]
	return v
}

func (r *reader) byte() byte {
	if v := r.take(1); v != nil {
		return v[0]
	}
	return 0
}

func (r *reader) u16() int {
	if v := r.take(2); v != nil {
		return int(binary.BigEndian.Uint16(v))
	}
	return 0
}

func (r *reader) u32() uint32 {
	if v := r.take(4); v != nil {
		return binary.BigEndian.Uint32(v)
	}
	return 0
}

// list reads a one-byte count and that many one-byte items (1..maxListLen).
func (r *reader) list(what string) []byte {
	n := int(r.byte())
	if r.err == nil && (n == 0 || n > maxListLen) {
		r.err = fmt.Errorf("%w: %d %s offered", ErrProtocol, n, what)
		return nil
	}
	return r.take(n)
}

func (r *reader) name() string {
	v := r.take(int(r.byte()))
	if r.err == nil && !utf8.Valid(v) {
		r.err = fmt.Errorf("%w: peer name is not UTF-8", ErrProtocol)
	}
	return string(v)
}

func (r *reader) end() error {
	if r.err == nil && len(r.b) != 0 {
		r.err = fmt.Errorf("%w: %d unexpected bytes after handshake message", ErrProtocol, len(r.b))
	}
	return r.err
}

// parseHeader checks the magic and message type. A failure message from the
// peer is turned into the error its code stands for.
func parseMsgHeader(b []byte, want byte) (*reader, error) {
	r := &reader{b: b}
	if string(r.take(len(nativeMagic))) != nativeMagic {
		if strings.HasPrefix(string(b), pyChallengeTag) {
			return nil, fmt.Errorf("%w: the peer speaks Python's multiprocessing.connection handshake: use Config.Mode = ModePython", ErrProtocol)
		}
		return nil, fmt.Errorf("%w: not a conclave/1 handshake message", ErrProtocol)
	}
	typ := r.byte()
	if r.err != nil {
		return nil, r.err
	}
	if typ == msgFailure {
		code := r.byte()
		if err := r.end(); err != nil {
			return nil, err
		}
		return nil, failureError(code)
	}
	if typ != want {
		return nil, fmt.Errorf("%w: handshake message type %#x, want %#x", ErrProtocol, typ, want)
	}
	return r, nil
}

func failureError(code byte) error {
	switch code {
	case failAuth:
		return fmt.Errorf("%w: peer rejected our proof (wrong key or password?)", ErrAuthFailed)
	case failVersion:
		return fmt.Errorf("%w: peer refused every version we offered", ErrUnsupportedVersion)
	case failCipher:
		return fmt.Errorf("%w: peer refused every cipher suite we offered", ErrUnsupportedCipher)
	case failMechanism:
		return fmt.Errorf("%w: peer does not accept our authentication mechanism (cluster key, user login, or both)", ErrAuthFailed)
	case failRateLimited:
		return fmt.Errorf("%w: %w: the server refuses logins for now after too many failures; try again later", ErrAuthFailed, ErrSCRAMRateLimited)
	case failProtocol:
		return fmt.Errorf("%w: peer reported a protocol violation", ErrProtocol)
	case failNotAllowed:
		return fmt.Errorf("%w: the peer accepted our credentials but refuses this connection (its log says why)", ErrNotAllowed)
	}
	return fmt.Errorf("%w: peer aborted the handshake (code %#x)", ErrProtocol, code)
}

func parseClientHello(b []byte) (*clientHello, error) {
	r, err := parseMsgHeader(b, msgClientHello)
	if err != nil {
		return nil, err
	}
	m := &clientHello{}
	m.versions = r.list("versions")
	m.mechanism = r.byte()
	m.ciphers = r.list("cipher suites")
	m.maxFrame = r.u32()
	m.name = r.name()
	m.random = r.take(randomLen)
	m.x25519 = r.take(x25519Len)
	m.mlkemKey = r.take(mlkem.EncapsulationKeySize768)
	m.mechData = r.take(r.u16())
	if err := cmp.Or(r.end(), checkFrameLimit(m.maxFrame)); err != nil {
		return nil, err
	}
	return m, nil
}

func parseServerHello(b []byte) (*serverHello, error) {
	r, err := parseMsgHeader(b, msgServerHello)
	if err != nil {
		return nil, err
	}
	m := &serverHello{}
	m.version = r.byte()
	m.mechanism = r.byte()
	m.cipher = r.byte()
	m.maxFrame = r.u32()
	m.name = r.name()
	m.random = r.take(randomLen)
	m.x25519 = r.take(x25519Len)
	m.mlkemCT = r.take(mlkem.CiphertextSize768)
	m.mechData = r.take(r.u16())
	if err := cmp.Or(r.end(), checkFrameLimit(m.maxFrame)); err != nil {
		return nil, err
	}
	return m, nil
}

// checkFrameLimit refuses a peer limit too small to carry useful frames.
func checkFrameLimit(n uint32) error {
	if n < minFrameCap {
		return fmt.Errorf("%w: peer frame limit %d is under %d", ErrProtocol, n, minFrameCap)
	}
	return nil
}

// parseFinished reads a Finished message; withSCRAM says whether it must
// carry a SCRAM proof or signature after the MAC.
func parseFinished(b []byte, want byte, withSCRAM bool) (mac []byte, scram string, err error) {
	r, err := parseMsgHeader(b, want)
	if err != nil {
		return nil, "", err
	}
	mac = r.take(macLen)
	if withSCRAM {
		scram = r.text("SCRAM proof")
	}
	return mac, scram, r.end()
}

// text reads a one-byte length and that many bytes of printable ASCII (the
// SCRAM fields are names and base64).
func (r *reader) text(what string) string {
	v := r.take(int(r.byte()))
	if r.err != nil {
		return ""
	}
	for _, c := range v {
		if c < 0x21 || c > 0x7e {
			r.err = fmt.Errorf("%w: %s is not printable ASCII", ErrProtocol, what)
			return ""
		}
	}
	return string(v)
}

// errMechanism is an authentication failure the peer can be told about
// precisely: it asked for a mechanism this side does not run.
var errMechanism = fmt.Errorf("%w: unsupported mechanism", ErrAuthFailed)

func failureCode(err error) byte {
	switch {
	case errors.Is(err, ErrUnsupportedVersion):
		return failVersion
	case errors.Is(err, ErrUnsupportedCipher):
		return failCipher
	case errors.Is(err, errMechanism):
		return failMechanism
	case errors.Is(err, ErrSCRAMRateLimited):
		return failRateLimited
	case errors.Is(err, ErrNotAllowed):
		return failNotAllowed
	case errors.Is(err, ErrAuthFailed):
		return failAuth
	case errors.Is(err, ErrProtocol), errors.Is(err, ErrSCRAMUserName), errors.Is(err, ErrSCRAMNonce):
		// A malformed user name or nonce breaks the message layout (§2.4).
		return failProtocol
	}
	return failUnspecified
}
