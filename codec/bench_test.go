package codec

import (
	"bytes"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
)

// benchEnvelope carries a 64-byte payload, a typical small message.
func benchEnvelope(tb testing.TB) Envelope {
	tb.Helper()
	return Envelope{
		Kind:  KindRequest,
		Seq:   123456,
		Ack:   123400,
		ID:    987654321,
		Topic: []byte("svc.orders.create"),
		Body:  AppendBytesBody(nil, bytes.Repeat([]byte{0x5a}, 62)),
	}
}

// nestedMap1K returns the encoding of a map nested three levels deep, of
// about 1 KiB.
func nestedMap1K(tb testing.TB) []byte {
	tb.Helper()
	v := map[string]any{}
	for i := 0; len(mustMarshal(tb, v)) < 1000; i++ {
		v[string(rune('a'+i%26))+string(rune('a'+i/26))] = map[string]any{
			"id": i, "ok": i%2 == 0, "score": float64(i) / 3,
			"tags": []any{"x", i * 1000, nil}, "inner": map[string]any{"n": -i},
		}
	}
	return mustMarshal(tb, v)
}

func BenchmarkAppendEnvelope64(b *testing.B) {
	e := benchEnvelope(b)
	buf := make([]byte, 0, 256)
	b.SetBytes(int64(len(e.Body)))
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendEnvelope(buf[:0], &e)
	}
}

func BenchmarkParseEnvelope64(b *testing.B) {
	e := benchEnvelope(b)
	frame := AppendEnvelope(nil, &e)
	b.SetBytes(int64(len(e.Body)))
	b.ReportAllocs()
	var got Envelope
	for b.Loop() {
		if err := ParseEnvelope(frame, &got, DefaultLimits); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkValidate1K(b *testing.B) {
	v := nestedMap1K(b)
	b.SetBytes(int64(len(v)))
	b.ReportAllocs()
	for b.Loop() {
		if err := Validate(v, DefaultLimits); err != nil {
			b.Fatal(err)
		}
	}
}

// The Unmarshal benchmarks compare Msgpack, which validates and then decodes
// with a pooled decoder, with msgpack.Unmarshal alone.
func BenchmarkMsgpackUnmarshal1K(b *testing.B) {
	v := nestedMap1K(b)
	b.SetBytes(int64(len(v)))
	b.ReportAllocs()
	for b.Loop() {
		var m map[string]any
		if err := Msgpack.Unmarshal(v, &m); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkLibraryUnmarshal1K(b *testing.B) {
	v := nestedMap1K(b)
	b.SetBytes(int64(len(v)))
	b.ReportAllocs()
	for b.Loop() {
		var m map[string]any
		if err := msgpack.Unmarshal(v, &m); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkMsgpackMarshalStruct(b *testing.B) {
	m := message{Name: "node-1", Count: 42, Payload: make([]byte, 32), Items: []int{1, 2, 3}}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Msgpack.Marshal(m); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAppendMarshalStruct(b *testing.B) {
	m := message{Name: "node-1", Count: 42, Payload: make([]byte, 32), Items: []int{1, 2, 3}}
	buf := make([]byte, 0, 512)
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if buf, err = AppendMarshal(buf[:0], m); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkLibraryMarshalStruct(b *testing.B) {
	m := message{Name: "node-1", Count: 42, Payload: make([]byte, 32), Items: []int{1, 2, 3}}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := msgpack.Marshal(m); err != nil {
			b.Fatal(err)
		}
	}
}
