package codec

import (
	"bytes"
	"encoding/hex"
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
)

// sameEnvelope reports whether got is what parsing the encoding of want must
// yield: equal fields, with an empty Body read back as msgpack nil.
func sameEnvelope(got, want *Envelope) bool {
	body := want.Body
	if len(body) == 0 {
		body = []byte{0xc0}
	}
	return got.Kind == want.Kind && got.Flags == want.Flags && got.Seq == want.Seq &&
		got.Ack == want.Ack && got.ID == want.ID &&
		bytes.Equal(got.Topic, want.Topic) && bytes.Equal(got.Body, body)
}

func mustMarshal(tb testing.TB, v any) []byte {
	tb.Helper()
	b, err := msgpack.Marshal(v)
	if err != nil {
		tb.Fatalf("msgpack.Marshal(%T): %v", v, err)
	}
	return b
}

// sampleEnvelopes covers every field at its edges.
func sampleEnvelopes(tb testing.TB) []Envelope {
	tb.Helper()
	return []Envelope{
		{},
		{Kind: KindData, Topic: []byte("t"), Body: []byte{0x2a}},
		{Kind: KindRequest, Seq: 127, Ack: 128, ID: 255, Topic: []byte("svc.echo"), Body: mustMarshal(tb, "hi")},
		{Kind: KindReply, Seq: 256, Ack: 65535, ID: 65536, Body: mustMarshal(tb, map[string]any{"a": []any{1, "b", nil}})},
		{Kind: KindError, Seq: math.MaxUint32, Ack: math.MaxUint32 + 1, ID: math.MaxUint64, Body: mustMarshal(tb, "handler failed")},
		{Kind: KindAck, Ack: math.MaxUint64},
		{Kind: KindControl, Flags: 0xff, Seq: math.MaxUint64, Ack: math.MaxUint64, ID: math.MaxUint64,
			Topic: bytes.Repeat([]byte{'x'}, MaxTopicLen), Body: nested(defaultMaxDepth - 1)},
		{Kind: 200, Flags: FlagRaw, Topic: bytes.Repeat([]byte{'y'}, 31), Body: AppendBytesBody(nil, []byte("raw \x00\xff bytes"))},
		{Kind: KindData, Flags: FlagRaw, Topic: bytes.Repeat([]byte{'z'}, 32), Body: AppendBytesBody(nil, make([]byte, 70000))},
		{Kind: KindData, Topic: bytes.Repeat([]byte{'w'}, 256), Body: mustMarshal(tb, tagged{Name: "deep", Next: &tagged{Name: "er"}})},
	}
}

func TestEnvelopeRoundTrip(t *testing.T) {
	for i, want := range sampleEnvelopes(t) {
		if err := want.Check(); err != nil {
			t.Fatalf("envelope %d: Check: %v", i, err)
		}
		b := AppendEnvelope([]byte("prefix"), &want)
		if !bytes.HasPrefix(b, []byte("prefix")) {
			t.Fatalf("envelope %d: AppendEnvelope overwrote dst", i)
		}
		b = b[len("prefix"):]
		var got Envelope
		if err := ParseEnvelope(b, &got, DefaultLimits); err != nil {
			t.Fatalf("envelope %d: ParseEnvelope: %v", i, err)
		}
		if !sameEnvelope(&got, &want) {
			t.Fatalf("envelope %d: parsed %+v, want %+v", i, got, want)
		}
		// The fields must be plain msgpack to other decoders too.
		var fields []any
		if err := msgpack.Unmarshal(b, &fields); err != nil || len(fields) != 8 {
			t.Fatalf("envelope %d: msgpack.Unmarshal = %d fields, %v", i, len(fields), err)
		}
	}
}

func TestParseEnvelopeAliasesInput(t *testing.T) {
	b := AppendEnvelope(nil, &Envelope{Kind: KindData, Topic: []byte("topic"), Body: []byte{0x07}})
	var e Envelope
	if err := ParseEnvelope(b, &e, DefaultLimits); err != nil {
		t.Fatal(err)
	}
	b[len(b)-1] = 0x08
	if e.Body[0] != 0x08 {
		t.Error("Body does not alias the input")
	}
	// Appending to Topic must not run over the body that follows it.
	_ = append(e.Topic, '!')
	if b[len(b)-1] != 0x08 {
		t.Error("appending to Topic overwrote the input")
	}
}

func TestAppendEnvelopeKnownAnswer(t *testing.T) {
	tests := []struct {
		e    Envelope
		want string
	}{
		// The example in the AppendEnvelope documentation.
		{Envelope{Kind: KindRequest, Seq: 300, ID: 7, Topic: []byte("ab"), Body: []byte{0x2a}},
			"98 01 02 00 cd 01 2c 00 07 a2 61 62 2a"},
		{Envelope{}, "98 01 00 00 00 00 00 a0 c0"},
		{Envelope{Kind: KindControl, Flags: 0x81, Seq: math.MaxUint64, Ack: 70000, ID: 200,
			Topic: bytes.Repeat([]byte{'t'}, 32), Body: AppendBytesBody(nil, []byte{0xde, 0xad})},
			"98 01 06 cc 81 cf ff ff ff ff ff ff ff ff ce 00 01 11 70 cc c8" +
				" d9 20 " + strings.Repeat("74 ", 32) + "c4 02 de ad"},
		{Envelope{Kind: KindData, Seq: 1 << 32, Topic: bytes.Repeat([]byte{'u'}, 256)},
			"98 01 01 00 cf 00 00 00 01 00 00 00 00 00 00 da 01 00 " + strings.Repeat("75 ", 256) + "c0"},
	}
	for _, tc := range tests {
		got := hex.EncodeToString(AppendEnvelope(nil, &tc.e))
		if want := hex.EncodeToString(unhex(t, tc.want)); got != want {
			t.Errorf("AppendEnvelope(%+v)\n got %s\nwant %s", tc.e, got, want)
		}
	}
}

func TestKindValues(t *testing.T) {
	// The values are on the wire: they must never change.
	kinds := []Kind{KindData, KindRequest, KindReply, KindError, KindAck, KindControl}
	names := []string{"data", "request", "reply", "error", "ack", "control"}
	for i, k := range kinds {
		if int(k) != i+1 || k.String() != names[i] {
			t.Errorf("kind %d = %d %q, want %d %q", i, k, k, i+1, names[i])
		}
	}
	if s := Kind(0).String(); s != "Kind(0)" {
		t.Errorf("Kind(0).String() = %q", s)
	}
	if s := Kind(99).String(); s != "Kind(99)" {
		t.Errorf("Kind(99).String() = %q", s)
	}
}

func TestParseEnvelopeLenient(t *testing.T) {
	want := Envelope{Kind: KindReply, Flags: 3, Seq: 5, Ack: 6, ID: 7, Topic: []byte("a"), Body: []byte{0x2a}}
	tests := []struct {
		name string
		hex  string
	}{
		{"shortest forms", "98 01 03 03 05 06 07 a1 61 2a"},
		{"wide unsigned forms", "98 cc 01 cd 00 03 ce 00 00 00 03 cf 00 00 00 00 00 00 00 05 cc 06 cd 00 07 a1 61 2a"},
		{"non-negative signed forms", "98 d0 01 d1 00 03 d2 00 00 00 03 d3 00 00 00 00 00 00 00 05 d0 06 d1 00 07 a1 61 2a"},
		{"topic as str8", "98 01 03 03 05 06 07 d9 01 61 2a"},
		{"topic as str32", "98 01 03 03 05 06 07 db 00 00 00 01 61 2a"},
		{"array16 header", "dc 00 08 01 03 03 05 06 07 a1 61 2a"},
		{"array32 header", "dd 00 00 00 08 01 03 03 05 06 07 a1 61 2a"},
		{"extra trailing fields", "9b 01 03 03 05 06 07 a1 61 2a a5 6c 61 74 65 72 81 a1 6b 92 01 02 c0"},
		{"extra fields with array16 header", "dc 00 09 01 03 03 05 06 07 a1 61 2a c3"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got Envelope
			if err := ParseEnvelope(unhex(t, tc.hex), &got, Limits{}); err != nil {
				t.Fatal(err)
			}
			if !sameEnvelope(&got, &want) {
				t.Fatalf("parsed %+v, want %+v", got, want)
			}
		})
	}

	var got Envelope
	if err := ParseEnvelope(unhex(t, "98 01 01 00 00 00 00 c0 c0"), &got, Limits{}); err != nil || got.Topic != nil {
		t.Fatalf("nil topic: Topic %q, %v; want empty", got.Topic, err)
	}
}

func TestParseEnvelopeRejects(t *testing.T) {
	longTopic := append(unhex(t, "98 01 01 00 00 00 00 da 04 01"), bytes.Repeat([]byte{'x'}, MaxTopicLen+1)...)
	longTopic = append(longTopic, 0xc0)
	tests := []struct {
		name string
		hex  string
		b    []byte
		lim  Limits
		want error
	}{
		{name: "version 2", hex: "98 02 01 00 00 00 00 a0 c0", want: ErrVersion},
		{name: "version 0", hex: "98 00 01 00 00 00 00 a0 c0", want: ErrVersion},
		{name: "version 257", hex: "98 cd 01 01 01 00 00 00 00 a0 c0", want: ErrVersion},
		{name: "seven fields", hex: "97 01 01 00 00 00 00 a0", want: ErrMalformed},
		{name: "no fields", hex: "90", want: ErrMalformed},
		{name: "a map", hex: "81 a1 6b 01", want: ErrMalformed},
		{name: "a scalar", hex: "01", want: ErrMalformed},
		{name: "negative kind", hex: "98 01 ff 00 00 00 00 a0 c0", want: ErrMalformed},
		{name: "negative int8 seq", hex: "98 01 01 00 d0 80 00 00 a0 c0", want: ErrMalformed},
		{name: "negative int64 id", hex: "98 01 01 00 00 00 d3 ff ff ff ff ff ff ff ff a0 c0", want: ErrMalformed},
		{name: "kind over 255", hex: "98 01 cd 01 00 00 00 00 00 a0 c0", want: ErrMalformed},
		{name: "flags over 255", hex: "98 01 01 cd 01 00 00 00 00 a0 c0", want: ErrMalformed},
		{name: "float seq", hex: "98 01 01 00 ca 3f 80 00 00 00 00 a0 c0", want: ErrMalformed},
		{name: "nil ack", hex: "98 01 01 00 00 c0 00 a0 c0", want: ErrMalformed},
		{name: "str id", hex: "98 01 01 00 00 00 a1 31 a0 c0", want: ErrMalformed},
		{name: "bin topic", hex: "98 01 01 00 00 00 00 c4 01 61 c0", want: ErrMalformed},
		{name: "int topic", hex: "98 01 01 00 00 00 00 05 c0", want: ErrMalformed},
		{name: "array topic", hex: "98 01 01 00 00 00 00 91 a0 c0", want: ErrMalformed},
		{name: "topic too long", b: longTopic, want: ErrTooLarge},
		{name: "truncated", hex: "98 01 01 00 00 00 00 a0", want: ErrMalformed},
		{name: "truncated body", hex: "98 01 01 00 00 00 00 a0 92 01", want: ErrMalformed},
		{name: "trailing bytes", hex: "98 01 01 00 00 00 00 a0 c0 c0", want: ErrTrailingBytes},
		{name: "body too deep", b: append(unhex(t, "98 01 01 00 00 00 00 a0"), nested(32)...), want: ErrTooDeep},
		{name: "body over custom depth", hex: "98 01 01 00 00 00 00 a0 91 91 c0", lim: Limits{MaxDepth: 2}, want: ErrTooDeep},
		{name: "body over MaxStringLen", hex: "98 01 01 00 00 00 00 a0 a3 61 62 63", lim: Limits{MaxStringLen: 2}, want: ErrTooLarge},
		{name: "empty input", want: ErrMalformed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := tc.b
			if tc.hex != "" {
				b = unhex(t, tc.hex)
			}
			e := Envelope{Seq: 99}
			err := ParseEnvelope(b, &e, tc.lim)
			if !errors.Is(err, tc.want) {
				t.Fatalf("ParseEnvelope = %v, want %v", err, tc.want)
			}
			if e.Seq != 99 {
				t.Error("ParseEnvelope changed e on error")
			}
		})
	}
}

func TestEnvelopeCheck(t *testing.T) {
	tests := []struct {
		name string
		e    Envelope
		want error
	}{
		{"zero", Envelope{}, nil},
		{"longest topic", Envelope{Topic: make([]byte, MaxTopicLen)}, nil},
		{"topic too long", Envelope{Topic: make([]byte, MaxTopicLen+1)}, ErrTooLarge},
		{"body not msgpack", Envelope{Body: []byte{0xc1}}, ErrMalformed},
		{"body truncated", Envelope{Body: []byte{0x92, 0x01}}, ErrMalformed},
		{"two values in body", Envelope{Body: []byte{0x01, 0x02}}, ErrTrailingBytes},
		{"body deepest allowed", Envelope{Body: nested(defaultMaxDepth - 1)}, nil},
		// The envelope array adds a level, so this body would fail to parse.
		{"body too deep for the envelope", Envelope{Body: nested(defaultMaxDepth)}, ErrTooDeep},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.e.Check()
			if tc.want == nil && err != nil || !errors.Is(err, tc.want) {
				t.Fatalf("Check = %v, want %v", err, tc.want)
			}
			if err == nil {
				var got Envelope
				if err := ParseEnvelope(AppendEnvelope(nil, &tc.e), &got, DefaultLimits); err != nil {
					t.Fatalf("Check passed but ParseEnvelope failed: %v", err)
				}
			}
		})
	}
}

func TestEnvelopeDoesNotAllocate(t *testing.T) {
	for _, e := range sampleEnvelopes(t) {
		buf := make([]byte, 0, 128<<10)
		if n := testing.AllocsPerRun(10, func() { buf = AppendEnvelope(buf[:0], &e) }); n != 0 {
			t.Errorf("AppendEnvelope made %v allocations", n)
		}
		var got Envelope
		if n := testing.AllocsPerRun(10, func() { _ = ParseEnvelope(buf, &got, DefaultLimits) }); n != 0 {
			t.Errorf("ParseEnvelope made %v allocations", n)
		}
		if n := testing.AllocsPerRun(10, func() { _ = e.Check() }); n != 0 {
			t.Errorf("Check made %v allocations", n)
		}
	}
}
