package benchkit

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
)

const (
	// RawBufSize is the size of the bufio buffers at both ends of the raw
	// framing anchor.
	RawBufSize = 64 << 10
	// RawQueueLen is how many frames a RawSender's channel holds.
	RawQueueLen = 1024
)

// RawSender is the sending half of the raw framing anchor: plain Go framing
// with no authentication. Send hands a frame to a writer goroutine through a
// channel; the writer puts a 4-byte big-endian length and the payload into a
// bufio.Writer and flushes it whenever the channel runs dry.
//
// Send may be called from many goroutines; Close must not run concurrently
// with Send.
type RawSender struct {
	q    chan []byte
	dead chan struct{} // closed when the writer goroutine has returned
	err  error         // the first write error; set before dead is closed
}

// NewRawSender starts a writer goroutine that writes frames to w.
func NewRawSender(w io.Writer) *RawSender {
	s := &RawSender{q: make(chan []byte, RawQueueLen), dead: make(chan struct{})}
	go s.writeLoop(bufio.NewWriterSize(w, RawBufSize))
	return s
}

// Send queues p as one frame, waiting while the queue is full. Unlike a
// Link, the anchor does not copy p: the caller must not modify it until Close
// returns. After a write failure Send returns that error.
func (s *RawSender) Send(p []byte) error {
	select {
	case s.q <- p:
		return nil
	default:
	}
	select {
	case s.q <- p:
		return nil
	case <-s.dead:
		return s.err
	}
}

// Close writes what is queued, stops the writer and returns the first write
// error. Send must not be called after Close.
func (s *RawSender) Close() error {
	close(s.q)
	<-s.dead
	return s.err
}

func (s *RawSender) writeLoop(w *bufio.Writer) {
	defer close(s.dead)
	var hdr [4]byte
	for p := range s.q {
		for ok := true; ok; {
			binary.BigEndian.PutUint32(hdr[:], uint32(len(p)))
			_, _ = w.Write(hdr[:]) // a bufio.Writer's error sticks: the next Write reports it
			if _, err := w.Write(p); err != nil {
				s.err = err // stop now: a sender that keeps the queue full must not hide it
				return
			}
			select {
			case p, ok = <-s.q:
			default:
				ok = false
			}
		}
		if err := w.Flush(); err != nil {
			s.err = err
			return
		}
	}
}

// RawReceiver is the receiving half of the raw framing anchor: it reads
// frames through a bufio.Reader and allocates each payload, as a Link does.
// It is not safe for concurrent use.
type RawReceiver struct {
	r   *bufio.Reader
	max int
	hdr [4]byte
}

// NewRawReceiver reads frames of at most max bytes from r.
func NewRawReceiver(r io.Reader, max int) *RawReceiver {
	return &RawReceiver{r: bufio.NewReaderSize(r, RawBufSize), max: max}
}

// Recv returns the next frame's payload in a new slice. A stream that ends
// between frames yields io.EOF, one that ends inside a frame
// io.ErrUnexpectedEOF.
func (r *RawReceiver) Recv() ([]byte, error) {
	if _, err := io.ReadFull(r.r, r.hdr[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(r.hdr[:])
	if uint64(n) > uint64(r.max) {
		return nil, fmt.Errorf("benchkit: frame of %d bytes, limit %d", n, r.max)
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(r.r, p); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return p, nil
}
