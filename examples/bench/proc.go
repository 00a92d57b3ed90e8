package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// childArg is the hidden first argument that turns this program into a child.
const childArg = "bench-child"

// params is what a child needs to know besides the key. It travels as one
// JSON argument: nothing in it is secret.
type params struct {
	Size  int           `json:"size,omitempty"`
	Warm  time.Duration `json:"warm,omitempty"`
	Dur   time.Duration `json:"dur,omitempty"`
	Addr  string        `json:"addr,omitempty"`  // where to connect: TCP address, NATS URL or gossip address to join
	Name  string        `json:"name,omitempty"`  // conclave: own node name
	Peer  string        `json:"peer,omitempty"`  // conclave: the node to talk to
	Depth int           `json:"depth,omitempty"` // requests in flight (pipelined)
}

// report is one JSON line a child writes on its stdout.
type report struct {
	Ev      string  `json:"ev"`
	Addr    string  `json:"addr,omitempty"`
	Count   int64   `json:"count,omitempty"`
	Secs    float64 `json:"secs,omitempty"`
	Dropped int64   `json:"dropped,omitempty"`
	P50     float64 `json:"p50,omitempty"` // nanoseconds
	P90     float64 `json:"p90,omitempty"`
	P99     float64 `json:"p99,omitempty"`
	Kind    string  `json:"kind,omitempty"` // conclave event kind
	Name    string  `json:"name,omitempty"` // conclave event member
	T       int64   `json:"t,omitempty"`    // wall clock, UnixNano
	Err     string  `json:"err,omitempty"`
}

// spec describes a child to start.
type spec struct {
	role string
	p    params
	cpu  int    // >= 0: run under `taskset -c cpu`
	key  []byte // written as hex on the first stdin line; nil writes an empty line
}

// child is a running child process of this program (or the NATS server).
type child struct {
	name    string
	cmd     *exec.Cmd
	stopSig os.Signal // sent by stop (besides closing stdin); for processes that ignore stdin
	in      io.WriteCloser
	done    chan struct{} // closed when the process has been waited for
	err     error         // Wait's result, valid after done

	mu     sync.Mutex
	queue  []report      // lines not yet taken by expect
	eof    bool          // stdout is closed
	notify chan struct{} // signalled when queue or eof changes
	events []report      // "event" lines, kept apart
	stderr tailBuffer
}

// self is the binary to re-execute for children. /proc/self/exe cannot be
// handed to taskset: it would resolve to taskset itself.
var self = func() string {
	p, err := os.Executable()
	if err != nil {
		return "/proc/self/exe"
	}
	return p
}()

// tasksetPath is where taskset lives; empty when it is missing.
var tasksetPath = func() string {
	p, err := exec.LookPath("taskset")
	if err != nil {
		return ""
	}
	return p
}()

// children tracks every live child so that an interrupted run kills them all.
var children struct {
	sync.Mutex
	m map[*child]struct{}
}

func track(c *child, on bool) {
	children.Lock()
	defer children.Unlock()
	if children.m == nil {
		children.m = map[*child]struct{}{}
	}
	if on {
		children.m[c] = struct{}{}
	} else {
		delete(children.m, c)
	}
}

// killAll kills every child still running.
func killAll() {
	children.Lock()
	list := make([]*child, 0, len(children.m))
	for c := range children.m {
		list = append(list, c)
	}
	children.Unlock()
	for _, c := range list {
		c.kill()
	}
}

// spawn starts this program as a child in the given role. The child dies with
// ctx, with its parent (Pdeathsig), and when its stdin closes.
func spawn(ctx context.Context, s spec) (*child, error) {
	pj, err := json.Marshal(s.p)
	if err != nil {
		return nil, err
	}
	argv := []string{self, childArg, s.role, string(pj)}
	if s.cpu >= 0 && tasksetPath != "" {
		argv = append([]string{tasksetPath, "-c", strconv.Itoa(s.cpu)}, argv...)
	}
	name := s.role
	if s.p.Name != "" {
		name += " " + s.p.Name
	}
	c, err := startProc(ctx, name, argv, true)
	if err != nil {
		return nil, err
	}
	line := ""
	if s.key != nil {
		line = fmt.Sprintf("%x", s.key)
	}
	if _, err := io.WriteString(c.in, line+"\n"); err != nil {
		c.kill()
		return nil, fmt.Errorf("%s: write key: %w", s.role, err)
	}
	return c, nil
}

// startProc starts argv with piped stdin and JSON-lines stdout. When ctx
// ends the process is killed; one of our own children (a Go program) first
// gets SIGQUIT, so that its stderr shows where it was stuck.
func startProc(ctx context.Context, name string, argv []string, ours bool) (*child, error) {
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.WaitDelay = 3 * time.Second
	if ours {
		cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGQUIT) }
	}
	c := &child{name: name, cmd: cmd, done: make(chan struct{}), notify: make(chan struct{}, 1)}
	cmd.Stderr = &c.stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	c.in = in
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	track(c, true)
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 64*1024), 1<<20)
		for sc.Scan() {
			var r report
			if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
				c.stderr.Write([]byte("stdout: " + sc.Text() + "\n"))
				continue
			}
			c.mu.Lock()
			if r.Ev == "event" {
				c.events = append(c.events, r)
			} else {
				c.queue = append(c.queue, r)
			}
			c.mu.Unlock()
			c.signal()
		}
		// Keep draining so the child never blocks on a full pipe.
		_, _ = io.Copy(io.Discard, out)
		c.mu.Lock()
		c.eof = true
		c.mu.Unlock()
		c.signal()
	}()
	go func() {
		<-readDone
		c.err = cmd.Wait()
		track(c, false)
		close(c.done)
	}()
	return c, nil
}

// send writes one command line to the child's stdin.
func (c *child) send(line string) error {
	_, err := io.WriteString(c.in, line+"\n")
	return err
}

// expect waits for the next line with the given ev, skipping others. An
// "error" line from the child, its exit, or ctx ends the wait with an error.
func (c *child) expect(ctx context.Context, ev string) (report, error) {
	for {
		c.mu.Lock()
		var r report
		have, eof := len(c.queue) > 0, c.eof
		if have {
			r = c.queue[0]
			c.queue = c.queue[1:]
		}
		c.mu.Unlock()
		switch {
		case have && r.Ev == "error":
			return r, fmt.Errorf("%s: %s%s", c.name, r.Err, c.stderrTail())
		case have && r.Ev == ev:
			return r, nil
		case have:
			continue
		case eof:
			<-c.done
			return report{}, fmt.Errorf("%s exited (%v) before %q%s", c.name, c.err, ev, c.stderrTail())
		}
		select {
		case <-c.notify:
		case <-ctx.Done():
			err := fmt.Errorf("%s: waiting for %q: %w", c.name, ev, context.Cause(ctx))
			if errors.Is(context.Cause(ctx), context.DeadlineExceeded) {
				err = fmt.Errorf("%w%s", err, c.dumpStacks())
			}
			return report{}, err
		}
	}
}

func (c *child) signal() {
	select {
	case c.notify <- struct{}{}:
	default:
	}
}

// eventsSnapshot returns the events received so far.
func (c *child) eventsSnapshot() []report {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]report(nil), c.events...)
}

// stop asks the child to finish (closing its stdin) and waits; a child that
// has not exited after grace is killed. It returns the child's exit error.
func (c *child) stop(grace time.Duration) error {
	_ = c.in.Close()
	if c.stopSig != nil {
		_ = c.cmd.Process.Signal(c.stopSig)
	}
	select {
	case <-c.done:
	case <-time.After(grace):
		c.kill()
		<-c.done
		return fmt.Errorf("%s did not exit within %v after its stdin closed; killed%s", c.name, grace, c.stderrTail())
	}
	if c.err != nil {
		return fmt.Errorf("%s: %v%s", c.name, c.err, c.stderrTail())
	}
	return nil
}

// kill kills the child and waits for it.
func (c *child) kill() {
	if c.cmd.Process != nil {
		_ = c.cmd.Process.Kill()
	}
	_ = c.in.Close()
	<-c.done
}

func (c *child) pid() int { return c.cmd.Process.Pid }

func (c *child) stderrTail() string {
	t := strings.TrimSpace(c.stderr.String())
	if t == "" {
		return ""
	}
	if len(t) > 4096 {
		t = "..." + t[len(t)-4096:]
	}
	return "\n  " + c.name + " stderr: " + strings.ReplaceAll(t, "\n", "\n    ")
}

// dumpStacks makes a child that seems stuck print its goroutines (SIGQUIT),
// saves its stderr to a file and says where.
func (c *child) dumpStacks() string {
	if c.stopSig != nil { // not one of ours
		return c.stderrTail()
	}
	_ = c.cmd.Process.Signal(syscall.SIGQUIT) // ctx's end has sent it already, unless ctx is a parent's
	select {
	case <-c.done:
	case <-time.After(5 * time.Second):
	}
	f, err := os.CreateTemp("", "conclave-bench-stuck-*.txt")
	if err != nil {
		return c.stderrTail()
	}
	defer f.Close()
	_, _ = io.WriteString(f, c.stderr.String())
	return fmt.Sprintf("\n  %s stopped answering; its goroutines (SIGQUIT) are in %s", c.name, f.Name())
}

// tailBuffer keeps the last 1 MiB written to it.
type tailBuffer struct {
	mu  sync.Mutex
	buf []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - 1<<20; over > 0 {
		t.buf = t.buf[over:]
		if i := bytes.IndexByte(t.buf, '\n'); i >= 0 {
			t.buf = t.buf[i+1:]
		}
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}

// group stops or kills a set of children together.
type group []*child

// stopAll stops every child (in reverse start order) and returns the first error.
func (g group) stopAll(grace time.Duration) error {
	var errs []error
	for i := len(g) - 1; i >= 0; i-- {
		if g[i] == nil {
			continue
		}
		if err := g[i].stop(grace); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (g group) killAll() {
	for _, c := range g {
		if c != nil {
			c.kill()
		}
	}
}

// rssKiB reads VmRSS of a process from /proc/PID/status.
func rssKiB(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			f := strings.Fields(rest)
			if len(f) < 1 {
				break
			}
			return strconv.ParseInt(f[0], 10, 64)
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
}
