package main

import (
	"bufio"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// roles maps a child role to its body. conclave.go adds its roles in init.
var roles = map[string]func(*env) error{}

// env is what a child role works with.
type env struct {
	p    params
	key  []byte
	cmds chan string // stdin lines after the key; closed at EOF
	// stop is cancelled at the first "stop" line or at EOF on stdin.
	stop       context.Context
	cancelStop context.CancelFunc

	outMu sync.Mutex
	out   *bufio.Writer
}

// emit writes one report line on stdout.
func (e *env) emit(r report) {
	b, _ := json.Marshal(r)
	e.outMu.Lock()
	defer e.outMu.Unlock()
	e.out.Write(b)
	e.out.WriteByte('\n')
	e.out.Flush()
}

// childMain runs a child role: os.Args is [exe, childArg, role, paramsJSON].
func childMain(args []string) int {
	if len(args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: bench-child ROLE PARAMS")
		return 2
	}
	body, ok := roles[args[0]]
	if !ok {
		fmt.Fprintf(os.Stderr, "bench-child: unknown role %q\n", args[0])
		return 2
	}
	e := &env{cmds: make(chan string, 16), out: bufio.NewWriter(os.Stdout)}
	if err := json.Unmarshal([]byte(args[1]), &e.p); err != nil {
		fmt.Fprintf(os.Stderr, "bench-child: params: %v\n", err)
		return 2
	}
	in := bufio.NewReader(os.Stdin)
	line, err := in.ReadString('\n')
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench-child: reading the key line: %v\n", err)
		return 2
	}
	if line = strings.TrimSpace(line); line != "" {
		if e.key, err = hex.DecodeString(line); err != nil {
			fmt.Fprintln(os.Stderr, "bench-child: the key line is not hex")
			return 2
		}
	}
	e.stop, e.cancelStop = context.WithCancel(context.Background())
	go func() {
		defer close(e.cmds)
		defer e.cancelStop()
		for {
			l, err := in.ReadString('\n')
			if l = strings.TrimSpace(l); l == "stop" {
				e.cancelStop()
			} else if l != "" {
				e.cmds <- l
			}
			if err != nil {
				// The parent is gone or done with us: whatever the role is
				// doing, do not outlive it for long.
				time.AfterFunc(5*time.Second, func() {
					fmt.Fprintln(os.Stderr, "bench-child: still running 5s after stdin closed; exiting")
					os.Exit(3)
				})
				return
			}
		}
	}()
	if dir := os.Getenv("CONCLAVE_BENCH_CPUPROFILE"); dir != "" {
		// Profiling aid: each child writes its CPU profile into dir.
		f, err := os.CreateTemp(dir, args[0]+"-*.pprof")
		if err == nil && pprof.StartCPUProfile(f) == nil {
			defer func() { pprof.StopCPUProfile(); f.Close() }()
		}
	}
	if err := body(e); err != nil {
		e.emit(report{Ev: "error", Err: err.Error()})
		return 1
	}
	return 0
}

// waitStop blocks until the parent says stop or closes stdin.
func (e *env) waitStop() { <-e.stop.Done() }

// meter counts received messages and measures the window: it starts warm
// after the first message and lasts dur.
type meter struct {
	n     atomic.Int64
	first chan struct{}
	once  sync.Once
}

func newMeter() *meter { return &meter{first: make(chan struct{})} }

// add counts k messages.
func (m *meter) add(k int64) {
	if m.n.Add(k) == k {
		m.once.Do(func() { close(m.first) })
	}
}

// measure waits for the first message, then the warm-up, then counts for
// dur. extra is called at the end of the window to fill in more fields.
func (m *meter) measure(e *env, extra func(*report)) {
	select {
	case <-m.first:
	case <-e.stop.Done():
		e.emit(report{Ev: "error", Err: "stopped before the first message arrived"})
		return
	case <-time.After(30 * time.Second):
		e.emit(report{Ev: "error", Err: "no message arrived within 30s"})
		return
	}
	time.Sleep(e.p.Warm)
	c0, t0 := m.n.Load(), time.Now()
	time.Sleep(e.p.Dur)
	c1, t1 := m.n.Load(), time.Now()
	r := report{Ev: "result", Count: c1 - c0, Secs: t1.Sub(t0).Seconds()}
	if extra != nil {
		extra(&r)
	}
	e.emit(r)
}

// latencies collects sequential request latencies.
type latencies []time.Duration

// result summarises the samples taken over secs seconds.
func (l latencies) result(secs float64) report {
	s := slices.Clone(l)
	slices.Sort(s)
	pct := func(p float64) float64 {
		if len(s) == 0 {
			return 0
		}
		i := int(p*float64(len(s))+0.5) - 1
		i = max(0, min(i, len(s)-1))
		return float64(s[i])
	}
	return report{Ev: "result", Count: int64(len(s)), Secs: secs, P50: pct(0.50), P90: pct(0.90), P99: pct(0.99)}
}

// runSequential calls do in a loop: for the warm-up, then for dur while
// recording each call's latency.
func runSequential(e *env, do func() error) (report, error) {
	end := time.Now().Add(e.p.Warm)
	for time.Now().Before(end) {
		if err := do(); err != nil {
			return report{}, err
		}
	}
	lat := make(latencies, 0, 1<<16)
	t0 := time.Now()
	end = t0.Add(e.p.Dur)
	for {
		s := time.Now()
		if err := do(); err != nil {
			return report{}, err
		}
		d := time.Since(s)
		lat = append(lat, d)
		if s.Add(d).After(end) {
			break
		}
	}
	return lat.result(time.Since(t0).Seconds()), nil
}

// runPipelined runs depth goroutines, each calling do (with its index g) in a loop, and counts
// the calls completed in the window after the warm-up.
func runPipelined(e *env, do func(ctx context.Context, g int) error) (report, error) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var n atomic.Int64
	var wg sync.WaitGroup
	var firstErr atomic.Value
	for g := range e.p.Depth {
		wg.Go(func() {
			for ctx.Err() == nil {
				if err := do(ctx, g); err != nil {
					if ctx.Err() == nil {
						firstErr.CompareAndSwap(nil, err)
						cancel()
					}
					return
				}
				n.Add(1)
			}
		})
	}
	sleepCtx(ctx, e.p.Warm)
	c0, t0 := n.Load(), time.Now()
	sleepCtx(ctx, e.p.Dur)
	c1, t1 := n.Load(), time.Now()
	cancel()
	wg.Wait()
	if err, ok := firstErr.Load().(error); ok {
		return report{}, err
	}
	return report{Ev: "result", Count: c1 - c0, Secs: t1.Sub(t0).Seconds()}, nil
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
