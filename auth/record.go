package auth

import (
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"fmt"

	"golang.org/x/crypto/chacha20poly1305"
)

// Record layer of conclave/1 (docs/protocol.md, "Records"): after the
// handshake every byte travels in records of
//
//	type (1) | length (3, big-endian, of the ciphertext) | ciphertext
//
// sealed with the direction's AEAD, the 4-byte header as additional data and a
// nonce of the IV XOR the record's 64-bit sequence number, so a tampered,
// replayed, reordered, dropped or injected record fails to open.
const (
	recordHeaderLen = 4
	recordData      = 0x17
	recordClose     = 0x15

	// maxRecordPlaintext bounds one record; larger writes are split.
	maxRecordPlaintext = 1 << 16
	aeadOverhead       = 16
	maxRecordCipher    = maxRecordPlaintext + aeadOverhead

	// rekeyInterval is how many records one key seals before both sides step
	// to the next key. At 64 KiB per record that is 2^36 bytes, far inside
	// AES-GCM's confidentiality limit (about 2^38.5 bytes at 2^-57 advantage).
	rekeyInterval = 1 << 20
)

// halfConn is the state of one direction: its AEAD, IV, sequence number and
// the secret the next key comes from.
type halfConn struct {
	suite  CipherSuite
	secret []byte
	aead   cipher.AEAD
	iv     [12]byte
	seq    uint64
	nonce  [12]byte
}

func (h *halfConn) init(suite CipherSuite, secret []byte) error {
	h.suite, h.secret = suite, secret
	return h.setKey()
}

func (h *halfConn) setKey() error {
	key := expand(h.secret, labelKey, nil, 32)
	copy(h.iv[:], expand(h.secret, labelIV, nil, 12))
	var err error
	switch h.suite {
	case AES256GCM:
		var b cipher.Block
		if b, err = aes.NewCipher(key); err == nil {
			h.aead, err = cipher.NewGCM(b)
		}
	case ChaCha20Poly1305:
		h.aead, err = chacha20poly1305.New(key)
	default:
		err = fmt.Errorf("%w: cipher suite %d", ErrUnsupportedCipher, h.suite)
	}
	return err
}

// nextNonce returns the nonce for the current record.
func (h *halfConn) nextNonce() ([]byte, error) {
	if h.seq == ^uint64(0) {
		return nil, fmt.Errorf("%w: record sequence exhausted", ErrProtocol)
	}
	h.nonce = h.iv
	var s [8]byte
	binary.BigEndian.PutUint64(s[:], h.seq)
	for i := range s {
		h.nonce[4+i] ^= s[i]
	}
	return h.nonce[:], nil
}

// advance moves past a record, stepping to a fresh key every rekeyInterval
// records. Both sides step at the same record, so no message is needed.
func (h *halfConn) advance() error {
	h.seq++
	if h.seq%rekeyInterval != 0 {
		return nil
	}
	h.secret = expand(h.secret, labelNext, nil, 32)
	return h.setKey()
}

// seal appends one record holding p (at most maxRecordPlaintext bytes).
func (h *halfConn) seal(dst []byte, typ byte, p []byte) ([]byte, error) {
	nonce, err := h.nextNonce()
	if err != nil {
		return dst, err
	}
	n := len(p) + aeadOverhead
	start := len(dst)
	dst = append(dst, typ, byte(n>>16), byte(n>>8), byte(n))
	dst = h.aead.Seal(dst, nonce, p, dst[start:start+recordHeaderLen])
	return dst, h.advance()
}

// parseRecordHeader checks a header before the ciphertext is read, so that a
// bad length never makes the reader wait for or buffer bytes.
func parseRecordHeader(hdr []byte) (typ byte, n int, err error) {
	typ = hdr[0]
	n = int(hdr[1])<<16 | int(hdr[2])<<8 | int(hdr[3])
	if typ != recordData && typ != recordClose {
		return 0, 0, fmt.Errorf("%w: unknown record type %#x", ErrProtocol, typ)
	}
	if n < aeadOverhead || n > maxRecordCipher {
		return 0, 0, fmt.Errorf("%w: record length %d out of range", ErrProtocol, n)
	}
	return typ, n, nil
}

// open authenticates and decrypts one record into dst (which may be ct[:0]).
func (h *halfConn) open(dst, hdr, ct []byte) ([]byte, error) {
	nonce, err := h.nextNonce()
	if err != nil {
		return nil, err
	}
	p, err := h.aead.Open(dst, nonce, ct, hdr)
	if err != nil {
		return nil, fmt.Errorf("%w: record %d failed authentication (tampered, replayed, reordered or injected)", ErrProtocol, h.seq)
	}
	return p, h.advance()
}
