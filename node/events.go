package node

import (
	"strconv"
	"sync"
)

// EventKind says what happened to a member.
type EventKind uint8

const (
	// EventJoined: a member became reachable (or a new process took a name).
	EventJoined EventKind = iota + 1
	// EventLeft: a member announced its leave (Leave or Close).
	EventLeft
	// EventFailed: a member died, became unreachable or restarted; Err says
	// which.
	EventFailed
	// EventUpdated: a member changed its tags.
	EventUpdated
)

// String returns "joined", "left", "failed" or "updated".
func (k EventKind) String() string {
	switch k {
	case EventJoined:
		return "joined"
	case EventLeft:
		return "left"
	case EventFailed:
		return "failed"
	case EventUpdated:
		return "updated"
	}
	return "EventKind(" + strconv.Itoa(int(k)) + ")"
}

// Event is a change in membership.
type Event struct {
	Kind   EventKind
	Member Member
	Err    error // for EventLeft and EventFailed: a *PeerError with the reason
}

// maxQueuedEvents bounds the events kept for a reader that has fallen
// behind; beyond it the oldest are dropped, with a warning.
const maxQueuedEvents = 4096

// eventQueue buffers events for Node.Events so that membership handling
// never waits for the application.
type eventQueue struct {
	n    *Node
	mu   sync.Mutex
	q    []Event
	ch   chan Event
	wake chan struct{}
}

func (e *eventQueue) init(n *Node) {
	e.n = n
	e.ch = make(chan Event)
	e.wake = make(chan struct{}, 1)
}

// emit queues an event for Events.
func (n *Node) emit(ev Event) {
	e := &n.events
	e.mu.Lock()
	if len(e.q) >= maxQueuedEvents {
		e.q = e.q[1:]
		n.log.Warn("events not read: dropped the oldest", "kept", maxQueuedEvents)
	}
	e.q = append(e.q, ev)
	e.mu.Unlock()
	signal(e.wake)
}

// run feeds the channel until the node closes, then closes it.
func (e *eventQueue) run() {
	defer close(e.ch)
	for {
		e.mu.Lock()
		var ev Event
		ok := len(e.q) > 0
		if ok {
			ev = e.q[0]
			e.q = e.q[1:]
		}
		e.mu.Unlock()
		if !ok {
			select {
			case <-e.wake:
				continue
			case <-e.n.done:
				return
			}
		}
		select {
		case e.ch <- ev:
		case <-e.n.done:
			return
		}
	}
}

// Events returns the channel of membership events, in order. Events are
// kept from Start on, so the first read also sees the members found while
// joining; up to 4096 events wait for a slow reader. The channel is closed
// when the node closes.
func (n *Node) Events() <-chan Event { return n.events.ch }
