package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"time"

	"github.com/seed0811993b/conclave/auth"
)

// The bench command measures between two processes: this one and a copy of
// itself started as the hidden `bench-peer` command. The parent writes JSON
// to the peer's stdin, first a peerHello carrying the cluster key (never argv
// or the environment), then one peerCmd at a time; the peer answers each
// command with a peerReply line on its stdout. When its stdin ends the peer
// exits, so a killed parent leaves no peer behind.

// peerHello is the parent's first message to the peer.
type peerHello struct {
	Key []byte `json:"key"`
}

// peerCmd is one measurement the peer takes part in.
type peerCmd struct {
	Op     string        `json:"op"`   // "send": stream frames to Addr; "dial": handshake with Addr in a loop
	Kind   string        `json:"kind"` // a link kind or a handshake kind
	Addr   string        `json:"addr"`
	Size   int           `json:"size,omitempty"`   // send: payload bytes
	Warmup time.Duration `json:"warmup,omitempty"` // dial: handshakes not counted
	Dur    time.Duration `json:"dur"`              // send: give up after; dial: counted
	Cert   []byte        `json:"cert,omitempty"`   // dial tls13: the certificate to trust
}

// peerReply ends a command.
type peerReply struct {
	Err   string  `json:"err,omitempty"`
	Count int     `json:"count,omitempty"` // dial: handshakes completed in Secs
	Secs  float64 `json:"secs,omitempty"`
}

// peerExitGrace is how long the peer lets a command unwind once its parent
// has gone before it exits regardless.
const peerExitGrace = 3 * time.Second

// benchPeer is the hidden bench-peer command: it runs the commands the
// parent writes to stdin until stdin ends.
func benchPeer(ctx context.Context, stdin io.Reader, stdout io.Writer) error {
	dec := json.NewDecoder(stdin)
	var hello peerHello
	if err := dec.Decode(&hello); err != nil {
		return fmt.Errorf("bench-peer: read the key from stdin: %w", err)
	}
	key := auth.Key(hello.Key)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cmds := make(chan peerCmd)
	go func() {
		defer cancel()
		for {
			var c peerCmd
			if err := dec.Decode(&c); err != nil {
				// The parent closed stdin or died: stop, and make sure of it.
				time.AfterFunc(peerExitGrace, func() { os.Exit(1) })
				return
			}
			select {
			case cmds <- c:
			case <-ctx.Done():
				return
			}
		}
	}()
	enc := json.NewEncoder(stdout)
	for {
		select {
		case <-ctx.Done():
			return nil
		case c := <-cmds:
			var r peerReply
			var err error
			switch c.Op {
			case "send":
				err = peerSend(ctx, key, c)
			case "dial":
				r, err = peerDial(ctx, key, c)
			default:
				err = fmt.Errorf("unknown op %q", c.Op)
			}
			if err != nil {
				r.Err = err.Error()
			}
			if err := enc.Encode(r); err != nil {
				return err
			}
		}
	}
}

// peerProc is the parent's handle on a running bench peer.
type peerProc struct {
	cmd     *exec.Cmd
	stdin   io.WriteCloser
	enc     *json.Encoder
	replies chan peerReply // closed when the peer's stdout ends

	closeOnce sync.Once
	closeErr  error
}

// startPeer starts this executable as a bench peer and hands it key.
func startPeer(ctx context.Context, key auth.Key, stderr io.Writer) (*peerProc, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("bench: find this executable: %w", err)
	}
	cmd := exec.CommandContext(ctx, exe, "bench-peer")
	cmd.Stderr = stderr
	cmd.WaitDelay = peerExitGrace
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("bench: start peer: %w", err)
	}
	p := &peerProc{cmd: cmd, stdin: stdin, enc: json.NewEncoder(stdin), replies: make(chan peerReply, 4)}
	go func() {
		defer close(p.replies)
		dec := json.NewDecoder(stdout)
		for {
			var r peerReply
			if err := dec.Decode(&r); err != nil {
				return
			}
			p.replies <- r
		}
	}()
	if err := p.enc.Encode(peerHello{Key: key}); err != nil {
		_ = p.close()
		return nil, fmt.Errorf("bench: hand the key to the peer: %w", err)
	}
	return p, nil
}

// send starts a command; its reply arrives on p.replies.
func (p *peerProc) send(c peerCmd) error {
	if err := p.enc.Encode(c); err != nil {
		return fmt.Errorf("bench: peer: %w", err)
	}
	return nil
}

// reply waits up to timeout for the reply to the command in progress.
func (p *peerProc) reply(timeout time.Duration) (peerReply, error) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case r, ok := <-p.replies:
		return checkReply(r, ok)
	case <-t.C:
		return peerReply{}, errors.New("the peer did not answer in time")
	}
}

// checkReply turns a reply received from p.replies into an error when it is
// one, or when the channel was closed (ok false).
func checkReply(r peerReply, ok bool) (peerReply, error) {
	if !ok {
		return r, errors.New("the peer exited")
	}
	if r.Err != "" {
		return r, fmt.Errorf("peer: %s", r.Err)
	}
	return r, nil
}

// close ends the peer's stdin, which tells it to exit, and waits for it.
func (p *peerProc) close() error {
	p.closeOnce.Do(func() {
		_ = p.stdin.Close()
		p.closeErr = p.cmd.Wait()
	})
	return p.closeErr
}
