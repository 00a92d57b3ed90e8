package codec

import (
	"encoding/binary"
	"fmt"
	"math"
)

// FlagRaw is the Envelope.Flags bit saying that Body is a msgpack bin holding
// raw bytes (see AppendBytesBody and BytesBody) rather than an encoded value.
// The other bits belong to the node layer.
const FlagRaw uint8 = 1 << 0

// MaxTopicLen is the longest topic, in bytes, that an envelope may carry.
const MaxTopicLen = 1024

const (
	envelopeVersion = 1
	envelopeFields  = 8
)

// Envelope is the message that cluster processes exchange. Topic and Body
// of an envelope filled in by ParseEnvelope alias the parsed buffer: copy
// them before reusing that buffer.
type Envelope struct {
	Kind  Kind
	Flags uint8  // bit flags: FlagRaw, and others owned by the node layer
	Seq   uint64 // the sender's sequence number; 0 means unsequenced
	Ack   uint64 // cumulative acknowledgement
	ID    uint64 // correlates a request with its reply
	Topic []byte // the subject, at most MaxTopicLen bytes

	// Body is exactly one msgpack-encoded value, the payload, embedded in
	// the envelope as is. An empty Body is sent as msgpack nil, so it is
	// parsed back as []byte{0xc0}.
	Body []byte
}

// bodyLimits leaves room for the envelope array around the body, so that an
// envelope passing Check also passes ParseEnvelope with the default limits.
var bodyLimits = Limits{MaxDepth: defaultMaxDepth - 1, MaxItems: defaultMaxItems - envelopeFields}

// Check reports whether AppendEnvelope can encode e into an envelope that
// ParseEnvelope accepts with the default limits: Topic must be at most
// MaxTopicLen bytes and a non-empty Body exactly one msgpack value, at most
// 31 levels deep. Senders call Check on envelopes built from data they do not
// control; AppendEnvelope itself does not check.
func (e *Envelope) Check() error {
	if len(e.Topic) > MaxTopicLen {
		return fmt.Errorf("codec: topic of %d bytes is over %d: %w", len(e.Topic), MaxTopicLen, ErrTooLarge)
	}
	if len(e.Body) > 0 {
		if err := Validate(e.Body, bodyLimits); err != nil {
			return fmt.Errorf("codec: envelope body: %w", err)
		}
	}
	return nil
}

// AppendEnvelope appends the encoding of e to dst and returns the extended
// buffer. It allocates only when dst lacks capacity, and it assumes e is
// valid: call Envelope.Check on envelopes that might not be.
//
// The encoding is a msgpack array of 8 elements, written as:
//
//	0x98     fixarray header, 8 elements
//	0x01     version: positive fixint 1
//	uint     kind
//	uint     flags
//	uint     seq
//	uint     ack
//	uint     id
//	str      topic; an empty topic is the empty str 0xa0
//	value    body: Body's bytes as is, or 0xc0 (nil) if Body is empty
//
// Each uint takes the shortest msgpack form that holds its value, multi-byte
// integers being big-endian:
//
//	0x00-0x7f                positive fixint: values 0 to 127
//	0xcc b                   uint8: 128 to 255
//	0xcd b b                 uint16: 256 to 65535
//	0xce b b b b             uint32: 65536 to 4294967295
//	0xcf b b b b b b b b     uint64: larger values
//
// and the topic takes the shortest str form for its length n:
//
//	0xa0|n  bytes            fixstr: n up to 31
//	0xd9 n  bytes            str8: n up to 255
//	0xda n n  bytes          str16: n up to 65535, which covers MaxTopicLen
//
// For example, Envelope{Kind: KindRequest, Seq: 300, ID: 7, Topic:
// []byte("ab"), Body: []byte{0x2a}} encodes as
//
//	98 01 02 00 cd 01 2c 00 07 a2 61 62 2a
//
// ParseEnvelope is more lenient than this, for the sake of other encoders
// and of future versions; see there.
func AppendEnvelope(dst []byte, e *Envelope) []byte {
	dst = append(dst, 0x90|envelopeFields, envelopeVersion)
	dst = appendUint(dst, uint64(e.Kind))
	dst = appendUint(dst, uint64(e.Flags))
	dst = appendUint(dst, e.Seq)
	dst = appendUint(dst, e.Ack)
	dst = appendUint(dst, e.ID)
	dst = appendStrHeader(dst, len(e.Topic))
	dst = append(dst, e.Topic...)
	if len(e.Body) == 0 {
		return append(dst, 0xc0)
	}
	return append(dst, e.Body...)
}

// ParseEnvelope decodes the envelope in b into e without copying: e.Topic and
// e.Body alias b. It first validates all of b with lim, as Validate does, so
// Body is known to be exactly one well-formed msgpack value.
//
// It accepts what AppendEnvelope writes and more: any msgpack integer
// encoding of a non-negative value that fits the field (a negative or
// non-integer field is ErrMalformed), a topic in any str form or nil (an
// empty topic), and, for forward compatibility, an array of more than 8
// elements, whose extra elements are validated and ignored. An array of fewer
// than 8 elements is ErrMalformed, a version other than 1 is ErrVersion, and a
// topic longer than MaxTopicLen is ErrTooLarge. On error e is left unchanged.
func ParseEnvelope(b []byte, e *Envelope, lim Limits) error {
	if parseCanonical(b, e, lim) {
		return nil
	}
	return parseGeneral(b, e, lim)
}

// parseGeneral is ParseEnvelope for any envelope: validate, then decode.
func parseGeneral(b []byte, e *Envelope, lim Limits) error {
	if err := Validate(b, lim); err != nil {
		return err
	}
	// From here on b is well-formed, so headers and payloads are in bounds.
	var fields uint64
	p := 0
	switch c := b[0]; {
	case c >= 0x90 && c <= 0x9f:
		fields, p = uint64(c&0x0f), 1
	case c == 0xdc:
		fields, p = uint64(binary.BigEndian.Uint16(b[1:])), 3
	case c == 0xdd:
		fields, p = uint64(binary.BigEndian.Uint32(b[1:])), 5
	default:
		return fmt.Errorf("codec: envelope is not an array at offset 0: %w", ErrMalformed)
	}
	if fields < envelopeFields {
		return fmt.Errorf("codec: envelope has %d fields, want at least %d at offset 0: %w", fields, envelopeFields, ErrMalformed)
	}

	var ints [6]uint64 // version, kind, flags, seq, ack, id
	for i := range ints {
		v, n, ok := parseUint(b[p:])
		if !ok {
			return fmt.Errorf("codec: envelope %s is not an unsigned integer at offset %d: %w", intFieldNames[i], p, ErrMalformed)
		}
		if i == 0 && v != envelopeVersion {
			return fmt.Errorf("codec: envelope version %d at offset %d: %w", v, p, ErrVersion)
		}
		if (i == 1 || i == 2) && v > math.MaxUint8 {
			return fmt.Errorf("codec: envelope %s %d out of range at offset %d: %w", intFieldNames[i], v, p, ErrMalformed)
		}
		ints[i] = v
		p += n
	}

	var topic []byte
	var n uint64
	hdr := 0
	switch c := b[p]; {
	case c == 0xc0:
		hdr = 1
	case c >= 0xa0 && c <= 0xbf:
		n, hdr = uint64(c&0x1f), 1
	case c == 0xd9:
		n, hdr = uint64(b[p+1]), 2
	case c == 0xda:
		n, hdr = uint64(binary.BigEndian.Uint16(b[p+1:])), 3
	case c == 0xdb:
		n, hdr = uint64(binary.BigEndian.Uint32(b[p+1:])), 5
	default:
		return fmt.Errorf("codec: envelope topic is not a str at offset %d: %w", p, ErrMalformed)
	}
	if n > MaxTopicLen {
		return fmt.Errorf("codec: topic of %d bytes is over %d at offset %d: %w", n, MaxTopicLen, p, ErrTooLarge)
	}
	if n > 0 {
		end := p + hdr + int(n)
		topic = b[p+hdr : end : end]
	}
	p += hdr + int(n)

	// With exactly 8 fields the body is the last value, which Validate
	// proved ends where b does; only extra fields need skipping over.
	end := len(b)
	if fields > envelopeFields {
		n, err := skip(b[p:], lim, nil)
		if err != nil {
			return err
		}
		end = p + n
	}

	*e = Envelope{
		Kind:  Kind(ints[1]),
		Flags: uint8(ints[2]),
		Seq:   ints[3],
		Ack:   ints[4],
		ID:    ints[5],
		Topic: topic,
		Body:  b[p:end:end],
	}
	return nil
}

var intFieldNames = [...]string{"version", "kind", "flags", "seq", "ack", "id"}

// parseCanonical decodes, in one pass, an envelope in the form
// AppendEnvelope writes for a body that holds no container (raw bytes, a
// string, a number, nil): the common case of every message. It reports
// false, leaving e alone, for anything else, which parseGeneral then
// validates and decodes (or refuses with the precise error). What it
// accepts, parseGeneral accepts too, with the same result.
func parseCanonical(b []byte, e *Envelope, lim Limits) bool {
	if len(b) < 10 || b[0] != 0x90|envelopeFields || b[1] != envelopeVersion {
		return false
	}
	_, maxItems, maxStr := lim.resolve()
	if maxItems < envelopeFields {
		return false
	}
	var ints [5]uint64 // kind, flags, seq, ack, id
	p := 2
	for i := range ints {
		v, n, ok := parseUintChecked(b[p:])
		if !ok {
			return false
		}
		ints[i] = v
		p += n
	}
	if ints[0] > math.MaxUint8 || ints[1] > math.MaxUint8 || p >= len(b) {
		return false
	}
	var topic []byte
	switch c := b[p]; {
	case c == 0xc0:
		p++
	case c >= 0xa0 && c <= 0xbf:
		n := int(c & 0x1f)
		if (maxStr > 0 && n > maxStr) || len(b)-p-1 < n {
			return false
		}
		if n > 0 {
			topic = b[p+1 : p+1+n : p+1+n]
		}
		p += 1 + n
	default:
		return false
	}
	if p >= len(b) {
		return false
	}
	d := codes[b[p]]
	end := p + int(d.hdr)
	switch {
	case d.class != classScalar && d.class != classBytes, end > len(b):
		return false
	case d.class == classBytes:
		n := d.count(b[p:])
		if (maxStr > 0 && n > uint64(maxStr)) || n > uint64(len(b)-end) {
			return false
		}
		end += int(n)
	}
	if end != len(b) {
		return false
	}
	*e = Envelope{
		Kind:  Kind(ints[0]),
		Flags: uint8(ints[1]),
		Seq:   ints[2],
		Ack:   ints[3],
		ID:    ints[4],
		Topic: topic,
		Body:  b[p:end:end],
	}
	return true
}

// parseUintChecked is parseUint for unvalidated bytes: only unsigned
// forms, and only when all of the integer is present.
func parseUintChecked(b []byte) (v uint64, n int, ok bool) {
	if len(b) == 0 {
		return 0, 0, false
	}
	switch c := b[0]; {
	case c <= 0x7f:
		return uint64(c), 1, true
	case c == 0xcc && len(b) >= 2:
		return uint64(b[1]), 2, true
	case c == 0xcd && len(b) >= 3:
		return uint64(binary.BigEndian.Uint16(b[1:])), 3, true
	case c == 0xce && len(b) >= 5:
		return uint64(binary.BigEndian.Uint32(b[1:])), 5, true
	case c == 0xcf && len(b) >= 9:
		return binary.BigEndian.Uint64(b[1:]), 9, true
	}
	return 0, 0, false
}

// appendUint appends v in its shortest msgpack unsigned integer form.
func appendUint(dst []byte, v uint64) []byte {
	switch {
	case v <= 0x7f:
		return append(dst, byte(v))
	case v <= math.MaxUint8:
		return append(dst, 0xcc, byte(v))
	case v <= math.MaxUint16:
		return append(dst, 0xcd, byte(v>>8), byte(v))
	case v <= math.MaxUint32:
		return append(dst, 0xce, byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
	default:
		return binary.BigEndian.AppendUint64(append(dst, 0xcf), v)
	}
}

// appendStrHeader appends the shortest msgpack str header for n bytes.
func appendStrHeader(dst []byte, n int) []byte {
	switch {
	case n <= 31:
		return append(dst, 0xa0|byte(n))
	case n <= math.MaxUint8:
		return append(dst, 0xd9, byte(n))
	case n <= math.MaxUint16:
		return append(dst, 0xda, byte(n>>8), byte(n))
	case uint64(n) <= math.MaxUint32:
		return append(dst, 0xdb, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	default:
		panic("codec: str of 4 GiB or more")
	}
}

// parseUint decodes the msgpack integer at the start of b, which must be
// well-formed, and reports whether it is a non-negative integer. n is its
// encoded length.
func parseUint(b []byte) (v uint64, n int, ok bool) {
	if v, n, ok := parseUintChecked(b); ok {
		return v, n, ok
	}
	var s int64
	switch b[0] {
	case 0xd0:
		s, n = int64(int8(b[1])), 2
	case 0xd1:
		s, n = int64(int16(binary.BigEndian.Uint16(b[1:]))), 3
	case 0xd2:
		s, n = int64(int32(binary.BigEndian.Uint32(b[1:]))), 5
	case 0xd3:
		s, n = int64(binary.BigEndian.Uint64(b[1:])), 9
	default:
		return 0, 0, false
	}
	return uint64(s), n, s >= 0
}
