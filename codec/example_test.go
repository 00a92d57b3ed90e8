package codec_test

import (
	"errors"
	"fmt"

	"github.com/seed0811993b/conclave/codec"
)

func ExampleAppendEnvelope() {
	env := codec.Envelope{
		Kind:  codec.KindRequest,
		Seq:   300,
		ID:    7,
		Topic: []byte("ab"),
		Body:  []byte{0x2a}, // the msgpack encoding of 42
	}
	if err := env.Check(); err != nil {
		fmt.Println(err)
		return
	}
	frame := codec.AppendEnvelope(nil, &env)
	fmt.Printf("% x\n", frame)
	// Output:
	// 98 01 02 00 cd 01 2c 00 07 a2 61 62 2a
}

func ExampleParseEnvelope() {
	body, err := codec.AppendMarshal(nil, map[string]string{"greeting": "hello"})
	if err != nil {
		fmt.Println(err)
		return
	}
	frame := codec.AppendEnvelope(nil, &codec.Envelope{Kind: codec.KindData, Seq: 1, Topic: []byte("greet"), Body: body})

	var env codec.Envelope
	if err := codec.ParseEnvelope(frame, &env, codec.DefaultLimits); err != nil {
		fmt.Println(err)
		return
	}
	var msg map[string]string
	if err := codec.Msgpack.Unmarshal(env.Body, &msg); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(env.Kind, env.Seq, string(env.Topic), msg["greeting"])
	// Output:
	// data 1 greet hello
}

func ExampleValidate() {
	inputs := [][]byte{
		{0x92, 0x01, 0xa1, 'x'},              // [1, "x"]
		{0xc6, 0xff, 0xff, 0xff, 0xff, 0x00}, // bin32 claiming 4 GiB
		{0xdd, 0xff, 0xff, 0xff, 0xff},       // array32 claiming 2^32-1 elements
		{0x91, 0x91, 0x91, 0xc0},             // [[[nil]]]
		{0x01, 0x02},                         // two values
	}
	for _, b := range inputs {
		err := codec.Validate(b, codec.Limits{MaxDepth: 2})
		fmt.Println(err == nil, errors.Is(err, codec.ErrMalformed), errors.Is(err, codec.ErrTooLarge),
			errors.Is(err, codec.ErrTooDeep), errors.Is(err, codec.ErrTrailingBytes))
	}
	// Output:
	// true false false false false
	// false true false false false
	// false false true false false
	// false false false true false
	// false false false false true
}
