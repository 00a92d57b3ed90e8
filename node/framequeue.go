package node

// frameQueue holds a peer's unacknowledged frames in sequence order: pushed
// at the back, dropped from the front as acknowledgements arrive. It reuses
// its array instead of reallocating as the window slides.
type frameQueue struct {
	buf  []outFrame
	head int
}

func (q *frameQueue) len() int { return len(q.buf) - q.head }

func (q *frameQueue) push(f outFrame) {
	if q.head > 0 && len(q.buf) == cap(q.buf) {
		// Slide the live frames to the front rather than grow.
		n := copy(q.buf, q.buf[q.head:])
		clear(q.buf[n:])
		q.buf, q.head = q.buf[:n], 0
	}
	q.buf = append(q.buf, f)
}

// dropThrough removes the frames numbered up to seq, hands their buffers
// to keep and returns how many bytes they were charged.
func (q *frameQueue) dropThrough(seq uint64, keep func([]byte)) (bytes, count int) {
	for q.head < len(q.buf) && q.buf[q.head].seq <= seq {
		bytes += q.buf[q.head].size
		keep(q.buf[q.head].b)
		q.buf[q.head] = outFrame{}
		q.head++
		count++
	}
	if q.head == len(q.buf) {
		q.buf, q.head = q.buf[:0], 0
	}
	return bytes, count
}

// frames returns a copy of the frames, in order.
func (q *frameQueue) frames() []outFrame {
	return append([]outFrame(nil), q.buf[q.head:]...)
}

// reset empties the queue and returns what it held.
func (q *frameQueue) reset() []outFrame {
	out := q.buf[q.head:]
	q.buf, q.head = nil, 0
	return out
}
