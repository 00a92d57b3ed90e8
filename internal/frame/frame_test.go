package frame

import (
	"bytes"
	"encoding/hex"
	"errors"
	"io"
	"math"
	"testing"
)

func TestHeaderMatchesPython(t *testing.T) {
	// Python's send_bytes: 4-byte big-endian signed length; facts.md's
	// server challenge frame starts 0000003b.
	if got := hex.EncodeToString(AppendHeader(nil, 59)); got != "0000003b" {
		t.Errorf("header(59) = %s", got)
	}
	if got := hex.EncodeToString(AppendHeader(nil, math.MaxInt32+1)); got != "ffffffff0000000080000000" {
		t.Errorf("header(2^31) = %s, want the -1 escape", got)
	}
}

func TestParseHeader(t *testing.T) {
	for _, tc := range []struct {
		in           []byte
		n, hdr, need int
		err          error
	}{
		{nil, 0, 0, 4, nil},
		{[]byte{0, 0, 0}, 0, 0, 4, nil},
		{[]byte{0, 0, 0, 5}, 5, 4, 0, nil},
		{[]byte{0xff, 0xff, 0xff, 0xff, 0}, 0, 0, 12, nil},
		{[]byte{0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 7}, 7, 12, 0, nil}, // escape for a small frame: Python accepts it
		{[]byte{0xff, 0xff, 0xff, 0xfe}, 0, 0, 0, ErrNegativeLength},
		{[]byte{0x80, 0, 0, 0}, 0, 0, 0, ErrNegativeLength},
		{[]byte{0, 0, 4, 1}, 0, 0, 0, ErrTooLarge},
		{[]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, 0, 0, 0, ErrTooLarge},
	} {
		n, hdr, need, err := ParseHeader(tc.in, 1024)
		if n != tc.n || hdr != tc.hdr || need != tc.need || !errors.Is(err, tc.err) {
			t.Errorf("ParseHeader(%x) = %d, %d, %d, %v; want %d, %d, %d, %v", tc.in, n, hdr, need, err, tc.n, tc.hdr, tc.need, tc.err)
		}
	}
}

func TestReadDoesNotOverread(t *testing.T) {
	r := bytes.NewReader(append(Append(nil, []byte("one")), Append(nil, []byte("two"))...))
	for _, want := range []string{"one", "two"} {
		p, err := Read(r, 16)
		if err != nil || string(p) != want {
			t.Fatalf("Read = %q, %v; want %q", p, err, want)
		}
	}
	if _, err := Read(r, 16); err != io.EOF {
		t.Fatalf("at the end: %v, want io.EOF", err)
	}
	if _, err := Read(bytes.NewReader([]byte{0, 0, 0, 9, 1}), 16); err != io.ErrUnexpectedEOF {
		t.Fatalf("truncated frame: %v, want io.ErrUnexpectedEOF", err)
	}
}

func FuzzParseHeader(f *testing.F) {
	f.Add(AppendHeader(nil, 5))
	f.Add(AppendHeader(nil, math.MaxInt32+1))
	f.Add([]byte{0xff, 0xff, 0xff, 0xfe})
	f.Fuzz(func(t *testing.T, b []byte) {
		n, hdr, need, err := ParseHeader(b, 1<<20)
		if err != nil || need > 0 {
			return
		}
		if n < 0 || n > 1<<20 || (hdr != ShortHeaderLen && hdr != LongHeaderLen) {
			t.Fatalf("ParseHeader(%x) = %d, %d", b, n, hdr)
		}
		if hdr == ShortHeaderLen && !bytes.Equal(AppendHeader(nil, n), b[:hdr]) {
			t.Fatalf("short header %x does not round-trip", b[:hdr])
		}
	})
}
