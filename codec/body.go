package codec

import (
	"encoding/binary"
	"fmt"
	"math"
)

// AppendBytesBody appends p to dst as a msgpack bin in its shortest form and
// returns the extended buffer: the body of an envelope whose Flags include
// FlagRaw. p must be shorter than 4 GiB.
func AppendBytesBody(dst, p []byte) []byte {
	return append(AppendBinHeader(dst, len(p)), p...)
}

// AppendBinHeader appends the header of a msgpack bin of n bytes, in its
// shortest form, so that a caller can write the n bytes after it without
// building the bin separately. n must be under 4 GiB.
func AppendBinHeader(dst []byte, n int) []byte {
	switch {
	case n <= math.MaxUint8:
		return append(dst, 0xc4, byte(n))
	case n <= math.MaxUint16:
		return append(dst, 0xc5, byte(n>>8), byte(n))
	case uint64(n) <= math.MaxUint32:
		return append(dst, 0xc6, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
	panic("codec: bin of 4 GiB or more")
}

// BytesBody returns the bytes held by body, an encoded msgpack bin or str,
// without copying: the result aliases body. A msgpack nil yields nil, so an
// envelope sent with an empty Body reads as empty. Any other value is
// ErrMalformed, and bytes after the bin or str are ErrTrailingBytes.
func BytesBody(body []byte) ([]byte, error) {
	if len(body) == 0 {
		return nil, fmt.Errorf("codec: empty body at offset 0: %w", ErrMalformed)
	}
	var hdr int
	c := body[0]
	switch {
	case c == 0xc0:
		hdr = 1
	case c >= 0xa0 && c <= 0xbf:
		hdr = 1
	case c == 0xc4 || c == 0xd9:
		hdr = 2
	case c == 0xc5 || c == 0xda:
		hdr = 3
	case c == 0xc6 || c == 0xdb:
		hdr = 5
	default:
		return nil, fmt.Errorf("codec: body of code 0x%02x is not bin or str at offset 0: %w", c, ErrMalformed)
	}
	if len(body) < hdr {
		return nil, fmt.Errorf("codec: truncated header of code 0x%02x at offset 0: %w", c, ErrMalformed)
	}
	var n uint64
	switch hdr {
	case 1:
		if c != 0xc0 {
			n = uint64(c & 0x1f)
		}
	case 2:
		n = uint64(body[1])
	case 3:
		n = uint64(binary.BigEndian.Uint16(body[1:]))
	case 5:
		n = uint64(binary.BigEndian.Uint32(body[1:]))
	}
	left := uint64(len(body) - hdr)
	if n > left {
		return nil, fmt.Errorf("codec: length %d exceeds the %d bytes left at offset 0: %w", n, left, ErrMalformed)
	}
	if n < left {
		end := hdr + int(n)
		return nil, fmt.Errorf("codec: %d trailing bytes at offset %d: %w", len(body)-end, end, ErrTrailingBytes)
	}
	if c == 0xc0 {
		return nil, nil
	}
	return body[hdr:len(body):len(body)], nil
}
