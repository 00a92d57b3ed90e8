package codec

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

// unhex decodes a hex string that may contain spaces.
func unhex(tb testing.TB, s string) []byte {
	tb.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		tb.Fatalf("bad hex %q: %v", s, err)
	}
	return b
}

// nested returns depth arrays nested in one another around a nil.
func nested(depth int) []byte {
	b := bytes.Repeat([]byte{0x91}, depth)
	return append(b, 0xc0)
}

type tagged struct {
	Name  string            `msgpack:"name"`
	Count int64             `msgpack:"n"`
	Tags  map[string]string `msgpack:"tags,omitempty"`
	When  time.Time         `msgpack:"when"`
	Raw   []byte            `msgpack:"raw"`
	Next  *tagged           `msgpack:"next"`
}

// validValues returns encodings of a wide range of values: what the msgpack
// package produces for many Go values, and hand-built encodings of the forms
// it never picks itself.
func validValues(tb testing.TB) [][]byte {
	tb.Helper()
	goValues := []any{
		nil, true, false,
		0, 1, 127, 128, 255, 256, 65535, 65536, math.MaxUint32, math.MaxUint32 + 1,
		uint64(math.MaxUint64), -1, -32, -33, -128, -129, -32768, -32769, math.MinInt32, math.MinInt64,
		int8(-5), int16(300), int32(-70000), uint8(200), uint16(60000), uint32(1 << 31),
		float32(1.5), 3.14159, math.Inf(1), math.NaN(), math.SmallestNonzeroFloat64,
		"", "short", strings.Repeat("x", 31), strings.Repeat("x", 32), strings.Repeat("é", 200),
		strings.Repeat("y", 65536),
		[]byte{}, []byte{1, 2, 3}, bytes.Repeat([]byte{0xc1}, 300), bytes.Repeat([]byte{0xdd}, 70000),
		[]int{}, []any{}, map[string]any{}, []string{"a", "b"},
		make([]int, 16), make([]bool, 70000),
		map[string]int{"a": 1, "b": 2},
		map[int]string{1: "x", -7: "y"},
		map[string]any{"nested": map[string]any{"deeper": []any{1, "two", 3.0, nil, map[string]any{}}}},
		time.Unix(1, 0), time.Unix(1700000000, 123456789), time.Unix(-62135596800, 5), time.Time{},
		[]time.Time{time.Unix(0, 1), time.Unix(1<<34, 0)},
		tagged{Name: "n", Count: -3, Tags: map[string]string{"k": "v"}, When: time.Unix(5, 6), Raw: []byte("raw"),
			Next: &tagged{Name: "inner"}},
	}
	big := make(map[string]int)
	for i := range 40 {
		big[strings.Repeat("k", i+1)] = i * 1000
	}
	goValues = append(goValues, big)

	var out [][]byte
	for _, v := range goValues {
		b, err := msgpack.Marshal(v)
		if err != nil {
			tb.Fatalf("msgpack.Marshal(%T): %v", v, err)
		}
		out = append(out, b)
	}
	for _, h := range []string{
		"c4 00", "c5 00 01 ff", "c6 00 00 00 02 aa bb", // bin8, bin16, bin32
		"d9 00", "da 00 01 61", "db 00 00 00 01 61", // str8, str16, str32
		"c7 00 05", "c7 02 05 aa bb", "c8 00 01 7f aa", "c9 00 00 00 01 80 aa", // ext8, ext16, ext32
		"d4 01 aa", "d5 ff aa bb", "d6 01 00 00 00 00", // fixext1, 2, 4
		"d7 01 00 00 00 00 00 00 00 00", "d8 01 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00", // fixext8, 16
		"dc 00 00", "dc 00 01 c0", "dd 00 00 00 02 01 02", // array16, array32
		"de 00 01 a1 61 c0", "df 00 00 00 01 c0 c0", // map16, map32
		"81 91 01 02", "82 c0 c0 80 90", // non-string keys are valid msgpack
		"cc ff", "cd ff ff", "ce ff ff ff ff", "cf 00 00 00 00 00 00 00 01", // uint forms
		"d0 80", "d1 80 00", "d2 80 00 00 00", "d3 80 00 00 00 00 00 00 00", // int forms
		"ca 3f c0 00 00", "cb 40 09 21 f9 f0 1b 86 6e", // float32, float64
		"93 00 ff e0", "9f 01 02 03 04 05 06 07 08 09 0a 0b 0c 0d 0e 0f", // fixints, full fixarray
	} {
		out = append(out, unhex(tb, h))
	}
	out = append(out, nested(defaultMaxDepth))
	return out
}

func TestValidateAcceptsValidValues(t *testing.T) {
	for _, b := range validValues(t) {
		if err := Validate(b, Limits{}); err != nil {
			t.Errorf("Validate(% x...): %v", head(b), err)
		}
		if n, err := Skip(b, Limits{}); err != nil || n != len(b) {
			t.Errorf("Skip(% x...) = %d, %v; want %d, nil", head(b), n, err, len(b))
		}
	}
}

// head returns at most the first 16 bytes of b, for error messages.
func head(b []byte) []byte {
	return b[:min(len(b), 16)]
}

func TestValidateTruncationsAreMalformed(t *testing.T) {
	for _, b := range validValues(t) {
		if len(b) > 4096 {
			b = b[:4096] // the prefixes of the long values add nothing new
		}
		for i := range len(b) {
			if err := Validate(b[:i], Limits{}); !errors.Is(err, ErrMalformed) {
				t.Fatalf("Validate(prefix of %d bytes of % x...) = %v, want ErrMalformed", i, head(b), err)
			}
		}
	}
}

func TestValidateTrailingBytes(t *testing.T) {
	for _, b := range validValues(t) {
		long := append(bytes.Clone(b), 0xc0)
		if err := Validate(long, Limits{}); !errors.Is(err, ErrTrailingBytes) {
			t.Errorf("Validate(% x... + c0) = %v, want ErrTrailingBytes", head(b), err)
		}
		if n, err := Skip(long, Limits{}); err != nil || n != len(b) {
			t.Errorf("Skip(% x... + c0) = %d, %v; want %d, nil", head(b), n, err, len(b))
		}
	}
}

type hostileCase struct {
	name string
	b    []byte
	want error
}

// hostileInputs are inputs that crash or exhaust an unguarded msgpack
// decoder, with the error Validate must return for each.
func hostileInputs(tb testing.TB) []hostileCase {
	tb.Helper()
	tooMany := append([]byte{0xdd, 0x00, 0x10, 0x00, 0x01}, make([]byte, defaultMaxItems+1)...)
	return []hostileCase{
		{"bin32 of 4 GiB", unhex(tb, "c6 ff ff ff ff 01 02 03 04 05"), ErrMalformed},
		{"str32 of 4 GiB", unhex(tb, "db ff ff ff ff 61 62 63 64 65"), ErrMalformed},
		{"ext32 of 4 GiB", unhex(tb, "c9 ff ff ff ff 01 02 03 04 05"), ErrMalformed},
		{"array32 of 2^32-1", unhex(tb, "dd ff ff ff ff"), ErrTooLarge},
		{"map32 of 2^32-1", unhex(tb, "df ff ff ff ff"), ErrTooLarge},
		{"array32 past the end", unhex(tb, "dd 00 00 10 00 c0 c0"), ErrMalformed},
		{"map16 past the end", unhex(tb, "de ff ff c0 c0 c0 c0"), ErrMalformed},
		{"array of nested array32s", unhex(tb, "92 dd 00 00 00 01 dd ff ff ff ff"), ErrTooLarge},
		{"4e6 nested arrays", nested(4e6), ErrTooDeep},
		{"4e6 nested maps", append(bytes.Repeat([]byte{0x81, 0xc0}, 2e6), 0xc0), ErrTooDeep},
		{"more than MaxItems elements", tooMany, ErrTooLarge},
		{"reserved code 0xc1", []byte{0xc1}, ErrMalformed},
		{"0xc1 inside an array", []byte{0x92, 0x01, 0xc1}, ErrMalformed},
		{"empty input", nil, ErrMalformed},
		{"trailing bytes", []byte{0x01, 0x02}, ErrTrailingBytes},
	}
}

func TestValidateHostileInputs(t *testing.T) {
	for _, tc := range hostileInputs(t) {
		t.Run(tc.name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			start := time.Now()
			err := Validate(tc.b, Limits{})
			elapsed := time.Since(start)
			runtime.ReadMemStats(&after)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Validate = %v, want %v", err, tc.want)
			}
			// The budget is generous for slow CI and the race detector; an
			// unguarded decoder takes gigabytes and seconds.
			if elapsed > time.Second {
				t.Errorf("Validate took %v", elapsed)
			}
			if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 64<<10 {
				t.Errorf("Validate allocated %d bytes", alloc)
			}
		})
	}
}

func TestValidateErrorOffset(t *testing.T) {
	b := unhex(t, "93 01 02 c1")
	err := Validate(b, Limits{})
	if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "at offset 3") {
		t.Fatalf("Validate(% x) = %v, want ErrMalformed at offset 3", b, err)
	}
}

func TestValidateLimits(t *testing.T) {
	str100 := append([]byte{0xd9, 100}, bytes.Repeat([]byte{'a'}, 100)...)
	bin100 := append([]byte{0xc4, 100}, make([]byte, 100)...)
	ext100 := append([]byte{0xc7, 100, 0x01}, make([]byte, 100)...)
	array10 := append([]byte{0x9a}, make([]byte, 10)...)
	map5 := append([]byte{0x85}, make([]byte, 10)...)
	tests := []struct {
		name string
		b    []byte
		lim  Limits
		want error
	}{
		{"depth at the default", nested(32), Limits{}, nil},
		{"depth over the default", nested(33), Limits{}, ErrTooDeep},
		{"empty array counts for depth", append(bytes.Repeat([]byte{0x91}, 32), 0x90), Limits{}, ErrTooDeep},
		{"depth at a small limit", nested(2), Limits{MaxDepth: 2}, nil},
		{"depth over a small limit", nested(3), Limits{MaxDepth: 2}, ErrTooDeep},
		{"depth at a large limit", nested(200), Limits{MaxDepth: 200}, nil},
		{"depth over a large limit", nested(201), Limits{MaxDepth: 200}, ErrTooDeep},
		{"negative limit is the default", nested(33), Limits{MaxDepth: -1}, ErrTooDeep},
		{"str at MaxStringLen", str100, Limits{MaxStringLen: 100}, nil},
		{"str over MaxStringLen", str100, Limits{MaxStringLen: 99}, ErrTooLarge},
		{"bin over MaxStringLen", bin100, Limits{MaxStringLen: 99}, ErrTooLarge},
		{"ext over MaxStringLen", ext100, Limits{MaxStringLen: 99}, ErrTooLarge},
		{"array at MaxItems", array10, Limits{MaxItems: 10}, nil},
		{"array over MaxItems", array10, Limits{MaxItems: 9}, ErrTooLarge},
		{"map entries count twice", map5, Limits{MaxItems: 9}, ErrTooLarge},
		{"items add up across containers", unhex(t, "92 92 00 00 92 00 00"), Limits{MaxItems: 5}, ErrTooLarge},
		{"items at the limit across containers", unhex(t, "92 92 00 00 92 00 00"), Limits{MaxItems: 6}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := Validate(tc.b, tc.lim)
			if tc.want == nil && err != nil || !errors.Is(err, tc.want) {
				t.Fatalf("Validate = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestDefaultLimitsIsTheZeroLimits(t *testing.T) {
	d1, i1, s1 := DefaultLimits.resolve()
	d2, i2, s2 := Limits{}.resolve()
	if d1 != d2 || i1 != i2 || s1 != s2 {
		t.Fatalf("DefaultLimits resolves to %d %d %d, the zero Limits to %d %d %d", d1, i1, s1, d2, i2, s2)
	}
	for _, b := range [][]byte{nested(32), nested(33)} {
		if got, want := fmt.Sprint(Validate(b, DefaultLimits)), fmt.Sprint(Validate(b, Limits{})); got != want {
			t.Errorf("DefaultLimits gives %v, zero Limits %v", got, want)
		}
	}
}

func TestValidateDoesNotAllocate(t *testing.T) {
	for _, b := range validValues(t) {
		if n := testing.AllocsPerRun(10, func() { _ = Validate(b, Limits{}) }); n != 0 {
			t.Errorf("Validate(% x...) made %v allocations", head(b), n)
		}
		if n := testing.AllocsPerRun(10, func() { _, _ = Skip(b, Limits{}) }); n != 0 {
			t.Errorf("Skip(% x...) made %v allocations", head(b), n)
		}
	}
}
