package node

// frameQueue holds a peer's unacknowledged frames in sequence order: pushed
// at the back, dropped from the front as acknowledgements arrive. It is a
// ring, so the window sliding costs nothing: with small messages it holds
// tens of thousands of frames, and moving them to the front after every
// acknowledgement cost more than the sends themselves.
type frameQueue struct {
	buf  []outFrame // len(buf) is the capacity, a power of two or zero
	head int        // index of the oldest frame
	n    int        // frames held
}

func (q *frameQueue) len() int { return q.n }

func (q *frameQueue) at(i int) *outFrame { return &q.buf[(q.head+i)&(len(q.buf)-1)] }

func (q *frameQueue) push(f outFrame) {
	if q.n == len(q.buf) {
		grown := make([]outFrame, max(64, 2*len(q.buf)))
		q.copyTo(grown)
		q.buf, q.head = grown, 0
	}
	*q.at(q.n) = f
	q.n++
}

// copyTo copies the frames, oldest first, to the front of dst.
func (q *frameQueue) copyTo(dst []outFrame) {
	if q.n == 0 {
		return
	}
	end := q.head + q.n
	if end <= len(q.buf) {
		copy(dst, q.buf[q.head:end])
		return
	}
	k := copy(dst, q.buf[q.head:])
	copy(dst[k:], q.buf[:end-len(q.buf)])
}

// dropThrough removes the frames numbered up to seq, hands their buffers
// to keep and returns how many bytes they were charged.
func (q *frameQueue) dropThrough(seq uint64, keep func([]byte)) (bytes, count int) {
	for q.n > 0 {
		f := q.at(0)
		if f.seq > seq {
			break
		}
		bytes += f.size
		keep(f.b)
		*f = outFrame{}
		q.head = (q.head + 1) & (len(q.buf) - 1)
		q.n--
		count++
	}
	if q.n == 0 {
		q.head = 0
	}
	return bytes, count
}

// frames returns a copy of the frames, in order.
func (q *frameQueue) frames() []outFrame {
	out := make([]outFrame, q.n)
	q.copyTo(out)
	return out
}

// reset empties the queue and returns what it held, in order.
func (q *frameQueue) reset() []outFrame {
	out := q.frames()
	*q = frameQueue{}
	return out
}
