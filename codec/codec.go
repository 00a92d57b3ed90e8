package codec

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/vmihailenco/msgpack/v5"
)

// Codec turns Go values into message bodies and back.
type Codec interface {
	// Marshal returns the encoding of v.
	Marshal(v any) ([]byte, error)

	// Unmarshal decodes b, which must hold exactly one encoded value, into
	// the value that v points to.
	Unmarshal(b []byte, v any) error
}

// Msgpack is the Codec for msgpack, built on github.com/vmihailenco/msgpack/v5
// and safe to use from many goroutines.
//
// Marshal follows that package's rules, with struct fields named by their
// `msgpack` tags, and writes every integer in the shortest form that holds its
// value, whatever its Go type. A []byte value encodes as a msgpack bin, a
// string as a str, and a time.Time as the msgpack timestamp (ext type -1).
//
// Unmarshal first validates b with DefaultLimits, as Validate does, so a peer
// cannot make the decoder allocate memory its message does not hold or recurse
// without bound; what it does allocate is at most in proportion to len(b)
// times the size of the Go element types it fills in. Validation alone leaves
// one gap, which Unmarshal closes: where the decoder expects a map and finds
// an ext, it skips the ext header and decodes the ext's payload as the map,
// although validation took that payload for opaque bytes. Unmarshal fails such
// a decode with ErrMalformed instead, as it does when a registered ext decoder
// decodes its payload as msgpack with the same decoder.
//
// Decoding into an interface yields the types the msgpack package picks, such
// as int8 for a small integer and map[string]any for a map.
var Msgpack Codec = msgpackCodec{}

type msgpackCodec struct{}

// maxPooledBuf bounds the buffers kept for reuse, so that one large message
// does not pin its memory for the life of the process.
const maxPooledBuf = 64 << 10

// encoder is a msgpack encoder together with the buffer it writes to.
type encoder struct {
	enc     *msgpack.Encoder
	w       appendWriter
	scratch []byte
}

var encoders = sync.Pool{
	New: func() any {
		e := new(encoder)
		e.enc = msgpack.NewEncoder(&e.w)
		e.enc.UseCompactInts(true)
		return e
	},
}

// appendWriter lets the encoder write straight into a caller's slice. It has
// WriteByte so that the encoder does not wrap it in a writer allocating a
// slice per byte.
type appendWriter struct{ b []byte }

func (w *appendWriter) Write(p []byte) (int, error) {
	w.b = append(w.b, p...)
	return len(p), nil
}

func (w *appendWriter) WriteByte(c byte) error {
	w.b = append(w.b, c)
	return nil
}

// encode appends the encoding of v to dst using a pooled encoder.
func encode(dst []byte, v any) ([]byte, error) {
	e := encoders.Get().(*encoder)
	e.w.b = dst
	err := e.enc.Encode(v)
	out := e.w.b
	e.w.b = nil
	encoders.Put(e)
	return out, err
}

// AppendMarshal appends the Msgpack encoding of v to dst and returns the
// extended buffer, so that envelope bodies can be built in a reused buffer
// instead of a new allocation per message. On error it returns dst unchanged
// in length, though bytes beyond it may have been overwritten.
func AppendMarshal(dst []byte, v any) ([]byte, error) {
	out, err := encode(dst, v)
	if err != nil {
		return dst, err
	}
	return out, nil
}

func (msgpackCodec) Marshal(v any) ([]byte, error) {
	e := encoders.Get().(*encoder)
	e.w.b = e.scratch[:0]
	err := e.enc.Encode(v)
	var out []byte
	if err == nil {
		out = bytes.Clone(e.w.b)
	}
	if cap(e.w.b) <= maxPooledBuf {
		e.scratch = e.w.b[:0]
	} else {
		e.scratch = nil
	}
	e.w.b = nil
	encoders.Put(e)
	return out, err
}

// decoder is a msgpack decoder together with the reader it reads from.
type decoder struct {
	dec *msgpack.Decoder
	r   guardReader
}

var decoders = sync.Pool{
	New: func() any {
		d := new(decoder)
		d.dec = msgpack.NewDecoder(&d.r)
		return d
	},
}

func (msgpackCodec) Unmarshal(b []byte, v any) error {
	d := decoders.Get().(*decoder)
	d.r.exts = d.r.exts[:0]
	n, err := skip(b, Limits{}, &d.r.exts)
	if err == nil && n != len(b) {
		err = fmt.Errorf("codec: %d trailing bytes at offset %d: %w", len(b)-n, n, ErrTrailingBytes)
	}
	if err != nil {
		decoders.Put(d)
		return err
	}
	d.r.b, d.r.i, d.r.k = b, 0, 0
	// Reset drops settings a custom decoder may have changed on d.dec.
	d.dec.Reset(&d.r)
	err = decodeRecovering(d.dec, v)
	d.r.b = nil
	// A decoder that failed may be left recording what it reads, and one
	// that read a large message keeps a large buffer: let both go.
	if err == nil && len(b) <= maxPooledBuf && cap(d.r.exts) <= maxPooledBuf {
		decoders.Put(d)
	}
	return err
}

// decodeRecovering decodes with dec and turns a panic inside the decoder
// into an error: msgpack/v5 v5.4.1 panics (reflect: SetInt using
// unaddressable value) on a well-formed map that repeats a key whose value
// decodes into a []any, and a peer must not be able to crash a process
// with one, whatever else the decoder may have in store.
func decodeRecovering(dec *msgpack.Decoder, v any) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("codec: the msgpack decoder failed on this value (%v): %w", r, ErrMalformed)
		}
	}()
	return dec.Decode(v)
}

// guardReader is a bytes.Reader that refuses to hand out the first byte of an
// ext payload one byte at a time. The msgpack decoder reads a value's first
// byte, its code, with ReadByte, and payloads with Read, so a ReadByte there
// means it is about to decode the opaque ext payload as msgpack (as
// Decoder.DecodeMapLen does when it meets an ext). Validation never looked
// inside that payload, and left it would let a declared length in it reach
// the decoder unchecked; all other decoder reads stay on validated value
// boundaries.
type guardReader struct {
	b    []byte
	i    int   // read offset in b
	exts []int // offsets in b of non-empty ext payloads, ascending
	k    int   // exts[:k] all lie before i
}

func (r *guardReader) Read(p []byte) (int, error) {
	if r.i >= len(r.b) {
		if len(p) == 0 {
			return 0, nil
		}
		return 0, io.EOF
	}
	n := copy(p, r.b[r.i:])
	r.i += n
	return n, nil
}

func (r *guardReader) ReadByte() (byte, error) {
	if r.i >= len(r.b) {
		return 0, io.EOF
	}
	for r.k < len(r.exts) && r.exts[r.k] < r.i {
		r.k++
	}
	if r.k < len(r.exts) && r.exts[r.k] == r.i {
		return 0, fmt.Errorf("codec: ext payload read as msgpack at offset %d: %w", r.i, ErrMalformed)
	}
	c := r.b[r.i]
	r.i++
	return c, nil
}

func (r *guardReader) UnreadByte() error {
	if r.i == 0 {
		return errors.New("codec: UnreadByte at start of input")
	}
	r.i--
	return nil
}
