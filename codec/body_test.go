package codec

import (
	"bytes"
	"errors"
	"testing"
)

func TestBytesBody(t *testing.T) {
	for _, n := range []int{0, 1, 31, 255, 256, 65535, 65536, 100000} {
		p := bytes.Repeat([]byte{0xab}, n)
		body := AppendBytesBody(nil, p)
		// The shortest bin form is what msgpack itself writes.
		if want := mustMarshal(t, p); !bytes.Equal(body, want) {
			t.Errorf("AppendBytesBody(%d bytes) = % x..., msgpack writes % x...", n, head(body), head(want))
		}
		got, err := BytesBody(body)
		if err != nil || !bytes.Equal(got, p) {
			t.Errorf("BytesBody(AppendBytesBody(%d bytes)) = %d bytes, %v", n, len(got), err)
		}
		if n > 0 && &got[0] != &body[len(body)-n] {
			t.Errorf("BytesBody(%d bytes) copied", n)
		}
		// A str holding the same bytes reads the same.
		if got, err := BytesBody(mustMarshal(t, string(p))); err != nil || !bytes.Equal(got, p) {
			t.Errorf("BytesBody(str of %d bytes) = %d bytes, %v", n, len(got), err)
		}
	}
	if got, err := BytesBody([]byte{0xc0}); got != nil || err != nil {
		t.Errorf("BytesBody(nil) = %q, %v; want nil, nil", got, err)
	}
	for _, tc := range []struct {
		hex  string
		want error
	}{
		{"", ErrMalformed},
		{"01", ErrMalformed},
		{"91 c4 00", ErrMalformed},
		{"c7 01 01 00", ErrMalformed},
		{"c4", ErrMalformed},
		{"c5 00", ErrMalformed},
		{"c4 02 61", ErrMalformed},
		{"c6 ff ff ff ff 61", ErrMalformed},
		{"a2 61", ErrMalformed},
		{"c4 01 61 62", ErrTrailingBytes},
		{"c0 c0", ErrTrailingBytes},
	} {
		if _, err := BytesBody(unhex(t, tc.hex)); !errors.Is(err, tc.want) {
			t.Errorf("BytesBody(%s) = %v, want %v", tc.hex, err, tc.want)
		}
	}
}
