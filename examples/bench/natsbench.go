package main

// The NATS anchor: a nats-server process (built from the module this program
// requires, see the tool directive in go.mod) and nats.go clients in their
// own processes.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
)

const (
	natsOneWaySubject = "bench.oneway"
	natsRRSubject     = "bench.rr"
	// Pending limits of the receiving subscriptions: far above what a run
	// queues, so that nats.go never drops a message as a slow consumer.
	natsPendingMsgs  = 50_000_000
	natsPendingBytes = 4 << 30
)

func init() {
	roles["nats-sub"] = natsSub
	roles["nats-pub"] = natsPub
	roles["nats-reply"] = natsReply
	roles["nats-req"] = natsReq
	roles["nats-pipe"] = natsPipe
}

// natsServerBin is set by -nats-server or built on first use.
var natsServerBin struct {
	sync.Mutex
	path string
	tmp  string // a directory to remove at exit, if we built it
}

// natsServerPath returns the nats-server binary, building it from the
// required module version (go build inside this module) the first time.
func natsServerPath(ctx context.Context) (string, error) {
	natsServerBin.Lock()
	defer natsServerBin.Unlock()
	if natsServerBin.path != "" {
		return natsServerBin.path, nil
	}
	dir, err := benchModuleDir()
	if err != nil {
		return "", fmt.Errorf("cannot build nats-server (%v); pass -nats-server PATH", err)
	}
	tmp, err := os.MkdirTemp("", "conclave-bench-nats-")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(tmp, "nats-server")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/nats-io/nats-server/v2")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		os.RemoveAll(tmp)
		return "", fmt.Errorf("go build nats-server in %s: %v\n%s", dir, err, out)
	}
	natsServerBin.path, natsServerBin.tmp = bin, tmp
	return bin, nil
}

func cleanupNATSBinary() {
	natsServerBin.Lock()
	defer natsServerBin.Unlock()
	if natsServerBin.tmp != "" {
		os.RemoveAll(natsServerBin.tmp)
		natsServerBin.tmp, natsServerBin.path = "", ""
	}
}

// benchModuleDir finds the directory of this module: the working directory
// (or a parent) when it holds our go.mod, else the directory this file was
// compiled from.
func benchModuleDir() (string, error) {
	const mod = "module github.com/seed0811993b/conclave/examples/bench"
	isOurs := func(dir string) bool {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		return err == nil && strings.Contains(string(b), mod+"\n")
	}
	if wd, err := os.Getwd(); err == nil {
		for d := wd; ; d = filepath.Dir(d) {
			if isOurs(d) {
				return d, nil
			}
			if filepath.Dir(d) == d {
				break
			}
		}
		if d := filepath.Join(wd, "examples", "bench"); isOurs(d) {
			return d, nil
		}
	}
	if _, file, _, ok := runtime.Caller(0); ok && isOurs(filepath.Dir(file)) {
		return filepath.Dir(file), nil
	}
	return "", errors.New("examples/bench/go.mod not found from the working directory")
}

// natsServer is a running nats-server process.
type natsServer struct {
	*child
	url     string // nats://127.0.0.1:PORT
	monitor string // http://127.0.0.1:PORT
}

// startNATS starts a nats-server on random loopback ports and waits for its
// ports file.
func startNATS(ctx context.Context) (*natsServer, error) {
	bin, err := natsServerPath(ctx)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "conclave-bench-nats-ports-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	c, err := startProc(ctx, "nats-server", []string{bin, "-a", "127.0.0.1", "-p", "-1", "-m", "-1", "--ports_file_dir", dir}, false)
	if err != nil {
		return nil, err
	}
	c.stopSig = syscall.SIGTERM
	pf := filepath.Join(dir, fmt.Sprintf("nats-server_%d.ports", c.pid()))
	deadline := time.Now().Add(10 * time.Second)
	for {
		if b, err := os.ReadFile(pf); err == nil && len(b) > 0 {
			var ports struct{ Nats, Monitoring []string }
			if err := json.Unmarshal(b, &ports); err == nil && len(ports.Nats) > 0 && len(ports.Monitoring) > 0 {
				return &natsServer{child: c, url: ports.Nats[0], monitor: ports.Monitoring[0]}, nil
			}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			c.kill()
			return nil, fmt.Errorf("nats-server wrote no ports file within 10s%s", c.stderrTail())
		}
		select {
		case <-c.done:
			return nil, fmt.Errorf("nats-server exited: %v%s", c.err, c.stderrTail())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// slowConsumers reads the server's count of connections it cut off as slow
// consumers.
func (s *natsServer) slowConsumers() (int64, error) {
	resp, err := http.Get(s.monitor + "/varz")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var v struct {
		SlowConsumers int64 `json:"slow_consumers"`
	}
	err = json.NewDecoder(bufio.NewReader(resp.Body)).Decode(&v)
	return v.SlowConsumers, err
}

// natsConnect connects and counts asynchronous errors (slow consumer).
func natsConnect(e *env, name string, asyncErrs *atomic.Int64) (*nats.Conn, error) {
	return nats.Connect(e.p.Addr,
		nats.Name(name),
		nats.NoReconnect(),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			asyncErrs.Add(1)
			fmt.Fprintf(os.Stderr, "%s: async error: %v\n", name, err)
		}))
}

func natsSub(e *env) error {
	var asyncErrs atomic.Int64
	nc, err := natsConnect(e, "bench-sub", &asyncErrs)
	if err != nil {
		return err
	}
	defer nc.Close()
	m := newMeter()
	sub, err := nc.Subscribe(natsOneWaySubject, func(*nats.Msg) { m.add(1) })
	if err != nil {
		return err
	}
	if err := sub.SetPendingLimits(natsPendingMsgs, natsPendingBytes); err != nil {
		return err
	}
	if err := nc.Flush(); err != nil {
		return err
	}
	e.emit(report{Ev: "ready"})
	m.measure(e, func(r *report) {
		d, _ := sub.Dropped()
		r.Dropped = int64(d) + asyncErrs.Load()
	})
	e.waitStop()
	return nil
}

func natsPub(e *env) error {
	var asyncErrs atomic.Int64
	nc, err := natsConnect(e, "bench-pub", &asyncErrs)
	if err != nil {
		return err
	}
	defer nc.Close()
	var stopped atomic.Bool
	go func() { e.waitStop(); stopped.Store(true) }()
	p := make([]byte, e.p.Size)
	e.emit(report{Ev: "ready"})
	t0 := time.Now()
	var n int64
	for !stopped.Load() {
		for range 64 {
			if err := nc.Publish(natsOneWaySubject, p); err != nil {
				return err
			}
		}
		n += 64
	}
	secs := time.Since(t0).Seconds()
	if err := nc.FlushTimeout(30 * time.Second); err != nil {
		return err
	}
	e.emit(report{Ev: "done", Count: n, Secs: secs})
	return nil
}

func natsReply(e *env) error {
	var asyncErrs atomic.Int64
	nc, err := natsConnect(e, "bench-reply", &asyncErrs)
	if err != nil {
		return err
	}
	defer nc.Close()
	sub, err := nc.Subscribe(natsRRSubject, func(m *nats.Msg) { _ = m.Respond(m.Data) })
	if err != nil {
		return err
	}
	if err := sub.SetPendingLimits(natsPendingMsgs, natsPendingBytes); err != nil {
		return err
	}
	if err := nc.Flush(); err != nil {
		return err
	}
	e.emit(report{Ev: "ready"})
	e.waitStop()
	if n := asyncErrs.Load(); n > 0 {
		return fmt.Errorf("%d asynchronous errors (slow consumer?)", n)
	}
	return nil
}

func natsReq(e *env) error {
	var asyncErrs atomic.Int64
	nc, err := natsConnect(e, "bench-req", &asyncErrs)
	if err != nil {
		return err
	}
	defer nc.Close()
	p := make([]byte, e.p.Size)
	res, err := runSequential(e, func() error {
		_, err := nc.Request(natsRRSubject, p, 5*time.Second)
		return err
	})
	if err != nil {
		return err
	}
	e.emit(res)
	return nil
}

func natsPipe(e *env) error {
	var asyncErrs atomic.Int64
	nc, err := natsConnect(e, "bench-pipe", &asyncErrs)
	if err != nil {
		return err
	}
	defer nc.Close()
	p := make([]byte, e.p.Size)
	res, err := runPipelined(e, func(ctx context.Context, _ int) error {
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		_, err := nc.RequestWithContext(ctx, natsRRSubject, p)
		return err
	})
	if err != nil {
		return err
	}
	e.emit(res)
	return nil
}
