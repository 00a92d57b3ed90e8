package node

import (
	"context"
	"sync"

	"github.com/seed0811993b/conclave/codec"
)

// Msg is a message delivered to a handler or subscription. Its Data and the
// result of Decode may alias the received frame: copy bytes a handler keeps
// after it returns.
type Msg struct {
	// From is the stable name of the sending node, FromID its member ID
	// (name#boot).
	From, FromID string
	// Topic is the topic the message was sent to.
	Topic string

	body  []byte // exactly one msgpack value
	flags uint8
}

// Data returns the payload's bytes: the bytes themselves when the sender
// passed a []byte, otherwise the payload's msgpack encoding.
func (m *Msg) Data() []byte {
	if m.flags&codec.FlagRaw != 0 {
		if b, err := codec.BytesBody(m.body); err == nil {
			return b
		}
	}
	return m.body
}

// Decode decodes the payload into the value v points to, as
// codec.Msgpack.Unmarshal does; a []byte payload decodes into *[]byte.
func (m *Msg) Decode(v any) error {
	return codec.Msgpack.Unmarshal(m.body, v)
}

// Handler serves a topic: its result is the reply to a request, and is
// ignored for one-way messages. A returned error reaches the requester as a
// *RemoteError carrying its message. ctx ends when the node closes; the
// requester's deadline does not travel with the request, so a handler that
// may run long should bound itself.
type Handler func(ctx context.Context, m *Msg) (any, error)

// MsgHandler receives published messages.
type MsgHandler func(ctx context.Context, m *Msg)

// appendPayload appends v's encoding as an envelope body and reports the
// flags it needs: a []byte travels as raw bytes, anything else is msgpack.
func appendPayload(dst []byte, v any) ([]byte, uint8, error) {
	switch p := v.(type) {
	case []byte:
		return codec.AppendBytesBody(dst, p), codec.FlagRaw, nil
	case nil:
		return append(dst, 0xc0), 0, nil
	}
	out, err := codec.AppendMarshal(dst, v)
	return out, 0, err
}

// scratch holds payload encodings on their way into frames, which copy
// them, so that a send allocates only the frame it keeps for resending.
var scratch = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// maxScratch is the largest buffer returned to the pool.
const maxScratch = 64 << 10

// payload is a message body on its way into frames, which copy it. A
// []byte travels as a bin header followed by the caller's bytes, copied
// once, into the frame; anything else is encoded into a scratch buffer
// from a pool.
type payload struct {
	body  []byte // the encoded body, or a raw payload's bin header
	tail  []byte // a raw payload's bytes
	flags uint8
}

// encodePayload prepares v, writing a raw payload's bin header into hdr
// (the caller's: a header on the stack costs no allocation). Hand the
// scratch buffer it returns to releaseScratch when the frames are built.
// The buffer is kept apart from the payload, whose body may point into hdr:
// escape analysis would otherwise move hdr to the heap.
func encodePayload(v any, hdr *[5]byte) (payload, *[]byte, error) {
	if raw, ok := v.([]byte); ok {
		return payload{body: codec.AppendBinHeader(hdr[:0], len(raw)), tail: raw, flags: codec.FlagRaw}, nil, nil
	}
	bp := scratch.Get().(*[]byte)
	var err error
	*bp, err = codec.AppendMarshal((*bp)[:0], v)
	return payload{body: *bp}, bp, err
}

// envelope returns an envelope carrying the payload's body; send it with
// sendTail(e, pl.tail).
func (pl payload) envelope(kind codec.Kind, flags uint8, id uint64, topic string) codec.Envelope {
	return codec.Envelope{Kind: kind, Flags: flags | pl.flags, ID: id, Topic: []byte(topic), Body: pl.body}
}

// joined returns the whole body in memory of its own, for deliveries that
// keep it.
func (pl payload) joined() []byte {
	return append(append(make([]byte, 0, len(pl.body)+len(pl.tail)), pl.body...), pl.tail...)
}

// releaseScratch returns a scratch buffer from encodePayload (nil for a
// raw payload) to the pool.
func releaseScratch(bp *[]byte) {
	if bp != nil && cap(*bp) <= maxScratch {
		*bp = (*bp)[:0]
		scratch.Put(bp)
	}
}
