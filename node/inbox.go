package node

import (
	"context"
	"sync"
)

// inbox holds the one-way messages received from one peer until a single
// goroutine hands them to their handlers, in arrival order. It is bounded in
// bytes: put waits while it is full, which stops the link's reader and so
// pushes back on the sender instead of growing memory.
type inbox struct {
	mu       sync.Mutex
	q        []inMsg
	bytes    int
	max      int
	sleeping bool          // the consumer waits on wake; guarded by mu
	wake     chan struct{} // the consumer's doorbell, rung only when it sleeps
	room     chan struct{} // producers' doorbell
	gone     chan struct{} // closed when the consumer stops for good (forget)
	goneOnce sync.Once
}

// inMsg is one received one-way message and what delivering it needs.
type inMsg struct {
	from  *peer // nil for messages from this node itself
	msg   Msg
	id    uint64 // the queue subscription for flagQueue messages
	size  int
	reply bool // answer "no responders" when nobody takes it
}

func newInbox(max int) *inbox {
	return &inbox{max: max, wake: make(chan struct{}, 1), room: make(chan struct{}, 1), gone: make(chan struct{})}
}

// forget tells producers still waiting for room that none will come.
func (b *inbox) forget() { b.goneOnce.Do(func() { close(b.gone) }) }

// put appends m, waiting while the inbox is over its bound (a message
// larger than the bound is still accepted into an empty inbox) until ctx
// ends or stop is closed (then ErrClosed: the consumer is gone).
func (b *inbox) put(ctx context.Context, stop <-chan struct{}, m inMsg) error {
	return b.putAll(ctx, stop, []inMsg{m}, m.size)
}

// putAll appends ms, which take size bytes, as put does for one message:
// a link's reader hands over what one read brought in one step.
func (b *inbox) putAll(ctx context.Context, stop <-chan struct{}, ms []inMsg, size int) error {
	for !b.tryPutAll(ms, size) {
		var stopped bool
		select {
		case <-b.room:
		case <-ctx.Done():
		case <-stop:
			stopped = true
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if stopped {
			return ErrClosed
		}
	}
	return nil
}

// tryPutAll appends ms, which take size bytes, if the inbox has room for
// them now, and reports whether it did.
func (b *inbox) tryPutAll(ms []inMsg, size int) bool {
	b.mu.Lock()
	if b.bytes > 0 && b.bytes+size > b.max {
		b.mu.Unlock()
		return false
	}
	b.q = append(b.q, ms...)
	b.bytes += size
	ring := b.sleeping
	b.sleeping = false
	b.mu.Unlock()
	if ring {
		signal(b.wake)
	}
	return true
}

// run delivers messages with deliver until ctx ends.
func (b *inbox) run(ctx context.Context, deliver func(*inMsg)) {
	var batch []inMsg
	for {
		b.mu.Lock()
		batch, b.q = b.q, batch[:0]
		b.bytes = 0
		b.sleeping = len(batch) == 0
		b.mu.Unlock()
		if len(batch) == 0 {
			select {
			case <-b.wake:
				continue
			case <-ctx.Done():
				return
			}
		}
		signal(b.room)
		for i := range batch {
			deliver(&batch[i])
			batch[i] = inMsg{}
		}
	}
}

// signal rings a doorbell channel of capacity one without blocking.
func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}
