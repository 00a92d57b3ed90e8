package node

// Multi-process tests: each node is a separate OS process running this test
// binary (TestMain sees childEnv and runs childMain instead of the tests).
// The test drives its children with one JSON command per line on their
// stdin and reads replies and events, one JSON object per line, from their
// stdout. The cluster key is the first stdin line, in hex.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/seed0811993b/conclave/auth"
)

// Environment of a child node. Nothing secret travels this way.
const (
	childEnv     = "CONCLAVE_NODE_CHILD" // "1": run as a child node
	childNameEnv = "CONCLAVE_NODE_NAME"  // the node's name
	childJoinEnv = "CONCLAVE_NODE_JOIN"  // gossip address to join; empty for the first node
)

// childCmd is one command from the test to a child.
type childCmd struct {
	ID        int      `json:"id"`
	Op        string   `json:"op"` // sync send fill request request_any publish broadcast gather tally undelivered leave
	To        string   `json:"to,omitempty"`
	Topic     string   `json:"topic,omitempty"`
	N         int      `json:"n,omitempty"`          // messages to send, or the count to wait for
	Base      int      `json:"base,omitempty"`       // first number sent
	Size      int      `json:"size,omitempty"`       // fill: payload bytes
	Peers     []string `json:"peers,omitempty"`      // sync: every node's name
	TimeoutMS int      `json:"timeout_ms,omitempty"` // default 10 s; fill: how long one send may wait
}

// childOut is one line from a child: the reply to command ID, or an event.
type childOut struct {
	ID       int    `json:"id,omitempty"`
	Event    string `json:"event,omitempty"`     // ready, joined, left, failed, updated, blocked, job
	Member   string `json:"member,omitempty"`    // the event's member; the sender for blocked and job
	MemberID string `json:"member_id,omitempty"` // ready: this node's ID; membership events: the member's
	Gossip   string `json:"gossip,omitempty"`    // ready: the gossip address
	Topic    string `json:"topic,omitempty"`
	At       int64  `json:"at_unix_nano,omitempty"` // when it happened; leave: when Leave was called
	TookNS   int64  `json:"took_ns,omitempty"`
	Err      string `json:"err,omitempty"`
	Cause    string `json:"cause,omitempty"` // Err classified: see causeOf
	Peer     string `json:"peer,omitempty"`  // a *PeerError's member ID

	N           int                           `json:"n,omitempty"`
	From        map[string]int                `json:"from,omitempty"`  // responders and how many answers each gave
	Errs        []string                      `json:"errs,omitempty"`  // gather: failed responses
	Tally       map[string]map[string]*stream `json:"tally,omitempty"` // topic -> sender -> what arrived
	Undelivered []childUndelivered            `json:"undelivered,omitempty"`
}

// stream counts the numbered messages one sender sent on one topic.
type stream struct {
	N   int `json:"n"`   // messages received
	Bad int `json:"bad"` // messages that were not the next number (lost, repeated or reordered)
}

type childUndelivered struct {
	To    string `json:"to"`
	Topic string `json:"topic"`
	Cause string `json:"cause"`
}

type echoReply struct {
	By string
	N  int
}

// causeOf names the sentinel an error matches, for the test to compare.
func causeOf(err error) string {
	switch {
	case err == nil:
		return ""
	case errors.Is(err, ErrPeerFailed):
		return "peer_failed"
	case errors.Is(err, ErrPeerLeft):
		return "peer_left"
	case errors.Is(err, ErrPeerRestarted):
		return "peer_restarted"
	case errors.Is(err, ErrNoResponders):
		return "no_responders"
	case errors.Is(err, ErrUnknownNode):
		return "unknown_node"
	case errors.Is(err, ErrClosed):
		return "closed"
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	}
	var re *RemoteError
	if errors.As(err, &re) {
		return "remote"
	}
	return "other"
}

// ---- the child ----

// child is a node process's state.
type child struct {
	n    *Node
	name string

	outMu sync.Mutex

	mu          sync.Mutex
	tally       map[string]map[string]*stream
	changed     chan struct{} // closed and replaced when tally or undelivered change
	undelivered []childUndelivered
}

// childMain runs a node until its stdin closes or it is told to leave, and
// returns the exit code.
func childMain() int {
	c := &child{
		name:    os.Getenv(childNameEnv),
		tally:   map[string]map[string]*stream{},
		changed: make(chan struct{}),
	}
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 64<<10), 1<<20)
	if !in.Scan() {
		fmt.Fprintln(os.Stderr, "child: no key on stdin")
		return 2
	}
	key, err := hex.DecodeString(strings.TrimSpace(in.Text()))
	if err != nil {
		fmt.Fprintln(os.Stderr, "child: the key line is not hex")
		return 2
	}
	cfg := Config{
		Name: c.name, Key: auth.Key(key), Cluster: "proc", Bind: "127.0.0.1:0", Gossip: GossipFast,
		// Small queues, so that "fill" reaches the bound quickly.
		SendQueueBytes: 256 << 10, InboxBytes: 64 << 10,
		Undeliverable: c.onUndeliverable,
	}
	if j := os.Getenv(childJoinEnv); j != "" {
		cfg.Join = []string{j}
	}
	if os.Getenv("CONCLAVE_TEST_LOG") != "" {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	c.n, err = Start(ctx, cfg)
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 1
	}
	go c.forwardEvents()
	if err := c.register(); err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		c.n.Close()
		return 1
	}
	c.write(childOut{Event: "ready", MemberID: c.n.ID(), Gossip: c.n.GossipAddr()})
	for in.Scan() {
		var cmd childCmd
		if err := json.Unmarshal(in.Bytes(), &cmd); err != nil {
			fmt.Fprintf(os.Stderr, "child: bad command %q: %v\n", in.Text(), err)
			return 2
		}
		if cmd.Op == "leave" {
			c.leave(cmd)
			return 0
		}
		go c.do(cmd)
	}
	// The test is gone or done with us.
	c.n.Close()
	return 0
}

// write writes one line to stdout.
func (c *child) write(o childOut) {
	b, err := json.Marshal(o)
	if err != nil {
		panic(err)
	}
	c.outMu.Lock()
	defer c.outMu.Unlock()
	os.Stdout.Write(append(b, '\n'))
}

func (c *child) forwardEvents() {
	for ev := range c.n.Events() {
		o := childOut{Event: ev.Kind.String(), Member: ev.Member.Name, MemberID: ev.Member.ID, At: time.Now().UnixNano()}
		if ev.Err != nil {
			o.Err, o.Cause = ev.Err.Error(), causeOf(ev.Err)
		}
		c.write(o)
	}
}

func (c *child) onUndeliverable(u Undelivered) {
	c.mu.Lock()
	c.undelivered = append(c.undelivered, childUndelivered{To: u.To, Topic: u.Topic, Cause: causeOf(u.Err)})
	c.notifyLocked()
	c.mu.Unlock()
}

// count records numbered message m on topic; ordered says that each
// sender's numbers must arrive as 0, 1, 2...
func (c *child) count(topic string, m *Msg, ordered bool) int {
	var v int
	if err := m.Decode(&v); err != nil {
		v = -1
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	bySender := c.tally[topic]
	if bySender == nil {
		bySender = map[string]*stream{}
		c.tally[topic] = bySender
	}
	s := bySender[m.From]
	if s == nil {
		s = &stream{}
		bySender[m.From] = s
	}
	if ordered && v != s.N {
		s.Bad++
	}
	s.N++
	c.notifyLocked()
	return v
}

// register installs what every child serves:
//
//	echo  Handle: replies echoReply{By: this node, N: the request}
//	seq   Handle: counts one-way messages per sender, checking their order
//	bcast Handle: the same for broadcasts
//	news  Subscribe: the same for publishes
//	jobs  QueueSubscribe in group "workers": reports each job as an event
//	block Handle: reports the request, then blocks until the node closes
//	stall Handle: the same for one-way messages (it stops the sender's inbox)
func (c *child) register() error {
	n := c.n
	block := func(topic string) Handler {
		return func(ctx context.Context, m *Msg) (any, error) {
			c.write(childOut{Event: "blocked", Member: m.From, Topic: topic, At: time.Now().UnixNano()})
			<-ctx.Done()
			return nil, ctx.Err()
		}
	}
	var errs []error
	_, err := HandleFunc(n, "echo", func(ctx context.Context, m *Msg, v int) (echoReply, error) {
		return echoReply{By: c.name, N: v}, nil
	})
	errs = append(errs, err)
	for _, topic := range []string{"seq", "bcast"} {
		_, err = n.Handle(topic, func(ctx context.Context, m *Msg) (any, error) {
			c.count(topic, m, true)
			return nil, nil
		})
		errs = append(errs, err)
	}
	_, err = n.Subscribe("news", func(ctx context.Context, m *Msg) { c.count("news", m, true) })
	errs = append(errs, err)
	_, err = n.QueueSubscribe("jobs", "workers", func(ctx context.Context, m *Msg) {
		v := c.count("jobs", m, false)
		c.write(childOut{Event: "job", Member: m.From, N: v})
	})
	errs = append(errs, err)
	_, err = n.Handle("block", block("block"))
	errs = append(errs, err)
	_, err = n.Handle("stall", block("stall"))
	errs = append(errs, err)
	return errors.Join(errs...)
}

// do runs one command and writes its reply.
func (c *child) do(cmd childCmd) {
	timeout := 10 * time.Second
	if cmd.TimeoutMS > 0 && cmd.Op != "fill" {
		timeout = time.Duration(cmd.TimeoutMS) * time.Millisecond
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	n := c.n
	o := childOut{ID: cmd.ID}
	start := time.Now()
	var err error
	switch cmd.Op {
	case "sync":
		err = c.sync(ctx, cmd.Peers)
	case "send":
		for i := range cmd.N {
			if err = n.Send(ctx, cmd.To, cmd.Topic, cmd.Base+i); err != nil {
				break
			}
			o.N++
		}
		if err == nil {
			err = n.Flush(ctx)
		}
	case "fill":
		// Send until one send has waited TimeoutMS for room.
		payload := make([]byte, cmd.Size)
		for err == nil {
			short, cancel := context.WithTimeout(ctx, time.Duration(cmd.TimeoutMS)*time.Millisecond)
			if err = n.Send(short, cmd.To, cmd.Topic, payload); err == nil {
				o.N++
			}
			cancel()
		}
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
			err = nil
		}
	case "request":
		for i := range max(cmd.N, 1) {
			var r echoReply
			if err = n.Request(ctx, cmd.To, cmd.Topic, cmd.Base+i, &r); err != nil {
				break
			}
			if r.By != cmd.To || r.N != cmd.Base+i {
				err = fmt.Errorf("request %d to %s answered %+v", cmd.Base+i, cmd.To, r)
				break
			}
			o.N++
		}
	case "request_any":
		o.From = map[string]int{}
		for i := range cmd.N {
			var r echoReply
			if err = n.RequestAny(ctx, cmd.Topic, i, &r); err != nil {
				break
			}
			if r.N != i {
				err = fmt.Errorf("request %d answered %+v", i, r)
				break
			}
			o.From[r.By]++
			o.N++
		}
	case "publish", "broadcast":
		for i := range cmd.N {
			if cmd.Op == "publish" {
				err = n.Publish(ctx, cmd.Topic, cmd.Base+i)
			} else {
				err = n.Broadcast(ctx, cmd.Topic, cmd.Base+i)
			}
			if err != nil {
				break
			}
			o.N++
		}
		if err == nil {
			err = n.Flush(ctx)
		}
	case "gather":
		var res []Response
		res, err = n.Gather(ctx, cmd.Topic, 7)
		o.From = map[string]int{}
		for _, r := range res {
			var e echoReply
			switch {
			case r.Err != nil:
				o.Errs = append(o.Errs, r.From+": "+r.Err.Error())
			case r.Msg.Decode(&e) != nil || e.By != r.From || e.N != 7:
				o.Errs = append(o.Errs, fmt.Sprintf("%s answered %+v", r.From, e))
			default:
				o.From[r.From]++
			}
		}
	case "tally":
		// Wait until cmd.N messages have arrived on cmd.Topic, in all.
		err = c.waitLocked(ctx, func() bool {
			o.N = 0
			for _, s := range c.tally[cmd.Topic] {
				o.N += s.N
			}
			if o.N < cmd.N {
				return false
			}
			o.Tally = map[string]map[string]*stream{cmd.Topic: {}}
			for from, s := range c.tally[cmd.Topic] {
				cp := *s
				o.Tally[cmd.Topic][from] = &cp
			}
			return true
		})
		if err != nil {
			err = fmt.Errorf("%d of %d messages on %s arrived: %w", o.N, cmd.N, cmd.Topic, err)
		}
	case "undelivered":
		// Wait until at least cmd.N messages were reported undeliverable.
		err = c.waitLocked(ctx, func() bool {
			o.Undelivered = append([]childUndelivered(nil), c.undelivered...)
			o.N = len(o.Undelivered)
			return o.N >= cmd.N
		})
	default:
		err = fmt.Errorf("unknown op %q", cmd.Op)
	}
	if err != nil {
		o.Err, o.Cause = err.Error(), causeOf(err)
		var pe *PeerError
		if errors.As(err, &pe) {
			o.Peer = pe.Peer
		}
	}
	o.At, o.TookNS = time.Now().UnixNano(), int64(time.Since(start))
	c.write(o)
}

// waitLocked waits until cond, called with c.mu held, holds.
func (c *child) waitLocked(ctx context.Context, cond func() bool) error {
	for {
		c.mu.Lock()
		ok, ch := cond(), c.changed
		c.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// notifyLocked wakes waitLocked.
func (c *child) notifyLocked() {
	close(c.changed)
	c.changed = make(chan struct{})
}

// sync waits until this node has a ready link to every other of peers and
// knows all their registrations (see register).
func (c *child) sync(ctx context.Context, peers []string) error {
	for _, p := range peers {
		if p == c.name {
			continue
		}
		if err := c.n.WaitPeer(ctx, p); err != nil {
			return err
		}
	}
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		// No public call shows what the others want; peek like the
		// in-process tests do.
		echo := len(c.n.Servers("echo"))
		subs, groups := c.n.routes.publishTargets("news")
		_, jobs := c.n.routes.publishTargets("jobs")
		workers := 0
		if len(jobs) == 1 {
			c.n.routes.mu.RLock()
			workers = len(jobs[0].members)
			c.n.routes.mu.RUnlock()
		}
		if echo == len(peers) && len(subs) == len(peers)-1 && len(groups) == 0 && workers == len(peers) {
			return nil
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return fmt.Errorf("registrations not known: echo handlers %d, news subscribers %d, job workers %d of %d nodes: %w",
				echo, len(subs), workers, len(peers), ctx.Err())
		}
	}
}

// leave leaves the cluster and reports when Leave was called and how long it
// took.
func (c *child) leave(cmd childCmd) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	err := c.n.Leave(ctx)
	o := childOut{ID: cmd.ID, At: start.UnixNano(), TookNS: int64(time.Since(start))}
	if err != nil {
		o.Err, o.Cause = err.Error(), causeOf(err)
	}
	c.write(o)
}

// ---- the test's side ----

// procCluster is a set of child node processes and every line they wrote.
type procCluster struct {
	t     *testing.T
	key   auth.Key
	start time.Time
	procs []*proc

	mu      sync.Mutex
	lines   []procLine    // every event line, in arrival order
	changed chan struct{} // closed and replaced when lines or a child's state change
}

// procLine is an event line and the child that wrote it.
type procLine struct {
	p *proc
	childOut
}

// proc is one child node process.
type proc struct {
	c      *procCluster
	name   string
	id     string // member ID, from its ready line
	gossip string
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stderr lockedBuffer
	exited chan struct{} // closed once stdout hit EOF and Wait returned
	err    error         // Wait's result, once exited is closed

	// guarded by c.mu
	nextID int
	calls  map[int]chan childOut
	eof    bool // stdout closed: the process has ended
	endOK  bool // the test killed it or made it leave
}

// lockedBuffer collects a child's stderr.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

// tail returns the last few KiB written.
func (b *lockedBuffer) tail() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.b.String()
	if len(s) > 4096 {
		s = "..." + s[len(s)-4096:]
	}
	return s
}

// startProcCluster starts count child nodes p0, p1, ... (the others join p0)
// and waits until each has a link to every other and knows what they all
// serve. Every child is stopped when the test ends.
func startProcCluster(t *testing.T, count int) *procCluster {
	t.Helper()
	key, err := auth.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	c := &procCluster{t: t, key: key, start: time.Now(), changed: make(chan struct{})}
	t.Cleanup(c.stop)
	first := c.spawn(t, "p0", "")
	c.waitReady(t, first)
	for i := 1; i < count; i++ {
		c.spawn(t, fmt.Sprintf("p%d", i), first.gossip)
	}
	for _, p := range c.procs[1:] {
		c.waitReady(t, p)
	}
	var peers []string
	for _, p := range c.procs {
		peers = append(peers, p.name)
	}
	var calls []call1
	for _, p := range c.procs {
		calls = append(calls, p.start(t, childCmd{Op: "sync", Peers: peers}))
	}
	for _, r := range c.awaitAll(t, calls, 15*time.Second) {
		if r.Err != "" {
			t.Fatalf("%s: sync: %s", r.p.name, r.Err)
		}
	}
	return c
}

// spawn starts a child node process.
func (c *procCluster) spawn(t testing.TB, name, join string) *proc {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		exe = os.Args[0]
	}
	p := &proc{c: c, name: name, exited: make(chan struct{}), calls: map[int]chan childOut{}}
	p.cmd = exec.Command(exe)
	// Under -race a process sleeps a second before exiting, unless told not to.
	gorace := strings.TrimSpace(os.Getenv("GORACE") + " atexit_sleep_ms=0")
	p.cmd.Env = append(os.Environ(), childEnv+"=1", childNameEnv+"="+name, childJoinEnv+"="+join, "GORACE="+gorace)
	p.cmd.Stderr = &p.stderr
	if p.stdin, err = p.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	c.mu.Lock()
	c.procs = append(c.procs, p)
	c.mu.Unlock()
	go p.read(stdout)
	if _, err := fmt.Fprintf(p.stdin, "%s\n", hex.EncodeToString(c.key)); err != nil {
		t.Fatalf("%s: writing the key: %v", name, err)
	}
	return p
}

// read takes the child's output lines until it exits, then reaps it.
func (p *proc) read(stdout io.Reader) {
	c := p.c
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		var o childOut
		if err := json.Unmarshal(sc.Bytes(), &o); err != nil {
			fmt.Fprintf(&p.stderr, "[test] not a JSON line on stdout: %q\n", sc.Text())
			continue
		}
		c.mu.Lock()
		if o.Event != "" {
			c.lines = append(c.lines, procLine{p, o})
		} else if ch := p.calls[o.ID]; ch != nil {
			delete(p.calls, o.ID)
			ch <- o
		} else {
			fmt.Fprintf(&p.stderr, "[test] reply to no command: %q\n", sc.Text())
		}
		c.notifyLocked()
		c.mu.Unlock()
	}
	// Drain what a broken scanner left, so the child never blocks writing.
	io.Copy(io.Discard, stdout)
	err := p.cmd.Wait()
	c.mu.Lock()
	p.eof, p.err = true, err
	c.notifyLocked()
	c.mu.Unlock()
	close(p.exited)
}

func (c *procCluster) notifyLocked() {
	close(c.changed)
	c.changed = make(chan struct{})
}

// deadLocked returns a child that ended without the test asking for it.
func (c *procCluster) deadLocked() *proc {
	for _, p := range c.procs {
		if p.eof && !p.endOK {
			return p
		}
	}
	return nil
}

// call1 is a command on its way.
type call1 struct {
	p   *proc
	cmd childCmd
	ch  chan childOut
}

// start sends a command to the child without waiting for its reply.
func (p *proc) start(t testing.TB, cmd childCmd) call1 {
	c := p.c
	c.mu.Lock()
	p.nextID++
	cmd.ID = p.nextID
	ch := make(chan childOut, 1)
	p.calls[cmd.ID] = ch
	c.mu.Unlock()
	b, err := json.Marshal(cmd)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.stdin.Write(append(b, '\n')); err != nil {
		t.Fatalf("%s: writing %s: %v\nstderr:\n%s", p.name, b, err, p.stderr.tail())
	}
	return call1{p: p, cmd: cmd, ch: ch}
}

// reply1 is a command's reply and the child that sent it.
type reply1 struct {
	p *proc
	childOut
}

// await waits for the reply to a command.
func (c *procCluster) await(t testing.TB, k call1, d time.Duration) reply1 {
	t.Helper()
	timeout := time.NewTimer(d)
	defer timeout.Stop()
	for {
		c.mu.Lock()
		dead, ch := c.deadLocked(), c.changed
		eof := k.p.eof
		c.mu.Unlock()
		select {
		case o := <-k.ch:
			return reply1{k.p, o}
		default:
		}
		if dead != nil {
			t.Fatalf("%s exited (%v) while %s waited for %+v\nstderr:\n%s", dead.name, dead.err, k.p.name, k.cmd, dead.stderr.tail())
		}
		if eof {
			t.Fatalf("%s exited (%v) before answering %+v", k.p.name, k.p.err, k.cmd)
		}
		select {
		case o := <-k.ch:
			return reply1{k.p, o}
		case <-ch:
		case <-timeout.C:
			t.Fatalf("%s: no reply to %+v within %v\nstderr:\n%s", k.p.name, k.cmd, d, k.p.stderr.tail())
		}
	}
}

// awaitAll waits for the replies to several commands, all within d.
func (c *procCluster) awaitAll(t testing.TB, calls []call1, d time.Duration) []reply1 {
	t.Helper()
	deadline := time.Now().Add(d)
	out := make([]reply1, 0, len(calls))
	for _, k := range calls {
		out = append(out, c.await(t, k, time.Until(deadline)))
	}
	return out
}

// do sends a command and waits for its reply, failing the test if the
// command failed.
func (p *proc) do(t testing.TB, cmd childCmd, d time.Duration) reply1 {
	t.Helper()
	r := p.c.await(t, p.start(t, cmd), d)
	if r.Err != "" {
		t.Fatalf("%s: %+v: %s", p.name, cmd, r.Err)
	}
	return r
}

// waitLines waits until done holds for the event lines received so far.
func (c *procCluster) waitLines(t testing.TB, what string, d time.Duration, done func([]procLine) bool) {
	t.Helper()
	timeout := time.NewTimer(d)
	defer timeout.Stop()
	for {
		c.mu.Lock()
		ok := done(c.lines)
		dead, ch := c.deadLocked(), c.changed
		c.mu.Unlock()
		if ok {
			return
		}
		if dead != nil {
			t.Fatalf("%s exited (%v) while waiting for %s\nstderr:\n%s", dead.name, dead.err, what, dead.stderr.tail())
		}
		select {
		case <-ch:
		case <-timeout.C:
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
	}
}

// waitReady waits for a child's ready line.
func (c *procCluster) waitReady(t testing.TB, p *proc) {
	t.Helper()
	var ready procLine
	c.waitLines(t, p.name+" ready", 15*time.Second, func(lines []procLine) bool {
		for _, l := range lines {
			if l.p == p && l.Event == "ready" {
				ready = l
				return true
			}
		}
		return false
	})
	p.id, p.gossip = ready.MemberID, ready.Gossip
}

// expectEnd tells the cluster that p is about to end at the test's request.
func (p *proc) expectEnd() {
	p.c.mu.Lock()
	p.endOK = true
	p.c.mu.Unlock()
}

// stop ends every child: stdin closes, so each closes its node and exits;
// a child still running after a grace period is killed. A child that
// exited with an error or reported a data race fails the test.
func (c *procCluster) stop() {
	c.mu.Lock()
	procs := append([]*proc(nil), c.procs...)
	c.mu.Unlock()
	if c.t.Failed() {
		c.logMembership()
	}
	for _, p := range procs {
		p.stdin.Close()
	}
	grace := time.NewTimer(5 * time.Second)
	defer grace.Stop()
	late := false
	for _, p := range procs {
		if !late {
			select {
			case <-p.exited:
				continue
			case <-grace.C:
				late = true
			}
		}
		select {
		case <-p.exited:
		default:
			c.t.Errorf("%s did not exit within 5s of its stdin closing; killing it\nstderr:\n%s", p.name, p.stderr.tail())
			p.cmd.Process.Kill()
			<-p.exited
		}
	}
	for _, p := range procs {
		c.mu.Lock()
		expected := p.endOK
		c.mu.Unlock()
		stderr := p.stderr.tail()
		if strings.Contains(stderr, "DATA RACE") || strings.Contains(stderr, "panic:") {
			c.t.Errorf("%s reported a race or panic:\n%s", p.name, stderr)
		} else if p.err != nil && !expected {
			c.t.Errorf("%s exited with %v\nstderr:\n%s", p.name, p.err, stderr)
		}
	}
}

// logMembership logs the membership events every child reported, to
// explain a failure.
func (c *procCluster) logMembership() {
	c.mu.Lock()
	defer c.mu.Unlock()
	var b strings.Builder
	for _, l := range c.lines {
		switch l.Event {
		case "joined", "left", "failed", "updated":
			fmt.Fprintf(&b, "\n  +%v %s: %s %s", time.Duration(l.At-c.start.UnixNano()).Round(time.Microsecond), l.p.name, l.Event, l.MemberID)
			if l.Err != "" {
				fmt.Fprintf(&b, ": %s", l.Err)
			}
		}
	}
	c.t.Logf("membership events since the cluster started:%s", b.String())
}

// ---- the tests ----

// TestProcessPatterns runs five nodes as separate processes and exercises
// every messaging pattern between them.
func TestProcessPatterns(t *testing.T) {
	c := startProcCluster(t, 5)
	all := c.procs
	const (
		sends    = 2000 // one-way messages from every node to every other
		requests = 200  // requests from every node to every other
		pubs     = 500  // publishes from every node
		jobs     = 200  // queued jobs from every node
		bcasts   = 100  // broadcasts from every node
	)

	t.Run("send", func(t *testing.T) {
		var calls []call1
		for _, a := range all {
			for _, b := range all {
				if a != b {
					calls = append(calls, a.start(t, childCmd{Op: "send", To: b.name, Topic: "seq", N: sends}))
				}
			}
		}
		for _, r := range c.awaitAll(t, calls, 30*time.Second) {
			if r.Err != "" || r.N != sends {
				t.Fatalf("%s: send: sent %d of %d: %s", r.p.name, r.N, sends, r.Err)
			}
		}
		// Flush returned at every sender: everything was acknowledged, so
		// the receivers hold it all.
		for _, b := range all {
			r := b.do(t, childCmd{Op: "tally", Topic: "seq", N: sends * (len(all) - 1), TimeoutMS: 10000}, 15*time.Second)
			checkStreams(t, b.name, "seq", r.Tally["seq"], without(all, b), sends)
		}
	})

	t.Run("request", func(t *testing.T) {
		var calls []call1
		for _, a := range all {
			for _, b := range all {
				if a != b {
					calls = append(calls, a.start(t, childCmd{Op: "request", To: b.name, Topic: "echo", N: requests}))
				}
			}
		}
		for _, r := range c.awaitAll(t, calls, 30*time.Second) {
			if r.Err != "" || r.N != requests {
				t.Fatalf("%s: request: %d of %d answered: %s", r.p.name, r.N, requests, r.Err)
			}
		}
		// RequestAny takes the handlers in turn: 25 requests reach all 5.
		for _, a := range all {
			r := a.do(t, childCmd{Op: "request_any", Topic: "echo", N: 5 * len(all)}, 15*time.Second)
			if len(r.From) != len(all) {
				t.Errorf("%s: RequestAny reached %v, want all %d nodes", a.name, r.From, len(all))
			}
		}
		// Errors cross process boundaries with their meaning.
		r := c.await(t, all[0].start(t, childCmd{Op: "request", To: all[1].name, Topic: "nobody"}), 10*time.Second)
		if r.Cause != "no_responders" {
			t.Errorf("request to a topic nobody serves: %q (%s), want no_responders", r.Cause, r.Err)
		}
	})

	t.Run("gather", func(t *testing.T) {
		var calls []call1
		for _, a := range all {
			calls = append(calls, a.start(t, childCmd{Op: "gather", Topic: "echo"}))
		}
		for _, r := range c.awaitAll(t, calls, 15*time.Second) {
			if r.Err != "" || len(r.Errs) > 0 || len(r.From) != len(all) {
				t.Errorf("%s: gather: answers %v, errors %v %s; want one from each of %d nodes", r.p.name, r.From, r.Errs, r.Err, len(all))
			}
			for name, k := range r.From {
				if k != 1 {
					t.Errorf("%s: gather: %s answered %d times", r.p.name, name, k)
				}
			}
		}
	})

	t.Run("publish", func(t *testing.T) {
		var calls []call1
		for _, a := range all {
			calls = append(calls, a.start(t, childCmd{Op: "publish", Topic: "news", N: pubs}))
		}
		for _, r := range c.awaitAll(t, calls, 30*time.Second) {
			if r.Err != "" {
				t.Fatalf("%s: publish: %s", r.p.name, r.Err)
			}
		}
		// Every node subscribes, its own publishes included.
		for _, b := range all {
			r := b.do(t, childCmd{Op: "tally", Topic: "news", N: pubs * len(all), TimeoutMS: 10000}, 15*time.Second)
			checkStreams(t, b.name, "news", r.Tally["news"], all, pubs)
		}
	})

	t.Run("queue", func(t *testing.T) {
		var calls []call1
		for i, a := range all {
			calls = append(calls, a.start(t, childCmd{Op: "publish", Topic: "jobs", N: jobs, Base: i * 1000}))
		}
		for _, r := range c.awaitAll(t, calls, 30*time.Second) {
			if r.Err != "" {
				t.Fatalf("%s: publish jobs: %s", r.p.name, r.Err)
			}
		}
		total := jobs * len(all)
		type job struct {
			from string
			n    int
		}
		var got map[job][]string // job -> the members that took it
		c.waitLines(t, fmt.Sprintf("%d distinct jobs", total), 15*time.Second, func(lines []procLine) bool {
			got = map[job][]string{}
			for _, l := range lines {
				if l.Event == "job" {
					k := job{l.Member, l.N}
					got[k] = append(got[k], l.p.name)
				}
			}
			return len(got) == total
		})
		perMember := map[string]int{}
		for k, members := range got {
			if len(members) != 1 {
				t.Errorf("job %d from %s went to %v, want exactly one member", k.n, k.from, members)
			}
			want := 0
			for i, a := range all {
				if a.name == k.from {
					want = i * 1000
				}
			}
			if k.n < want || k.n >= want+jobs {
				t.Errorf("job %d from %s: never published", k.n, k.from)
			}
			perMember[members[0]]++
		}
		// The members of a group take turns.
		for _, a := range all {
			if perMember[a.name] < total/(2*len(all)) {
				t.Errorf("%s took %d of %d jobs: %v", a.name, perMember[a.name], total, perMember)
			}
		}
		t.Logf("jobs per member: %v", perMember)
	})

	t.Run("broadcast", func(t *testing.T) {
		var calls []call1
		for _, a := range all {
			calls = append(calls, a.start(t, childCmd{Op: "broadcast", Topic: "bcast", N: bcasts}))
		}
		for _, r := range c.awaitAll(t, calls, 30*time.Second) {
			if r.Err != "" {
				t.Fatalf("%s: broadcast: %s", r.p.name, r.Err)
			}
		}
		for _, b := range all {
			r := b.do(t, childCmd{Op: "tally", Topic: "bcast", N: bcasts * len(all), TimeoutMS: 10000}, 15*time.Second)
			checkStreams(t, b.name, "bcast", r.Tally["bcast"], all, bcasts)
		}
	})

	t.Run("undeliverable", func(t *testing.T) {
		// Nothing so far was undeliverable.
		for _, a := range all {
			if r := a.do(t, childCmd{Op: "undelivered"}, 10*time.Second); r.N != 0 {
				t.Errorf("%s reported undeliverable messages: %+v", a.name, r.Undelivered)
			}
		}
		// A one-way message nobody handles comes back to the sender's hook.
		a, b := all[0], all[1]
		a.do(t, childCmd{Op: "send", To: b.name, Topic: "nobody", N: 1}, 10*time.Second)
		r := a.do(t, childCmd{Op: "undelivered", N: 1, TimeoutMS: 5000}, 10*time.Second)
		if u := r.Undelivered[0]; r.N != 1 || u.To != b.id || u.Topic != "nobody" || u.Cause != "no_responders" {
			t.Errorf("undeliverable reports %+v, want one for %s on nobody, no_responders", r.Undelivered, b.id)
		}
	})
}

// without returns procs without p.
func without(procs []*proc, p *proc) []*proc {
	var out []*proc
	for _, q := range procs {
		if q != p {
			out = append(out, q)
		}
	}
	return out
}

// checkStreams checks that receiver got exactly want numbered messages, in
// order, from each of senders and from nobody else.
func checkStreams(t *testing.T, receiver, topic string, got map[string]*stream, senders []*proc, want int) {
	t.Helper()
	for _, s := range senders {
		st := got[s.name]
		if st == nil || st.N != want || st.Bad != 0 {
			t.Errorf("%s: %s from %s: %+v, want %d in order", receiver, topic, s.name, st, want)
		}
	}
	if len(got) != len(senders) {
		t.Errorf("%s: %s from %d senders, want %d: %v", receiver, topic, len(got), len(senders), got)
	}
}

// TestProcessKill kills one of five node processes with SIGKILL and checks
// what the others report, and how fast: EventFailed at every survivor,
// requests in flight failing with ErrPeerFailed, unacknowledged one-way
// messages reported undeliverable. Then another node leaves gracefully and
// the rest report EventLeft, once.
func TestProcessKill(t *testing.T) {
	c := startProcCluster(t, 5)
	victim, leaver := c.procs[3], c.procs[4]
	survivors := without(c.procs, victim)
	stayers := without(survivors, leaver)

	t.Run("kill", func(t *testing.T) {
		// A request from every survivor is in the victim's blocked handler.
		var inFlight []call1
		for _, s := range survivors {
			inFlight = append(inFlight, s.start(t, childCmd{Op: "request", To: victim.name, Topic: "block", TimeoutMS: 30000}))
		}
		c.waitLines(t, "every survivor's request in the victim's handler", 10*time.Second, func(lines []procLine) bool {
			from := map[string]bool{}
			for _, l := range lines {
				if l.p == victim && l.Event == "blocked" && l.Topic == "block" {
					from[l.Member] = true
				}
			}
			return len(from) == len(survivors)
		})
		// One survivor fills its queue to the victim: the victim's handler
		// blocks on the first message, so the rest wait unacknowledged.
		// (This comes after the requests, which would wait behind it.)
		filler := stayers[1]
		fill := filler.do(t, childCmd{Op: "fill", To: victim.name, Topic: "stall", Size: 1024, TimeoutMS: 300}, 15*time.Second)
		if fill.N == 0 {
			t.Fatal("fill sent nothing")
		}

		victim.expectEnd()
		killed := time.Now()
		if err := victim.cmd.Process.Kill(); err != nil {
			t.Fatal(err)
		}

		// Every survivor reports the victim failed.
		ends := endsOf(c, victim, survivors)
		c.waitLines(t, "EventFailed for the victim at every survivor", 10*time.Second, func(lines []procLine) bool {
			return len(ends(lines)) == len(survivors)
		})
		c.mu.Lock()
		failed := ends(c.lines)
		c.mu.Unlock()
		var detect []time.Duration
		for _, s := range survivors {
			l := failed[s.name]
			d := time.Duration(l.At - killed.UnixNano())
			detect = append(detect, d)
			if l.Event != "failed" || l.Cause != "peer_failed" || l.MemberID != victim.id {
				t.Errorf("%s reported the victim's end as %s %s (%s), want failed with ErrPeerFailed", s.name, l.Event, l.MemberID, l.Err)
			}
			if d > 5*time.Second {
				t.Errorf("%s noticed the kill after %v", s.name, d)
			}
			t.Logf("%s: %s after %v: %s", s.name, l.Event, d.Round(time.Microsecond), l.Err)
		}

		// The requests in flight failed with ErrPeerFailed, naming the victim.
		var reqFail []time.Duration
		for _, r := range c.awaitAll(t, inFlight, 10*time.Second) {
			d := time.Duration(r.At - killed.UnixNano())
			reqFail = append(reqFail, d)
			if r.Cause != "peer_failed" || r.Peer != victim.id {
				t.Errorf("%s: request in flight ended with %q (%s), peer %q; want peer_failed for %s", r.p.name, r.Cause, r.Err, r.Peer, victim.id)
			}
			if d > 5*time.Second {
				t.Errorf("%s: request in flight failed after %v", r.p.name, d)
			}
		}

		// The filler's unacknowledged one-way messages went to its hook
		// (before EventFailed was emitted).
		u := filler.do(t, childCmd{Op: "undelivered"}, 10*time.Second)
		if u.N == 0 || u.N >= fill.N {
			t.Errorf("%s sent %d one-way messages to the victim and reported %d undeliverable; want some but not all (the first ones were acknowledged)", filler.name, fill.N, u.N)
		}
		for _, x := range u.Undelivered {
			if x.To != victim.id || x.Topic != "stall" || x.Cause != "peer_failed" {
				t.Errorf("undeliverable report %+v, want to %s on stall with ErrPeerFailed", x, victim.id)
				break
			}
		}
		for _, s := range survivors {
			if s == filler {
				continue
			}
			if r := s.do(t, childCmd{Op: "undelivered"}, 10*time.Second); r.N != 0 {
				t.Errorf("%s reported undeliverable messages: %+v", s.name, r.Undelivered)
			}
		}

		// The survivors carry on without the victim: it is unknown, and
		// nobody counts on its handlers any more.
		if r := c.await(t, survivors[0].start(t, childCmd{Op: "send", To: victim.name, Topic: "seq", N: 1}), 10*time.Second); r.Cause != "unknown_node" {
			t.Errorf("send to the killed node: %q (%s), want unknown_node", r.Cause, r.Err)
		}
		var gathers []call1
		for _, s := range survivors {
			gathers = append(gathers, s.start(t, childCmd{Op: "gather", Topic: "echo"}))
		}
		for _, r := range c.awaitAll(t, gathers, 15*time.Second) {
			if r.Err != "" || len(r.Errs) > 0 || len(r.From) != len(survivors) || r.From[victim.name] != 0 {
				t.Errorf("%s: gather after the kill: %v, errors %v %s; want the %d survivors", r.p.name, r.From, r.Errs, r.Err, len(survivors))
			}
		}
		t.Logf("kill noticed by %d survivors after max %v %v; requests in flight failed after max %v",
			len(survivors), maxDur(detect), roundAll(detect), maxDur(reqFail))
		t.Logf("%s: %d one-way messages sent to the victim, %d reported undeliverable", filler.name, fill.N, u.N)
		checkOneEnd(t, c, victim, survivors)
	})

	t.Run("leave", func(t *testing.T) {
		leaver.expectEnd()
		lv := leaver.start(t, childCmd{Op: "leave"})
		ends := endsOf(c, leaver, stayers)
		c.waitLines(t, "EventLeft for the leaver at every stayer", 10*time.Second, func(lines []procLine) bool {
			return len(ends(lines)) == len(stayers)
		})
		c.mu.Lock()
		left := ends(c.lines)
		c.mu.Unlock()
		lr := c.await(t, lv, 10*time.Second)
		if lr.Err != "" {
			t.Errorf("Leave: %s", lr.Err)
		}
		var seen []time.Duration
		for _, s := range stayers {
			l := left[s.name]
			d := time.Duration(l.At - lr.At)
			seen = append(seen, d)
			if l.Event != "left" || l.Cause != "peer_left" || l.MemberID != leaver.id {
				t.Errorf("%s reported the leaver's end as %s %s (%s), want left with ErrPeerLeft", s.name, l.Event, l.MemberID, l.Err)
			}
			if d > 5*time.Second {
				t.Errorf("%s saw the leave after %v", s.name, d)
			}
		}
		select {
		case <-leaver.exited:
			if leaver.err != nil {
				t.Errorf("%s exited with %v after leaving", leaver.name, leaver.err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("%s still runs 10s after leaving", leaver.name)
		}
		t.Logf("leave seen by %d stayers after max %v %v; Leave took %v",
			len(stayers), maxDur(seen), roundAll(seen), time.Duration(lr.TookNS).Round(time.Microsecond))

		var gathers []call1
		for _, s := range stayers {
			gathers = append(gathers, s.start(t, childCmd{Op: "gather", Topic: "echo"}))
		}
		for _, r := range c.awaitAll(t, gathers, 15*time.Second) {
			if r.Err != "" || len(r.Errs) > 0 || len(r.From) != len(stayers) {
				t.Errorf("%s: gather after the leave: %v, errors %v %s; want the %d stayers", r.p.name, r.From, r.Errs, r.Err, len(stayers))
			}
		}
		checkOneEnd(t, c, leaver, stayers)
	})
}

// endsOf returns a function that finds, in lines, the first EventLeft or
// EventFailed about gone at each of observers, by observer name.
func endsOf(c *procCluster, gone *proc, observers []*proc) func([]procLine) map[string]procLine {
	return func(lines []procLine) map[string]procLine {
		out := map[string]procLine{}
		for _, l := range lines {
			if l.Member != gone.name || l.Event != "failed" && l.Event != "left" || !slices.Contains(observers, l.p) {
				continue
			}
			if _, dup := out[l.p.name]; !dup {
				out[l.p.name] = l
			}
		}
		return out
	}
}

// checkOneEnd checks that after the first EventLeft or EventFailed about
// gone, none of observers reported anything more about it: a process that
// died or left does not come back under the same member ID.
func checkOneEnd(t *testing.T, c *procCluster, gone *proc, observers []*proc) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, o := range observers {
		var after []string
		ended := false
		for _, l := range c.lines {
			if l.p != o || l.Member != gone.name {
				continue
			}
			if ended {
				after = append(after, fmt.Sprintf("%s (%s)", l.Event, l.Err))
			}
			ended = ended || l.Event == "failed" || l.Event == "left"
		}
		if len(after) > 0 {
			t.Errorf("%s reported %s again after it ended: %s", o.name, gone.name, strings.Join(after, ", "))
		}
	}
}

func maxDur(ds []time.Duration) time.Duration {
	var m time.Duration
	for _, d := range ds {
		m = max(m, d)
	}
	return m.Round(time.Microsecond)
}

func roundAll(ds []time.Duration) []time.Duration {
	out := append([]time.Duration(nil), ds...)
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	for i := range out {
		out[i] = out[i].Round(time.Microsecond)
	}
	return out
}
