package node

import (
	"errors"
	"fmt"
)

// Sentinel errors; test them with errors.Is.
var (
	// ErrClosed is returned by calls on a Node that is closed or leaving.
	ErrClosed = errors.New("node: closed")

	// ErrUnknownNode means no live member has the name a call addressed.
	ErrUnknownNode = errors.New("node: no such node")

	// ErrNoResponders means nobody serves the topic: no member has a handler
	// for it, or the addressed node has none.
	ErrNoResponders = errors.New("node: no responders")

	// ErrPeerFailed means the peer was declared failed (its process died or
	// became unreachable) before it acknowledged the message.
	ErrPeerFailed = errors.New("node: peer failed")

	// ErrPeerLeft means the peer left the cluster before it acknowledged the
	// message.
	ErrPeerLeft = errors.New("node: peer left")

	// ErrPeerRestarted means the peer came back as a new process (a new boot
	// id) before it acknowledged the message: the old process is gone.
	ErrPeerRestarted = errors.New("node: peer restarted")

	// ErrHandlerPanic means the remote handler panicked; the remote node
	// recovered and carries on.
	ErrHandlerPanic = errors.New("node: handler panicked")

	// ErrForbidden means the user this node logged in as lacks the role
	// for what it asked: see docs/security.md.
	ErrForbidden = errors.New("node: forbidden")
)

// Error codes carried by error replies on the wire (docs/protocol.md §6).
const (
	codeNoResponders uint8 = 1
	codeHandler      uint8 = 2
	codePanic        uint8 = 3
	codeBadRequest   uint8 = 4 // reserved: a malformed request
	codeForbidden    uint8 = 5
)

// RemoteError is the error a Request returns when the remote side answers
// with an error: the handler's own error, a recovered panic, or no handler
// for the topic. errors.Is matches ErrNoResponders and ErrHandlerPanic.
type RemoteError struct {
	Node    string // stable name of the node that answered
	Topic   string
	Code    uint8
	Message string // the handler error's text
}

// Error returns the topic, the node and the remote handler's message.
func (e *RemoteError) Error() string {
	return fmt.Sprintf("node: %s on %s: %s", e.Topic, e.Node, e.Message)
}

// Is lets errors.Is match the sentinel that the code stands for.
func (e *RemoteError) Is(target error) bool {
	switch e.Code {
	case codeNoResponders:
		return target == ErrNoResponders
	case codePanic:
		return target == ErrHandlerPanic
	case codeForbidden:
		return target == ErrForbidden
	}
	return false
}

// PeerError says which peer a delivery failure concerns; it wraps one of
// ErrPeerFailed, ErrPeerLeft, ErrPeerRestarted or ErrClosed.
type PeerError struct {
	Peer   string // the peer's member ID (name#boot)
	Reason string // what was observed, for people
	Err    error
}

// Error names the cause, the peer and what was seen.
func (e *PeerError) Error() string {
	if e.Reason == "" {
		return fmt.Sprintf("%v: %s", e.Err, e.Peer)
	}
	return fmt.Sprintf("%v: %s (%s)", e.Err, e.Peer, e.Reason)
}

// Unwrap returns the sentinel: ErrPeerFailed, ErrPeerLeft,
// ErrPeerRestarted or ErrClosed.
func (e *PeerError) Unwrap() error { return e.Err }
