package codec

import "strconv"

// Kind says what an envelope carries. ParseEnvelope accepts any value, so
// that newer peers can add kinds; the node layer rejects the ones it does not
// know. Zero is not a kind, so an envelope whose Kind was never set is caught
// by the receiver instead of being taken for a one-way message.
type Kind uint8

const (
	// KindData is a one-way message: the sender expects no reply.
	KindData Kind = 1 + iota

	// KindRequest asks the receiver to run a handler and answer with a
	// KindReply or KindError envelope carrying the same ID.
	KindRequest

	// KindReply answers the request whose ID it carries; Body holds the
	// handler's result.
	KindReply

	// KindError answers the request whose ID it carries when its handler
	// failed; Body holds [code, message] (docs/protocol.md §6.3).
	KindError

	// KindAck carries only an acknowledgement (the Ack field) and no payload.
	KindAck

	// KindControl carries a message of the node layer itself rather than of
	// an application, for example a heartbeat or a shutdown notice.
	KindControl
)

var kindNames = [...]string{
	KindData:    "data",
	KindRequest: "request",
	KindReply:   "reply",
	KindError:   "error",
	KindAck:     "ack",
	KindControl: "control",
}

// String returns the lower-case name of k, or "Kind(N)" for a kind this
// package does not define.
func (k Kind) String() string {
	if int(k) < len(kindNames) && kindNames[k] != "" {
		return kindNames[k]
	}
	return "Kind(" + strconv.Itoa(int(k)) + ")"
}
