// Package codec implements the wire encoding of conclave messages: the
// envelope that frames every message between cluster processes, and the
// msgpack codec for the payloads they carry.
//
// Frames come from peers and may be hostile, and the msgpack decoder trusts
// the lengths it is told: a 5-byte header declaring a 4 GiB string or 2^32
// array elements makes it allocate that much, and a few megabytes of nested
// arrays overflow its stack. So every byte from a peer goes through Validate
// first, an iterative, non-allocating structural check that bounds nesting
// depth and element counts and proves each declared length fits in the bytes
// present. ParseEnvelope and Msgpack.Unmarshal both validate before reading
// anything.
//
// A sender encodes the payload into the envelope's body and appends the
// envelope to its frame buffer:
//
//	body, err := codec.AppendMarshal(scratch[:0], Greeting{Name: "ada"})
//	if err != nil {
//		return err
//	}
//	env := codec.Envelope{Kind: codec.KindData, Seq: seq, Topic: []byte("greet"), Body: body}
//	if err := env.Check(); err != nil {
//		return err
//	}
//	frame = codec.AppendEnvelope(frame[:0], &env)
//
// and the receiver parses the envelope without copying, then decodes the body:
//
//	var env codec.Envelope
//	if err := codec.ParseEnvelope(frame, &env, codec.DefaultLimits); err != nil {
//		return err // errors.Is(err, codec.ErrMalformed), ...
//	}
//	var g Greeting
//	if err := codec.Msgpack.Unmarshal(env.Body, &g); err != nil {
//		return err
//	}
package codec
