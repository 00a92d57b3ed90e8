// Package frame holds the frame header of Python's multiprocessing.connection,
// the one framing every conclave byte stream uses: handshake messages in package
// auth and application frames in package transport.
//
// A frame is a 4-byte big-endian signed length followed by that many bytes. A
// length of -1 escapes to an 8-byte big-endian unsigned length, which Python
// uses for frames over 0x7fffffff bytes and accepts for any size. Any other
// negative length is invalid (Python reads it as an empty message; conclave
// rejects it).
package frame

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
)

const (
	// ShortHeaderLen is the size of the usual 4-byte header.
	ShortHeaderLen = 4
	// LongHeaderLen is the size of the escaped header: -1 then an 8-byte length.
	LongHeaderLen = 12
	// maxShort is the largest length that fits the 4-byte form.
	maxShort = math.MaxInt32
)

var (
	// ErrNegativeLength reports a header with a negative length other than -1.
	ErrNegativeLength = errors.New("frame: negative length")
	// ErrTooLarge reports a frame longer than the receiver's limit.
	ErrTooLarge = errors.New("frame: too large")
)

// HeaderLen returns the header size Append uses for a payload of n bytes.
func HeaderLen(n int) int {
	if n > maxShort {
		return LongHeaderLen
	}
	return ShortHeaderLen
}

// AppendHeader appends the header for an n-byte payload to dst, in the
// shortest form Python itself would write.
func AppendHeader(dst []byte, n int) []byte {
	if n > maxShort {
		dst = binary.BigEndian.AppendUint32(dst, math.MaxUint32) // -1
		return binary.BigEndian.AppendUint64(dst, uint64(n))
	}
	return binary.BigEndian.AppendUint32(dst, uint32(n))
}

// Append appends one whole frame holding p to dst.
func Append(dst, p []byte) []byte {
	return append(AppendHeader(dst, len(p)), p...)
}

// ParseHeader reads a header from the start of b. It returns the payload
// length and the header size, or need > 0 when b is too short to tell (need is
// how many header bytes are required in all). A length over max is ErrTooLarge;
// the check happens here so that no caller allocates for it.
func ParseHeader(b []byte, max int) (n, hdr, need int, err error) {
	if len(b) < ShortHeaderLen {
		return 0, 0, ShortHeaderLen, nil
	}
	v := int32(binary.BigEndian.Uint32(b))
	switch {
	case v >= 0:
		n, hdr = int(v), ShortHeaderLen
	case v == -1:
		if len(b) < LongHeaderLen {
			return 0, 0, LongHeaderLen, nil
		}
		u := binary.BigEndian.Uint64(b[ShortHeaderLen:])
		if u > uint64(max) {
			return 0, 0, 0, fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, u, max)
		}
		n, hdr = int(u), LongHeaderLen
	default:
		return 0, 0, 0, fmt.Errorf("%w: %d", ErrNegativeLength, v)
	}
	if n > max {
		return 0, 0, 0, fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, n, max)
	}
	return n, hdr, 0, nil
}

// Read reads one frame of at most max bytes from r, a simple blocking reader
// for handshakes where frames are small and rare. It reads the header a piece
// at a time so that it never consumes bytes beyond the frame.
func Read(r io.Reader, max int) ([]byte, error) {
	var hb [LongHeaderLen]byte
	have := 0
	for {
		n, _, need, err := ParseHeader(hb[:have], max)
		if err != nil {
			return nil, err
		}
		if need > 0 {
			if _, err := io.ReadFull(r, hb[have:need]); err != nil {
				return nil, noEOF(err, have)
			}
			have = need
			continue
		}
		p := make([]byte, n)
		if _, err := io.ReadFull(r, p); err != nil {
			return nil, noEOF(err, 1)
		}
		return p, nil
	}
}

// noEOF turns io.EOF after some bytes of a frame into io.ErrUnexpectedEOF.
func noEOF(err error, have int) error {
	if err == io.EOF && have > 0 {
		return io.ErrUnexpectedEOF
	}
	return err
}
