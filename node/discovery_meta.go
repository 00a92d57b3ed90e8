package node

import (
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"slices"
	"unicode/utf8"
)

// Meta is the small blob every member gossips about itself through
// memberlist's NodeMeta. Wire format, version 1 (all integers big-endian):
//
//	version   u8  = 1
//	link port u16 (1..65535)
//	name      u8 length (1..64) + bytes ([A-Za-z0-9._-])
//	tags      u16 count, then per tag: key u8 length (1..255) + bytes,
//	          value u8 length (0..255) + bytes; keys strictly increasing
//	          (bytewise), keys and values valid UTF-8
//
// The encoding is canonical: decodeMeta accepts exactly the bytes encodeMeta
// produces, so a decoded meta re-encodes to the same bytes. Any key holder can
// gossip arbitrary meta, which is why decoding is strict and bounds-checked.

const (
	// metaVersion is the first byte of every meta blob; a future layout
	// bumps it so that old members can tell it apart and ignore the member.
	metaVersion = 1
	// metaMaxLen is our own cap on an encoded meta. memberlist's hard limit
	// (memberlist.MetaMaxSize, 512) panics when exceeded; staying well below
	// it leaves room for a future field without ever reaching that panic.
	metaMaxLen = 400
	// metaHeaderLen is version + link port + name length + tag count,
	// without the name bytes.
	metaHeaderLen = 1 + 2 + 1 + 2
)

// errMetaTooLarge is returned by encodeMeta when name and tags do not fit in
// metaMaxLen bytes.
var errMetaTooLarge = errors.New("node: member meta too large")

// nodeMeta is the decoded form of a member's meta blob.
type nodeMeta struct {
	LinkPort uint16            // port of the member's link listener
	Name     string            // stable node name, must match the memberlist name's prefix
	Tags     map[string]string // user tags; never nil after decodeMeta
}

// encodeMeta returns the canonical encoding of m, or an error when a field
// is invalid or the result would exceed metaMaxLen bytes.
func encodeMeta(m nodeMeta) ([]byte, error) {
	if m.LinkPort == 0 {
		return nil, errors.New("node: meta: link port is 0")
	}
	if err := discoCheckName(m.Name); err != nil {
		return nil, err
	}
	if len(m.Tags) > metaMaxLen/2 {
		// Each tag takes at least two bytes; refuse before sorting a huge map.
		return nil, fmt.Errorf("%w: %d tags (limit %d bytes in all)", errMetaTooLarge, len(m.Tags), metaMaxLen)
	}
	size := metaHeaderLen + len(m.Name)
	for k, v := range m.Tags {
		if err := metaCheckTag(k, v); err != nil {
			return nil, err
		}
		size += 2 + len(k) + len(v)
	}
	if size > metaMaxLen {
		return nil, fmt.Errorf("%w: name and tags need %d bytes, the limit is %d", errMetaTooLarge, size, metaMaxLen)
	}
	b := make([]byte, 0, size)
	b = append(b, metaVersion)
	b = binary.BigEndian.AppendUint16(b, m.LinkPort)
	b = append(b, byte(len(m.Name)))
	b = append(b, m.Name...)
	b = binary.BigEndian.AppendUint16(b, uint16(len(m.Tags)))
	for _, k := range slices.Sorted(maps.Keys(m.Tags)) {
		v := m.Tags[k]
		b = append(b, byte(len(k)))
		b = append(b, k...)
		b = append(b, byte(len(v)))
		b = append(b, v...)
	}
	return b, nil
}

// metaCheckTag validates one tag for encoding (and, through decodeMeta, for
// decoding): a non-empty key and both parts valid UTF-8 of at most 255 bytes.
func metaCheckTag(k, v string) error {
	switch {
	case k == "":
		return errors.New("node: meta: empty tag key")
	case len(k) > 255:
		return fmt.Errorf("node: meta: tag key %.32q... is %d bytes, limit 255", k, len(k))
	case len(v) > 255:
		return fmt.Errorf("node: meta: value of tag %.32q is %d bytes, limit 255", k, len(v))
	case !utf8.ValidString(k):
		return fmt.Errorf("node: meta: tag key %q is not valid UTF-8", k)
	case !utf8.ValidString(v):
		return fmt.Errorf("node: meta: value of tag %.32q is not valid UTF-8", k)
	}
	return nil
}

// metaReader is a bounds-checked cursor over untrusted meta bytes. Every
// read reports failure instead of panicking.
type metaReader struct {
	b   []byte
	err error
}

// fail records the first error.
func (r *metaReader) fail(what string) {
	if r.err == nil {
		r.err = fmt.Errorf("node: meta: truncated at %s", what)
	}
}

// u8 reads one byte.
func (r *metaReader) u8(what string) int {
	if r.err != nil || len(r.b) < 1 {
		r.fail(what)
		return 0
	}
	v := r.b[0]
	r.b = r.b[1:]
	return int(v)
}

// u16 reads a big-endian uint16.
func (r *metaReader) u16(what string) int {
	if r.err != nil || len(r.b) < 2 {
		r.fail(what)
		return 0
	}
	v := binary.BigEndian.Uint16(r.b)
	r.b = r.b[2:]
	return int(v)
}

// str reads n bytes as a string (a copy, so the result does not pin the
// caller's buffer).
func (r *metaReader) str(n int, what string) string {
	if r.err != nil || len(r.b) < n {
		r.fail(what)
		return ""
	}
	s := string(r.b[:n])
	r.b = r.b[n:]
	return s
}

// decodeMeta parses a meta blob received from the network. It never panics,
// checks every length against the bytes left, and rejects anything that
// encodeMeta would not have produced (unknown version, invalid name or tags,
// unsorted or duplicate keys, trailing bytes, more than metaMaxLen bytes).
func decodeMeta(b []byte) (nodeMeta, error) {
	if len(b) == 0 {
		return nodeMeta{}, errors.New("node: meta: empty (not a conclave member?)")
	}
	if b[0] != metaVersion {
		return nodeMeta{}, fmt.Errorf("node: meta: unknown version %d (want %d)", b[0], metaVersion)
	}
	if len(b) > metaMaxLen {
		return nodeMeta{}, fmt.Errorf("%w: %d bytes, the limit is %d", errMetaTooLarge, len(b), metaMaxLen)
	}
	r := metaReader{b: b[1:]}
	var m nodeMeta
	m.LinkPort = uint16(r.u16("link port"))
	m.Name = r.str(r.u8("name length"), "name")
	n := r.u16("tag count")
	if r.err != nil {
		return nodeMeta{}, r.err
	}
	if m.LinkPort == 0 {
		return nodeMeta{}, errors.New("node: meta: link port is 0")
	}
	if err := discoCheckName(m.Name); err != nil {
		return nodeMeta{}, err
	}
	if n > len(r.b)/2 {
		// Each tag takes at least two bytes: do not trust the count for the
		// allocation below.
		return nodeMeta{}, fmt.Errorf("node: meta: %d tags declared in %d bytes", n, len(r.b))
	}
	m.Tags = make(map[string]string, n)
	prev := ""
	for i := range n {
		k := r.str(r.u8("tag key length"), "tag key")
		v := r.str(r.u8("tag value length"), "tag value")
		if r.err != nil {
			return nodeMeta{}, r.err
		}
		if err := metaCheckTag(k, v); err != nil {
			return nodeMeta{}, err
		}
		if i > 0 && k <= prev {
			return nodeMeta{}, fmt.Errorf("node: meta: tag key %q out of order or repeated", k)
		}
		prev = k
		m.Tags[k] = v
	}
	if len(r.b) != 0 {
		return nodeMeta{}, fmt.Errorf("node: meta: %d trailing bytes", len(r.b))
	}
	return m, nil
}
