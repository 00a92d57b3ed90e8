package node

import (
	"fmt"

	"github.com/seed0811993b/conclave/auth"
	"github.com/seed0811993b/conclave/codec"
)

// Envelope flag bits owned by the node layer (codec.FlagRaw is bit 0).
const (
	// flagPublish: a Data envelope for the topic's subscribers rather than
	// its handler.
	flagPublish uint8 = 1 << 1
	// flagQueue: a published Data envelope for exactly one queue
	// subscription, whose subscription id is the envelope ID.
	flagQueue uint8 = 1 << 2
	// flagBroadcast: a Data envelope sent to every member; a receiver without
	// a handler drops it without answering.
	flagBroadcast uint8 = 1 << 3
	// flagPassedOn: a queue message that a member whose subscription had
	// gone passed on to another member of the group; it is not passed on
	// again.
	flagPassedOn uint8 = 1 << 4
)

// Control envelope topics.
const (
	ctlHello    = "hello"
	ctlPing     = "ping"
	ctlLeave    = "leave"
	ctlInterest = "interest"
	ctlResync   = "resync" // asks for an interest snapshot
	ctlWhoami   = "whoami" // tells a peer the user and roles it logged in as
	ctlIam      = "iam"    // tells the dialer of a link which user the acceptor logs in as
)

// whoami is the body of ctlWhoami.
type whoami struct {
	//lint:ignore U1000 msgpack reads the tag: encode as an array
	_msgpack struct{} `msgpack:",as_array"`
	User     string
	Roles    []string
	Topics   auth.TopicRules
}

// iam is the body of ctlIam.
type iam struct {
	//lint:ignore U1000 msgpack reads the tag: encode as an array
	_msgpack struct{} `msgpack:",as_array"`
	User     string
}

// hello is the first envelope on every link, in both directions. It
// resumes the two sequenced streams across reconnections: Epoch names the
// sender's outbound stream (a new epoch means the sender started over and
// reported what it dropped), FirstSeq is the first sequence number the
// sender will (re)send now, and AckEpoch/Ack acknowledge what the sender
// has received of the receiver's stream.
type hello struct {
	//lint:ignore U1000 msgpack reads the tag: encode as an array
	_msgpack struct{} `msgpack:",as_array"`
	Epoch    uint64
	FirstSeq uint64
	AckEpoch uint64
	Ack      uint64
}

// interestOp is a change to the set of topics a node wants.
type interestOp struct {
	//lint:ignore U1000 msgpack reads the tag: encode as an array
	_msgpack struct{} `msgpack:",as_array"`
	Op       uint8    // opAdd, opDel or opReset
	SID      uint64
	Kind     interestKind
	Topic    string
	Group    string
}

const (
	opAdd   uint8 = 1
	opDel   uint8 = 2
	opReset uint8 = 3 // forget every interest of the sender
)

// errorBody is the body of a KindError envelope.
type errorBody struct {
	//lint:ignore U1000 msgpack reads the tag: encode as an array
	_msgpack struct{} `msgpack:",as_array"`
	Code     uint8
	Message  string
}

// marshalControl encodes v for a control or error body; the types above
// cannot fail to encode.
func marshalControl(v any) []byte {
	b, err := codec.Msgpack.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("node: encoding %T: %v", v, err))
	}
	return b
}
