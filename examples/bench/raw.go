package main

// The raw TCP anchor: length-prefixed frames (4-byte big-endian length, then
// the payload) over one loopback connection, 64 KiB bufio on both sides.

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

const rawBuf = 64 << 10

func init() {
	roles["raw-sink"] = rawSink
	roles["raw-send"] = rawSend
	roles["raw-echo"] = rawEcho
	roles["raw-ping"] = rawPing
	roles["raw-pipe"] = rawPipe
}

func writeFrame(w *bufio.Writer, p []byte) error {
	var h [4]byte
	binary.BigEndian.PutUint32(h[:], uint32(len(p)))
	if _, err := w.Write(h[:]); err != nil {
		return err
	}
	_, err := w.Write(p)
	return err
}

// readFrame reads one frame into buf (grown as needed) and returns it.
func readFrame(r *bufio.Reader, buf []byte) ([]byte, error) {
	var h [4]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return nil, err
	}
	n := int(binary.BigEndian.Uint32(h[:]))
	if n > 16<<20 {
		return nil, fmt.Errorf("frame of %d bytes", n)
	}
	if cap(buf) < n {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	_, err := io.ReadFull(r, buf)
	return buf, err
}

func listenLocal() (net.Listener, error) { return net.Listen("tcp", "127.0.0.1:0") }

// rawSink accepts one connection and counts the frames it reads.
func rawSink(e *env) error {
	ln, err := listenLocal()
	if err != nil {
		return err
	}
	defer ln.Close()
	e.emit(report{Ev: "ready", Addr: ln.Addr().String()})
	conn, err := ln.Accept()
	if err != nil {
		return err
	}
	defer conn.Close()
	m := newMeter()
	go m.measure(e, nil)
	go func() { e.waitStop(); conn.Close() }()
	r := bufio.NewReaderSize(conn, rawBuf)
	buf := make([]byte, e.p.Size)
	for {
		if buf, err = readFrame(r, buf); err != nil {
			if e.stop.Err() != nil || errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		m.add(1)
	}
}

// rawSend writes frames as fast as it can until told to stop.
func rawSend(e *env) error {
	conn, err := net.Dial("tcp", e.p.Addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	var stopped atomic.Bool
	go func() { e.waitStop(); stopped.Store(true) }()
	w := bufio.NewWriterSize(conn, rawBuf)
	p := make([]byte, e.p.Size)
	e.emit(report{Ev: "ready"})
	t0 := time.Now()
	var n int64
	for !stopped.Load() {
		for range 64 {
			if err := writeFrame(w, p); err != nil {
				return err
			}
		}
		n += 64
	}
	secs := time.Since(t0).Seconds()
	if err := w.Flush(); err != nil {
		return err
	}
	e.emit(report{Ev: "done", Count: n, Secs: secs})
	return nil
}

// rawEcho echoes every frame on every connection it accepts, flushing when
// its reader has nothing more buffered.
func rawEcho(e *env) error {
	ln, err := listenLocal()
	if err != nil {
		return err
	}
	e.emit(report{Ev: "ready", Addr: ln.Addr().String()})
	var wg sync.WaitGroup
	go func() { e.waitStop(); ln.Close() }()
	var mu sync.Mutex
	conns := map[net.Conn]bool{}
	defer func() {
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	}()
	for {
		conn, err := ln.Accept()
		if err != nil {
			if e.stop.Err() != nil {
				return nil
			}
			return err
		}
		mu.Lock()
		conns[conn] = true
		mu.Unlock()
		wg.Go(func() {
			defer conn.Close()
			r := bufio.NewReaderSize(conn, rawBuf)
			w := bufio.NewWriterSize(conn, rawBuf)
			var buf []byte
			for {
				var err error
				if buf, err = readFrame(r, buf); err != nil {
					return
				}
				if writeFrame(w, buf) != nil {
					return
				}
				if r.Buffered() == 0 && w.Flush() != nil {
					return
				}
			}
		})
	}
}

// rawPing does sequential request/reply: write a frame, wait for its echo.
func rawPing(e *env) error {
	conn, err := net.Dial("tcp", e.p.Addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	r := bufio.NewReaderSize(conn, rawBuf)
	w := bufio.NewWriterSize(conn, rawBuf)
	p := make([]byte, e.p.Size)
	buf := make([]byte, e.p.Size)
	res, err := runSequential(e, func() error {
		if err := writeFrame(w, p); err != nil {
			return err
		}
		if err := w.Flush(); err != nil {
			return err
		}
		buf, err = readFrame(r, buf)
		return err
	})
	if err != nil {
		return err
	}
	e.emit(res)
	return nil
}

// rawPipe keeps depth requests in flight over one connection: the callers
// hand frames (an 8-byte id first) to a writer goroutine, which flushes when
// it has no more queued, and a reader goroutine routes each echo to its
// caller by id.
func rawPipe(e *env) error {
	conn, err := net.Dial("tcp", e.p.Addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	size := max(e.p.Size, 8)
	queue := make(chan []byte, e.p.Depth)
	slots := make([]chan []byte, e.p.Depth)
	for i := range slots {
		slots[i] = make(chan []byte, 1)
	}
	ioErr := make(chan error, 2)
	go func() {
		w := bufio.NewWriterSize(conn, rawBuf)
		for p := range queue {
			if err := writeFrame(w, p); err != nil {
				ioErr <- err
				return
			}
			if len(queue) == 0 {
				if err := w.Flush(); err != nil {
					ioErr <- err
					return
				}
			}
		}
	}()
	go func() {
		r := bufio.NewReaderSize(conn, rawBuf)
		for {
			p, err := readFrame(r, nil) // a fresh payload each time, as a client would hand it out
			if err != nil {
				ioErr <- err
				return
			}
			g := binary.BigEndian.Uint32(p)
			if int(g) >= len(slots) {
				ioErr <- fmt.Errorf("reply for unknown slot %d", g)
				return
			}
			select {
			case slots[g] <- p:
			default: // a caller that gave up; drop
			}
		}
	}()
	reqs := make([][]byte, e.p.Depth)
	seqs := make([]uint32, e.p.Depth)
	for g := range reqs {
		reqs[g] = make([]byte, size)
	}
	res, err := runPipelined(e, func(ctx context.Context, g int) error {
		seqs[g]++
		// Each caller owns its buffer and waits for the echo before reuse,
		// so the writer may read it without a copy.
		p := reqs[g]
		binary.BigEndian.PutUint32(p, uint32(g))
		binary.BigEndian.PutUint32(p[4:], seqs[g])
		select {
		case queue <- p:
		case <-ctx.Done():
			return ctx.Err()
		}
		select {
		case rep := <-slots[g]:
			if binary.BigEndian.Uint32(rep[4:]) != seqs[g] {
				return fmt.Errorf("slot %d: reply out of order", g)
			}
			return nil
		case err := <-ioErr:
			return err
		case <-ctx.Done():
			return ctx.Err()
		}
	})
	if err != nil {
		return err
	}
	e.emit(res)
	return nil
}
