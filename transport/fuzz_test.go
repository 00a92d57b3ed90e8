package transport

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/seed0811993b/conclave/internal/frame"
)

// FuzzFrameReader feeds arbitrary bytes, in arbitrary read sizes, to the
// frame reader: it must never panic, never return a frame over its limit, and
// agree with a plain reading of the same bytes.
func FuzzFrameReader(f *testing.F) {
	f.Add(frame.Append(nil, []byte("hello")), uint8(3))
	f.Add(frame.Append(frame.Append(nil, nil), bytes.Repeat([]byte{1}, 300)), uint8(7))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 2, 'h', 'i'}, uint8(1))
	f.Add([]byte{0xff, 0xff, 0xff, 0xfe}, uint8(4))
	f.Add([]byte{0x7f, 0xff, 0xff, 0xff}, uint8(4))
	f.Fuzz(func(t *testing.T, in []byte, chunk uint8) {
		const max = 1 << 10
		// A low direct-read threshold sends frames down both paths.
		fr := frameReader{r: &chunkReader{b: in, n: int(chunk%16) + 1}, max: max, direct: 1 + int(chunk)%64}
		want := bytes.NewReader(in)
		for {
			p, err := fr.next()
			if err != nil {
				if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
					errors.Is(err, ErrFrameTooLarge) || errors.Is(err, ErrProtocol) {
					return
				}
				t.Fatalf("unexpected error %v", err)
			}
			if len(p) > max {
				t.Fatalf("frame of %d bytes over the %d limit", len(p), max)
			}
			ref, err := frame.Read(want, max)
			if err != nil || !bytes.Equal(ref, p) {
				t.Fatalf("reader gave %x, a plain read gives %x, %v", p, ref, err)
			}
		}
	})
}

// chunkReader returns at most n bytes per Read, to exercise resumption.
type chunkReader struct {
	b []byte
	n int
}

func (r *chunkReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	m := copy(p[:min(len(p), r.n)], r.b)
	r.b = r.b[m:]
	return m, nil
}
