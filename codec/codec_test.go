package codec

import (
	"bytes"
	"errors"
	"reflect"
	"runtime"
	"testing"
	"time"
)

type message struct {
	Name    string            `msgpack:"name"`
	Count   int64             `msgpack:"count"`
	Ratio   float64           `msgpack:"ratio"`
	Payload []byte            `msgpack:"payload"`
	Labels  map[string]string `msgpack:"labels"`
	Items   []int             `msgpack:"items"`
	When    time.Time         `msgpack:"when"`
	Skipped string            `msgpack:"-"`
}

func TestMsgpackRoundTrip(t *testing.T) {
	in := message{
		Name:    "node-1",
		Count:   -42,
		Ratio:   0.25,
		Payload: []byte{0, 1, 0xc1},
		Labels:  map[string]string{"zone": "a"},
		Items:   []int{1, 300, -70000},
		When:    time.Unix(1700000000, 5).UTC(),
		Skipped: "not sent",
	}
	b, err := Msgpack.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	var out message
	if err := Msgpack.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	out.When = out.When.UTC()
	want := in
	want.Skipped = ""
	if !reflect.DeepEqual(out, want) {
		t.Fatalf("round trip: got %+v, want %+v", out, want)
	}

	// The tags name the fields on the wire.
	var fields map[string]any
	if err := Msgpack.Unmarshal(b, &fields); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"name", "count", "payload", "when"} {
		if _, ok := fields[k]; !ok {
			t.Errorf("field %q missing from %v", k, fields)
		}
	}
	if _, ok := fields["Skipped"]; ok {
		t.Error(`a "-" field was encoded`)
	}
}

func TestMsgpackEncoding(t *testing.T) {
	tests := []struct {
		v    any
		want []byte
	}{
		{int64(5), []byte{0x05}}, // compact: not int64's 9 bytes
		{uint64(200), []byte{0xcc, 0xc8}},
		{[]byte("ab"), []byte{0xc4, 0x02, 'a', 'b'}}, // bin, not str
		{"ab", []byte{0xa2, 'a', 'b'}},
	}
	for _, tc := range tests {
		got, err := Msgpack.Marshal(tc.v)
		if err != nil || !bytes.Equal(got, tc.want) {
			t.Errorf("Marshal(%T %v) = % x, %v; want % x", tc.v, tc.v, got, err, tc.want)
		}
	}
}

func TestAppendMarshal(t *testing.T) {
	dst := []byte("head")
	got, err := AppendMarshal(dst, map[string]int{"k": 1})
	if err != nil {
		t.Fatal(err)
	}
	if want := []byte("head\x81\xa1k\x01"); !bytes.Equal(got, want) {
		t.Fatalf("AppendMarshal = % x, want % x", got, want)
	}
	got, err = AppendMarshal(dst, make(chan int))
	if err == nil || !bytes.Equal(got, dst) {
		t.Fatalf("AppendMarshal(chan) = %q, %v; want dst and an error", got, err)
	}
}

// Unmarshal must validate before decoding: with any of these inputs an
// unguarded decoder would allocate gigabytes or overflow its stack, and the
// test process would die rather than fail.
func TestMsgpackUnmarshalHostile(t *testing.T) {
	for _, tc := range hostileInputs(t) {
		t.Run(tc.name, func(t *testing.T) {
			var v any
			if err := Msgpack.Unmarshal(tc.b, &v); !errors.Is(err, tc.want) {
				t.Fatalf("Unmarshal = %v, want %v", err, tc.want)
			}
			var s []any
			if err := Msgpack.Unmarshal(tc.b, &s); !errors.Is(err, tc.want) {
				t.Fatalf("Unmarshal into a slice = %v, want %v", err, tc.want)
			}
		})
	}
}

// The msgpack decoder, expecting a map, skips the header of an ext it finds
// there and decodes the payload as a map; validation treats ext payloads as
// opaque bytes. Each input here is a valid msgpack value whose ext payload
// declares a map of 2^32-1 entries (or, once, nests arrays deep): decoding it
// into a map with an unguarded decoder kills the process.
func TestMsgpackUnmarshalExtAsMap(t *testing.T) {
	huge := []byte{0xc7, 0x05, 0x01, 0xdf, 0xff, 0xff, 0xff, 0xff}
	inner := append([]byte{0x81, 0xa1, 'a'}, nested(1e6)...) // {"a": [[[...]]]}
	deep := append([]byte{0xc9, 0, 0, 0, 0, 0x01}, inner...)
	deep[1], deep[2], deep[3], deep[4] = byte(len(inner)>>24), byte(len(inner)>>16), byte(len(inner)>>8), byte(len(inner))
	inStruct := append([]byte{0x81, 0xa6, 'l', 'a', 'b', 'e', 'l', 's'}, huge...)
	timestamp := []byte{0xd7, 0xff, 0xdf, 0xff, 0xff, 0xff, 0xff, 0, 0, 0} // a valid time, payload starting 0xdf

	for _, b := range [][]byte{huge, deep, timestamp} {
		if err := Validate(b, Limits{}); err != nil {
			t.Fatalf("Validate(% x...) = %v; the input must be valid to test the decoder", head(b), err)
		}
		var m map[string]any
		if err := Msgpack.Unmarshal(b, &m); !errors.Is(err, ErrMalformed) {
			t.Errorf("Unmarshal(% x...) into map[string]any = %v, want ErrMalformed", head(b), err)
		}
		var ms map[string]string
		if err := Msgpack.Unmarshal(b, &ms); !errors.Is(err, ErrMalformed) {
			t.Errorf("Unmarshal(% x...) into map[string]string = %v, want ErrMalformed", head(b), err)
		}
	}
	var msg message
	if err := Msgpack.Unmarshal(inStruct, &msg); !errors.Is(err, ErrMalformed) {
		t.Errorf("Unmarshal into a struct's map field = %v, want ErrMalformed", err)
	}
	// The same timestamp decodes as a time, where ext belongs.
	var tm time.Time
	if err := Msgpack.Unmarshal(timestamp, &tm); err != nil {
		t.Errorf("Unmarshal(timestamp) into time.Time: %v", err)
	}
	var v any
	if err := Msgpack.Unmarshal(timestamp, &v); err != nil {
		t.Errorf("Unmarshal(timestamp) into any: %v", err)
	}
}

func TestMsgpackUnmarshalRejectsTrailingBytes(t *testing.T) {
	var v any
	if err := Msgpack.Unmarshal([]byte{0x01, 0x02}, &v); !errors.Is(err, ErrTrailingBytes) {
		t.Fatalf("Unmarshal = %v, want ErrTrailingBytes", err)
	}
}

// The decoder option UsePreallocateValues starts a goroutine per decoded type
// that never ends; Msgpack must not use it, or goleak fails the tests of
// packages that decode with it.
func TestMsgpackUnmarshalStartsNoGoroutine(t *testing.T) {
	type fresh struct {
		P *struct{ X int }
		M map[string]*int
	}
	b, err := Msgpack.Marshal(fresh{P: &struct{ X int }{1}, M: map[string]*int{"a": new(int)}})
	if err != nil {
		t.Fatal(err)
	}
	before := runtime.NumGoroutine()
	var out fresh
	if err := Msgpack.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	if after := runtime.NumGoroutine(); after != before {
		t.Fatalf("goroutines: %d before Unmarshal, %d after", before, after)
	}
}

// TestUnmarshalDecoderPanic: a well-formed map that repeats a key decoding
// into a []any panics inside msgpack/v5 v5.4.1; Unmarshal returns an error
// instead, so a peer cannot crash the process with it.
func TestUnmarshalDecoderPanic(t *testing.T) {
	b := []byte("\x82\xa1a\x910\xa1a\x910") // {"a": [48], "a": [48]}
	var v struct {
		A []any `msgpack:"a"`
	}
	if err := Msgpack.Unmarshal(b, &v); !errors.Is(err, ErrMalformed) {
		t.Fatalf("Unmarshal = %v, want ErrMalformed", err)
	}
	// The decoder pool is not poisoned: the next value decodes.
	var w struct {
		A []any `msgpack:"a"`
	}
	if err := Msgpack.Unmarshal([]byte("\x81\xa1a\x910"), &w); err != nil || len(w.A) != 1 {
		t.Fatalf("next Unmarshal: %+v, %v", w, err)
	}
}
