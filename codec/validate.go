package codec

import (
	"encoding/binary"
	"fmt"
)

const (
	defaultMaxDepth = 32
	defaultMaxItems = 1 << 20

	// inlineDepth is how many open containers the validator tracks without
	// allocating; only a MaxDepth above it costs an allocation per call.
	inlineDepth = 64
)

// Limits bounds what Validate and Skip accept. A zero or negative field
// selects its default, so the zero Limits is the same as DefaultLimits.
type Limits struct {
	// MaxDepth is the deepest nesting of arrays and maps accepted: a
	// top-level array has depth 1, an array inside it depth 2. The default
	// is 32, which keeps the recursive msgpack decoder far from stack
	// exhaustion.
	MaxDepth int

	// MaxItems bounds the number of elements declared by all the arrays and
	// maps of one value together, a map entry counting as 2. The default is
	// 1<<20. It caps the memory a decoder spends on element slots, which can
	// be many times the encoded size: a one-byte nil becomes a 16-byte
	// interface value.
	MaxItems int

	// MaxStringLen bounds the payload length of each str, bin and ext value.
	// The default, 0, bounds them only by the bytes present in the input.
	MaxStringLen int
}

// DefaultLimits spells out the limits that the zero Limits selects. Msgpack
// validates with these before decoding. Changing this variable does not
// change the defaults.
var DefaultLimits = Limits{MaxDepth: 32, MaxItems: 1 << 20}

func (l Limits) resolve() (maxDepth, maxItems, maxStr int) {
	maxDepth, maxItems, maxStr = l.MaxDepth, l.MaxItems, l.MaxStringLen
	if maxDepth <= 0 {
		maxDepth = defaultMaxDepth
	}
	if maxItems <= 0 {
		maxItems = defaultMaxItems
	}
	if maxStr < 0 {
		maxStr = 0
	}
	return maxDepth, maxItems, maxStr
}

// Validate reports whether b holds exactly one complete msgpack value within
// lim. It decodes nothing, and it allocates nothing unless it returns an
// error or lim.MaxDepth is over 64, so it is cheap to run on bytes from an
// untrusted peer before handing them to a msgpack decoder, which would
// otherwise trust declared lengths: a few header bytes claiming a 4 GiB string
// or 2^32 array elements make it allocate that much, and deep nesting
// exhausts its stack.
//
// Every declared length and count is checked against the bytes actually
// present before anything relies on it: a str, bin or ext payload must fit in
// the input, and an array of n elements needs at least n more bytes (a map,
// 2n), since every element takes at least one byte.
//
// The error wraps ErrMalformed, ErrTooDeep, ErrTooLarge or ErrTrailingBytes.
// A declared length or count over a limit is ErrTooLarge, even where the
// input is also too short to hold it; one within the limits that runs past
// the end of the input is ErrMalformed.
func Validate(b []byte, lim Limits) error {
	n, err := skip(b, lim, nil)
	if err != nil {
		return err
	}
	if n != len(b) {
		return fmt.Errorf("codec: %d trailing bytes at offset %d: %w", len(b)-n, n, ErrTrailingBytes)
	}
	return nil
}

// Skip validates the first msgpack value in b as Validate does and returns
// its encoded length, for callers that parse a sequence of values. Bytes
// after that value are not examined.
func Skip(b []byte, lim Limits) (n int, err error) {
	return skip(b, lim, nil)
}

// Value classes, by first byte.
const (
	classScalar    = iota // header and payload of known total length
	classBytes            // str or bin: a length, then that many bytes
	classExt              // ext: a length, a type byte, then that many bytes
	classArray            // a count, then that many values
	classMap              // a count, then twice that many values
	classForbidden        // 0xc1, which msgpack never uses
)

// code describes the encoding that a first byte starts.
type code struct {
	class uint8
	hdr   uint8 // header length, including the first byte and the ext type
	width uint8 // bytes of the big-endian length or count after the first byte; 0 if it is n
	n     uint8 // payload length (fixstr, fixext) or count (fixarray, fixmap) when width is 0
}

// count returns the payload length or element count of the value that
// starts b, whose header (d.hdr bytes) must be present.
func (d code) count(b []byte) uint64 {
	switch d.width {
	case 1:
		return uint64(b[1])
	case 2:
		return uint64(binary.BigEndian.Uint16(b[1:]))
	case 4:
		return uint64(binary.BigEndian.Uint32(b[1:]))
	}
	return uint64(d.n)
}

// codes maps every first byte to its encoding, so that the validator needs
// one table lookup rather than a cascade of comparisons per value.
var codes = func() (t [256]code) {
	for c := range 256 {
		switch {
		case c <= 0x7f || c >= 0xe0:
			t[c] = code{classScalar, 1, 0, 0} // positive and negative fixint
		case c <= 0x8f:
			t[c] = code{classMap, 1, 0, uint8(c & 0x0f)}
		case c <= 0x9f:
			t[c] = code{classArray, 1, 0, uint8(c & 0x0f)}
		case c <= 0xbf:
			t[c] = code{classBytes, 1, 0, uint8(c & 0x1f)} // fixstr
		}
	}
	for c, d := range map[int]code{
		0xc0: {classScalar, 1, 0, 0}, // nil
		0xc1: {classForbidden, 1, 0, 0},
		0xc2: {classScalar, 1, 0, 0}, // false
		0xc3: {classScalar, 1, 0, 0}, // true
		0xc4: {classBytes, 2, 1, 0},  // bin8
		0xc5: {classBytes, 3, 2, 0},  // bin16
		0xc6: {classBytes, 5, 4, 0},  // bin32
		0xc7: {classExt, 3, 1, 0},    // ext8
		0xc8: {classExt, 4, 2, 0},    // ext16
		0xc9: {classExt, 6, 4, 0},    // ext32
		0xca: {classScalar, 5, 0, 0}, // float32
		0xcb: {classScalar, 9, 0, 0}, // float64
		0xcc: {classScalar, 2, 0, 0}, // uint8
		0xcd: {classScalar, 3, 0, 0}, // uint16
		0xce: {classScalar, 5, 0, 0}, // uint32
		0xcf: {classScalar, 9, 0, 0}, // uint64
		0xd0: {classScalar, 2, 0, 0}, // int8
		0xd1: {classScalar, 3, 0, 0}, // int16
		0xd2: {classScalar, 5, 0, 0}, // int32
		0xd3: {classScalar, 9, 0, 0}, // int64
		0xd4: {classExt, 2, 0, 1},    // fixext1
		0xd5: {classExt, 2, 0, 2},    // fixext2
		0xd6: {classExt, 2, 0, 4},    // fixext4
		0xd7: {classExt, 2, 0, 8},    // fixext8
		0xd8: {classExt, 2, 0, 16},   // fixext16
		0xd9: {classBytes, 2, 1, 0},  // str8
		0xda: {classBytes, 3, 2, 0},  // str16
		0xdb: {classBytes, 5, 4, 0},  // str32
		0xdc: {classArray, 3, 2, 0},  // array16
		0xdd: {classArray, 5, 4, 0},  // array32
		0xde: {classMap, 3, 2, 0},    // map16
		0xdf: {classMap, 5, 4, 0},    // map32
	} {
		t[c] = d
	}
	return t
}()

// skip implements Skip. If exts is not nil, the offset of every non-empty ext
// payload is appended to it, in increasing order.
//
// The walk is iterative: stack holds, for each open container, the number of
// elements still to come, so the depth limit bounds memory and no input can
// drive recursion.
func skip(b []byte, lim Limits, exts *[]int) (int, error) {
	maxDepth, maxItems, maxStr := lim.resolve()
	var inline [inlineDepth]int
	stack := inline[:]
	if maxDepth > len(stack) {
		stack = make([]int, maxDepth)
	}
	depth, items, p := 0, 0, 0
	for {
		if p >= len(b) {
			return 0, fmt.Errorf("codec: unexpected end of input at offset %d: %w", p, ErrMalformed)
		}
		d := codes[b[p]]
		hdr := int(d.hdr)
		if len(b)-p < hdr {
			return 0, fmt.Errorf("codec: truncated header of code 0x%02x at offset %d: %w", b[p], p, ErrMalformed)
		}
		n := d.count(b[p:]) // payload length or element count
		left := uint64(len(b) - p - hdr)
		switch d.class {
		case classScalar:
			p += hdr
		case classBytes, classExt:
			if maxStr > 0 && n > uint64(maxStr) {
				return 0, fmt.Errorf("codec: length %d over MaxStringLen %d at offset %d: %w", n, maxStr, p, ErrTooLarge)
			}
			if n > left {
				return 0, fmt.Errorf("codec: length %d exceeds the %d bytes left at offset %d: %w", n, left, p, ErrMalformed)
			}
			if d.class == classExt && exts != nil && n > 0 {
				*exts = append(*exts, p+hdr)
			}
			p += hdr + int(n)
		case classArray, classMap:
			if d.class == classMap {
				n *= 2
			}
			if depth >= maxDepth {
				return 0, fmt.Errorf("codec: nesting deeper than %d at offset %d: %w", maxDepth, p, ErrTooDeep)
			}
			if n > uint64(maxItems-items) {
				return 0, fmt.Errorf("codec: %d elements over MaxItems %d at offset %d: %w", n, maxItems, p, ErrTooLarge)
			}
			if n > left {
				return 0, fmt.Errorf("codec: %d elements cannot fit in the %d bytes left at offset %d: %w", n, left, p, ErrMalformed)
			}
			items += int(n)
			p += hdr
			if n > 0 {
				stack[depth] = int(n)
				depth++
				continue
			}
		default:
			return 0, fmt.Errorf("codec: reserved code 0xc1 at offset %d: %w", p, ErrMalformed)
		}
		// A value is complete: count it against the innermost open
		// container, closing every container it completes in turn.
		for depth > 0 {
			stack[depth-1]--
			if stack[depth-1] > 0 {
				break
			}
			depth--
		}
		if depth == 0 {
			return p, nil
		}
	}
}
