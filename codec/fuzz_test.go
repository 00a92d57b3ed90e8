package codec

import (
	"bytes"
	"errors"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
)

// fuzzTarget has a map field, where the msgpack decoder reads ext payloads as
// msgpack, and fields of the other shapes the decoder treats specially.
type fuzzTarget struct {
	M map[string]any    `msgpack:"m"`
	S map[string]string `msgpack:"s"`
	A []any             `msgpack:"a"`
	B []byte            `msgpack:"b"`
	N int               `msgpack:"n"`
}

func FuzzValidate(f *testing.F) {
	for _, b := range validValues(f) {
		if len(b) <= 4096 {
			f.Add(b)
		}
	}
	for _, tc := range hostileInputs(f) {
		f.Add(tc.b[:min(len(tc.b), 4096)])
	}
	f.Add([]byte{0xc7, 0x05, 0x01, 0xdf, 0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{0x81, 0xa1, 'm', 0xc7, 0x05, 0x01, 0xdd, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		err := Validate(b, Limits{})
		n, skipErr := Skip(b, Limits{})
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrTooDeep) &&
				!errors.Is(err, ErrTooLarge) && !errors.Is(err, ErrTrailingBytes) {
				t.Fatalf("Validate returned an unexpected error: %v", err)
			}
			if skipErr == nil && n == len(b) {
				t.Fatalf("Skip = %d with no error, Validate = %v", n, err)
			}
			if skipErr == nil {
				if err := Validate(b[:n], Limits{}); err != nil {
					t.Fatalf("Skip = %d but Validate of those bytes = %v", n, err)
				}
			}
			var v any
			if Msgpack.Unmarshal(b, &v) == nil {
				t.Fatal("Msgpack.Unmarshal accepted what Validate rejects")
			}
			return
		}
		if skipErr != nil || n != len(b) {
			t.Fatalf("Validate accepted %d bytes, Skip = %d, %v", len(b), n, skipErr)
		}
		// Neither the raw decoder nor the guarded one may panic (or run out
		// of memory, which kills the fuzzer) on a validated value.
		var raw any
		_ = msgpack.NewDecoder(bytes.NewReader(b)).Decode(&raw)
		// Errors are fine here: a valid value may still not fit the target,
		// say an unregistered ext type or a map with non-string keys.
		var v any
		_ = Msgpack.Unmarshal(b, &v)
		var m map[string]any
		_ = Msgpack.Unmarshal(b, &m)
		var target fuzzTarget
		_ = Msgpack.Unmarshal(b, &target)
	})
}

func FuzzParseEnvelope(f *testing.F) {
	for _, e := range sampleEnvelopes(f) {
		if b := AppendEnvelope(nil, &e); len(b) <= 4096 {
			f.Add(b)
		}
	}
	f.Add([]byte("\x9b\x01\x03\x03\x05\x06\x07\xa1a\x2a\xa5later\x81\xa1k\x92\x01\x02\xc0"))
	f.Add([]byte("\xdc\x00\x08\xcc\x01\xd0\x03\xcd\x00\x03\x05\x06\x07\xc0\x2a"))
	f.Fuzz(func(t *testing.T, b []byte) {
		// The one-pass path accepts only what the general one does, with
		// the same result, under tight limits too.
		for _, lim := range []Limits{DefaultLimits, {MaxStringLen: 8}, {MaxItems: 7}, {MaxDepth: 1}} {
			var fast, slow Envelope
			if parseCanonical(b, &fast, lim) {
				if err := parseGeneral(b, &slow, lim); err != nil || !sameEnvelope(&fast, &slow) {
					t.Fatalf("limits %+v: canonical path took % x as %+v; general path: %+v, %v", lim, b, fast, slow, err)
				}
			}
		}
		var e Envelope
		if err := ParseEnvelope(b, &e, DefaultLimits); err != nil {
			return
		}
		if err := e.Check(); err != nil {
			t.Fatalf("parsed envelope fails Check: %v", err)
		}
		b2 := AppendEnvelope(nil, &e)
		var e2 Envelope
		if err := ParseEnvelope(b2, &e2, DefaultLimits); err != nil {
			t.Fatalf("re-encoded envelope does not parse: %v\n% x", err, b2)
		}
		if !sameEnvelope(&e2, &e) {
			t.Fatalf("round trip changed the envelope:\n got %+v\nwant %+v", e2, e)
		}
		if len(b2) > len(b) {
			t.Fatalf("re-encoding grew the envelope from %d to %d bytes", len(b), len(b2))
		}
	})
}
