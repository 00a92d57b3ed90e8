package main

// The conclave side: child roles that run a node.Node. Each child is one
// node process; the key arrives on stdin.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"time"

	"github.com/seed0811993b/conclave/auth"
	"github.com/seed0811993b/conclave/node"
)

const (
	ccCluster   = "bench"
	topicSink   = "sink"
	topicEcho   = "echo"
	ccStartWait = 30 * time.Second
)

// undelivered counts the one-way messages this process's node reported
// as not delivered.
var undelivered atomic.Int64

func init() {
	roles["cc-sink"] = ccSink
	roles["cc-echo"] = ccEcho
	roles["cc-send"] = ccSend
	roles["cc-ping"] = ccPing
	roles["cc-pipe"] = ccPipe
	roles["cc-node"] = ccNode
}

// startNode starts this child's node, joining e.p.Addr when set, with an
// echo handler installed. Undeliverable one-way messages are counted in
// undelivered.
func startNode(e *env) (*node.Node, error) {
	if len(e.key) == 0 {
		return nil, errors.New("no key on stdin")
	}
	cfg := node.Config{
		Name:    e.p.Name,
		Key:     auth.Key(e.key),
		Cluster: ccCluster,
		Bind:    "127.0.0.1:0",
		Gossip:  node.GossipFast,
		Undeliverable: func(u node.Undelivered) {
			if undelivered.Add(1) == 1 {
				fmt.Fprintf(os.Stderr, "%s: undeliverable to %s: %v\n", e.p.Name, u.To, u.Err)
			}
		},
	}
	if e.p.Addr != "" {
		cfg.Join = []string{e.p.Addr}
	}
	ctx, cancel := context.WithTimeout(context.Background(), ccStartWait)
	defer cancel()
	n, err := node.Start(ctx, cfg)
	if err != nil {
		return nil, err
	}
	if _, err := n.Handle(topicEcho, func(_ context.Context, m *node.Msg) (any, error) { return m.Data(), nil }); err != nil {
		n.Close()
		return nil, err
	}
	return n, nil
}

// startLinked starts a node, joins, and waits for the link to e.p.Peer.
func startLinked(e *env) (*node.Node, error) {
	n, err := startNode(e)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), ccStartWait)
	defer cancel()
	if err := n.WaitPeer(ctx, e.p.Peer); err != nil {
		n.Close()
		return nil, fmt.Errorf("wait for %s: %w", e.p.Peer, err)
	}
	return n, nil
}

func ccSink(e *env) error {
	m := newMeter()
	n, err := startNode(e)
	if err != nil {
		return err
	}
	defer n.Close()
	if _, err := n.Handle(topicSink, func(context.Context, *node.Msg) (any, error) {
		m.add(1)
		return nil, nil
	}); err != nil {
		return err
	}
	e.emit(report{Ev: "ready", Addr: n.GossipAddr()})
	m.measure(e, nil)
	e.waitStop()
	return nil
}

func ccEcho(e *env) error {
	n, err := startNode(e)
	if err != nil {
		return err
	}
	defer n.Close()
	e.emit(report{Ev: "ready", Addr: n.GossipAddr()})
	e.waitStop()
	return nil
}

func ccSend(e *env) error {
	n, err := startLinked(e)
	if err != nil {
		return err
	}
	defer n.Close()
	p := make([]byte, e.p.Size)
	// Send returns at once while the peer's queue has room, whatever its
	// ctx: the loop checks the flag, ctx only ends a Send that waits.
	var stopped atomic.Bool
	go func() { e.waitStop(); stopped.Store(true) }()
	e.emit(report{Ev: "ready"})
	t0 := time.Now()
	var sent int64
	for !stopped.Load() {
		if err := n.Send(e.stop, e.p.Peer, topicSink, p); err != nil {
			if e.stop.Err() != nil {
				break
			}
			return err
		}
		sent++
	}
	secs := time.Since(t0).Seconds()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := n.Flush(ctx); err != nil {
		return fmt.Errorf("flush: %w", err)
	}
	e.emit(report{Ev: "done", Count: sent, Secs: secs, Dropped: undelivered.Load()})
	return nil
}

func ccPing(e *env) error {
	n, err := startLinked(e)
	if err != nil {
		return err
	}
	defer n.Close()
	p := make([]byte, e.p.Size)
	var out []byte
	res, err := runSequential(e, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return n.Request(ctx, e.p.Peer, topicEcho, p, &out)
	})
	if err != nil {
		return err
	}
	e.emit(res)
	return nil
}

func ccPipe(e *env) error {
	n, err := startLinked(e)
	if err != nil {
		return err
	}
	defer n.Close()
	p := make([]byte, e.p.Size)
	res, err := runPipelined(e, func(ctx context.Context, _ int) error {
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		var out []byte
		return n.Request(ctx, e.p.Peer, topicEcho, p, &out)
	})
	if err != nil {
		return err
	}
	e.emit(res)
	return nil
}

// ccNode is a cluster member for the memory and failure measurements. It
// reports every membership event with the wall-clock time it saw it, and
// obeys commands on stdin:
//
//	wait A,B,...   wait until links to these names are up, then "peers"
//	link A,B,...   wait for the links and do one echo request over each, then "linked"
//	leave          "leaving" (with the time), Leave, then "leave-done"
func ccNode(e *env) error {
	n, err := startNode(e)
	if err != nil {
		return err
	}
	closed := false
	defer func() {
		if !closed {
			n.Close()
		}
	}()
	go func() {
		for ev := range n.Events() {
			t := time.Now().UnixNano()
			e.emit(report{Ev: "event", Kind: ev.Kind.String(), Name: ev.Member.Name, T: t})
		}
	}()
	e.emit(report{Ev: "ready", Addr: n.GossipAddr()})
	for {
		var line string
		var ok bool
		select {
		case line, ok = <-e.cmds:
		case <-e.stop.Done():
			ok = false
		}
		if !ok {
			return nil
		}
		verb, arg, _ := strings.Cut(line, " ")
		var names []string
		if arg != "" {
			names = strings.Split(arg, ",")
		}
		switch verb {
		case "wait", "link":
			ctx, cancel := context.WithTimeout(context.Background(), ccStartWait)
			for _, name := range names {
				if err := n.WaitPeer(ctx, name); err != nil {
					cancel()
					return fmt.Errorf("wait for %s: %w", name, err)
				}
				if verb == "link" {
					var out []byte
					if err := n.Request(ctx, name, topicEcho, []byte("hello"), &out); err != nil {
						cancel()
						return fmt.Errorf("request to %s: %w", name, err)
					}
				}
			}
			cancel()
			if verb == "wait" {
				e.emit(report{Ev: "peers"})
			} else {
				// Measure what the node holds, not the garbage of the
				// handshakes that the runtime has yet to return.
				debug.FreeOSMemory()
				e.emit(report{Ev: "linked"})
			}
		case "leave":
			e.emit(report{Ev: "leaving", T: time.Now().UnixNano()})
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			err := n.Leave(ctx)
			cancel()
			t := time.Now().UnixNano()
			if err != nil {
				return fmt.Errorf("leave: %w", err)
			}
			closed = true
			if err := n.Close(); err != nil && !errors.Is(err, context.Canceled) {
				return fmt.Errorf("close after leave: %w", err)
			}
			e.emit(report{Ev: "leave-done", T: t})
		default:
			return fmt.Errorf("unknown command %q", line)
		}
	}
}
