package transport

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/seed0811993b/conclave/internal/frame"
)

const (
	// readBufSize holds many small frames, or one sealed record (64 KiB) with
	// room to spare, so the record layer can decrypt straight into it.
	// Buffers this size come from a pool and are held only while data keeps
	// arriving.
	readBufSize = 160 << 10
	// idleBufSize is the buffer a quiet link waits with: most links of a
	// cluster are idle most of the time, and each would otherwise hold a
	// full buffer while it waits.
	idleBufSize = 4 << 10
	// bigStep is how much a large frame's buffer grows per step: memory
	// follows the bytes that actually arrive, not the length a peer declares.
	bigStep = 1 << 20
)

// frameReader reads frames from a byte stream. It is resumable: when a read
// fails with a timeout (a cancelled context), what it has read stays buffered
// and the next call carries on mid-frame.
type frameReader struct {
	r          io.Reader
	max        int
	direct     int    // frames of this size or more bypass buf; 0 means directRead
	buf        []byte // buffered bytes are buf[start:end]
	start, end int
	small      []byte  // this reader's idle buffer
	pooled     *[]byte // the pooled buffer buf is, when it is one
	lastRead   int     // bytes the latest Read returned

	big     []byte // a frame too large for buf, filled across calls
	bigWant int
}

func (fr *frameReader) next() ([]byte, error) {
	if fr.big != nil {
		return fr.fillBig()
	}
	if fr.buf == nil {
		fr.useSmall()
	}
	for {
		n, hdr, need, err := frame.ParseHeader(fr.buf[fr.start:fr.end], fr.max)
		switch {
		case errors.Is(err, frame.ErrTooLarge):
			return nil, fmt.Errorf("%w: %w", ErrFrameTooLarge, err)
		case err != nil:
			return nil, fmt.Errorf("%w: %w", ErrProtocol, err)
		case need > 0:
			if err := fr.fill(need); err != nil {
				return nil, err
			}
			continue
		}
		if hdr+n <= fr.end-fr.start {
			p := make([]byte, n)
			copy(p, fr.buf[fr.start+hdr:])
			fr.start += hdr + n
			return p, nil
		}
		if n < cmp.Or(fr.direct, directRead) {
			if err := fr.fill(hdr + n); err != nil {
				return nil, err
			}
			continue
		}
		// A large frame: copy what is buffered into its payload and read the
		// rest straight into it, so a sealed stream is decrypted directly
		// into the memory the caller gets.
		fr.start += hdr
		fr.bigWant = n
		fr.big = make([]byte, 0, min(n, bigStep))
		take := min(n, fr.end-fr.start)
		fr.big = append(fr.big, fr.buf[fr.start:fr.start+take]...)
		fr.start += take
		return fr.fillBig()
	}
}

// directRead is the frame size from which the payload is read into directly
// rather than through the buffer.
const directRead = 16 << 10

func (fr *frameReader) fillBig() ([]byte, error) {
	for len(fr.big) < fr.bigWant {
		if len(fr.big) == cap(fr.big) {
			grown := make([]byte, len(fr.big), min(fr.bigWant, cap(fr.big)+bigStep))
			copy(grown, fr.big)
			fr.big = grown
		}
		m, err := fr.r.Read(fr.big[len(fr.big):cap(fr.big)])
		fr.big = fr.big[:len(fr.big)+m]
		if m == 0 && err != nil {
			return nil, noEOF(err)
		}
	}
	p := fr.big
	fr.big = nil
	return p, nil
}

// buffered reports whether a whole small frame is buffered, so that next
// returns it without reading.
func (fr *frameReader) buffered() bool {
	if fr.big != nil {
		return false
	}
	n, hdr, need, err := frame.ParseHeader(fr.buf[fr.start:fr.end], fr.max)
	return err == nil && need == 0 && hdr+n <= fr.end-fr.start
}

// bigBufs recycles the read buffers of busy links.
var bigBufs = sync.Pool{New: func() any { b := make([]byte, readBufSize); return &b }}

// useSmall switches an empty reader to its small buffer, returning a big
// one to the pool.
func (fr *frameReader) useSmall() {
	if fr.small == nil {
		fr.small = make([]byte, idleBufSize)
	}
	if fr.pooled != nil {
		bigBufs.Put(fr.pooled)
		fr.pooled = nil
	}
	fr.buf, fr.start, fr.end = fr.small, 0, 0
}

// useBig moves the buffered bytes into a big buffer.
func (fr *frameReader) useBig() {
	if fr.pooled != nil {
		return
	}
	fr.pooled = bigBufs.Get().(*[]byte)
	fr.end = copy(*fr.pooled, fr.buf[fr.start:fr.end])
	fr.buf, fr.start = *fr.pooled, 0
}

// fill reads until at least n bytes are buffered; n <= readBufSize. A
// reader about to wait with nothing buffered after a light read waits with
// its small buffer; one whose small buffer fills up, or that needs more
// than it holds, moves to a big one.
func (fr *frameReader) fill(n int) error {
	if fr.start == fr.end && fr.pooled != nil && fr.lastRead < idleBufSize {
		fr.useSmall()
	}
	if n > len(fr.buf) {
		fr.useBig()
	}
	if fr.start+n > len(fr.buf) {
		fr.end = copy(fr.buf, fr.buf[fr.start:fr.end])
		fr.start = 0
	}
	for fr.end-fr.start < n {
		if fr.end == len(fr.buf) && fr.pooled == nil {
			fr.useBig() // the small buffer filled: data keeps coming
		}
		m, err := fr.r.Read(fr.buf[fr.end:])
		fr.lastRead = m
		fr.end += m
		if fr.end-fr.start >= n {
			return nil
		}
		if err != nil {
			if fr.end > fr.start {
				return noEOF(err)
			}
			return err
		}
	}
	return nil
}

// noEOF reports an end of stream inside a frame as io.ErrUnexpectedEOF.
func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}
