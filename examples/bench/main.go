// Command bench measures conclave's node API against anchors run in the same
// invocation on the same machine: a NATS server with nats.go clients, and
// plain length-prefixed frames over TCP. Every sender, receiver, client and
// server is its own OS process on 127.0.0.1.
//
//	go run . [-d 2s] [-runs 3] [-json] [oneway|reqrep|pipelined|memory|failure|nats|raw|conclave ...]
//
// See README.md.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/seed0811993b/conclave/auth"
)

var (
	measurements = []string{"oneway", "reqrep", "pipelined", "memory", "failure"}
	systems      = []string{"nats", "raw", "conclave"}
	oneWaySizes  = []int{64, 1024, 64 << 10}
)

const rrSize = 64

func main() {
	if len(os.Args) > 1 && os.Args[1] == childArg {
		os.Exit(childMain(os.Args[2:]))
	}
	os.Exit(parentMain(os.Args[1:], os.Stdout, os.Stderr))
}

// options are the command line.
type options struct {
	dur, warm  time.Duration
	runs       int
	depth      int
	json       bool
	natsServer string
	which      []string
}

func parseOptions(args []string, stderr io.Writer) (*options, error) {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	o := &options{}
	fs.DurationVar(&o.dur, "d", 2*time.Second, "measured duration of each run of each cell")
	fs.DurationVar(&o.warm, "warm", 300*time.Millisecond, "warm-up before each measured window")
	fs.IntVar(&o.runs, "runs", 3, "runs per cell; the table shows the median")
	fs.IntVar(&o.depth, "depth", 256, "requests in flight for the pipelined measurement")
	fs.BoolVar(&o.json, "json", false, "print one JSON object instead of the table")
	fs.StringVar(&o.natsServer, "nats-server", "", "nats-server binary to use (default: go build it from this module)")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: go run . [flags] [%s | %s ...]\n", strings.Join(measurements, "|"), strings.Join(systems, "|"))
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	for _, w := range fs.Args() {
		if !slices.Contains(measurements, w) && !slices.Contains(systems, w) {
			fs.Usage()
			return nil, fmt.Errorf("unknown measurement or system %q", w)
		}
	}
	if o.runs < 1 || o.dur <= 0 || o.depth < 1 {
		return nil, fmt.Errorf("-runs, -d and -depth must be positive")
	}
	o.which = fs.Args()
	return o, nil
}

// selected reports whether a measurement and a system are both selected
// (an empty list of either selects all of that kind).
func (o *options) selected(meas, sys string) bool {
	var ms, ss []string
	for _, w := range o.which {
		if slices.Contains(measurements, w) {
			ms = append(ms, w)
		} else {
			ss = append(ss, w)
		}
	}
	return (len(ms) == 0 || slices.Contains(ms, meas)) && (len(ss) == 0 || slices.Contains(ss, sys))
}

func parentMain(args []string, stdout, stderr io.Writer) int {
	o, err := parseOptions(args, stderr)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	defer killAll()
	defer cleanupNATSBinary()
	if o.natsServer != "" {
		natsServerBin.path = o.natsServer
	}
	key, err := auth.GenerateKey(nil)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	logf := func(format string, a ...any) { fmt.Fprintf(stderr, format+"\n", a...) }
	c := &cfg{dur: o.dur, warm: o.warm, runs: o.runs, key: key, depth: o.depth, log: logf}
	if tasksetPath == "" {
		logf("taskset not found: the pinned request/reply rows run unpinned")
	}
	start := time.Now()
	res := run(ctx, c, o)
	res.Seconds = time.Since(start).Seconds()
	if o.json {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(res); err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
	} else {
		printTable(stdout, res)
	}
	if ctx.Err() != nil {
		return 130
	}
	if res.Errors > 0 {
		return 1
	}
	return 0
}

// cell is one line of the output, run -runs times.
type cell interface {
	label() string
	once(ctx context.Context) (string, error) // a short summary for the progress log
}

type cellOf[T any] struct {
	Label  string   `json:"-"`
	Runs   []T      `json:"runs"`
	Errors []string `json:"errors,omitempty"`
	fn     func(context.Context) (T, error)
	sum    func(T) string
}

func (c *cellOf[T]) label() string { return c.Label }

func (c *cellOf[T]) once(ctx context.Context) (string, error) {
	r, err := c.fn(ctx)
	if err != nil {
		c.Errors = append(c.Errors, err.Error())
		return "", err
	}
	c.Runs = append(c.Runs, r)
	return c.sum(r), nil
}

// run builds the selected cells and runs them: run 1 of every cell, then
// run 2 of every cell, and so on, so that slow drift of the machine spreads
// over all cells alike.
func run(ctx context.Context, c *cfg, o *options) *Results {
	res := &Results{
		Machine: machine(),
		Config:  Config{Duration: o.dur.String(), Warm: o.warm.String(), Runs: o.runs, Depth: o.depth, RRSize: rrSize},
	}
	var cells []cell
	if slices.ContainsFunc(systems, func(s string) bool { return o.selected("oneway", s) }) {
		for _, size := range oneWaySizes {
			for _, sys := range systems {
				if !o.selected("oneway", sys) {
					continue
				}
				oc := &OneWayCell{System: sys, Size: size}
				oc.cellOf = cellOf[tput]{
					Label: fmt.Sprintf("one-way %s %s", sys, sizeName(size)),
					fn:    func(ctx context.Context) (tput, error) { return runOneWay(ctx, c, sys, size) },
					sum:   func(t tput) string { return fmt.Sprintf("%s msgs/s, %.0f MB/s", si(t.MsgsPerSec), t.MBPerSec) },
				}
				res.OneWay = append(res.OneWay, oc)
				cells = append(cells, &oc.cellOf)
			}
		}
	}
	sumLat := func(l lat) string {
		return fmt.Sprintf("p50 %.1f us, p99 %.1f us, %s req/s", l.P50, l.P99, si(l.ReqPerSec))
	}
	for _, pin := range []pinning{pinDiff, pinSame, pinNone} {
		for _, sys := range systems {
			if !o.selected("reqrep", sys) || (sys == "nats") != (pin == pinNone) {
				continue // NATS (three processes) runs unpinned, for reference only
			}
			if pin != pinNone && tasksetPath == "" && pin == pinSame {
				continue // without taskset, one unpinned row is enough
			}
			name := pin.Name
			if pin != pinNone && tasksetPath == "" {
				name = "unpinned (no taskset)"
			}
			rc := &RRCell{System: sys, Pinning: name}
			rc.cellOf = cellOf[lat]{
				Label: fmt.Sprintf("request/reply %s, %s", sys, name),
				fn:    func(ctx context.Context) (lat, error) { return runReqRep(ctx, c, sys, rrSize, 1, pin) },
				sum:   sumLat,
			}
			res.ReqRep = append(res.ReqRep, rc)
			cells = append(cells, &rc.cellOf)
		}
	}
	for _, sys := range systems {
		if !o.selected("pipelined", sys) {
			continue
		}
		pc := &RRCell{System: sys, Pinning: pinNone.Name, Depth: c.depth}
		pc.cellOf = cellOf[lat]{
			Label: fmt.Sprintf("pipelined %s, %d in flight", sys, c.depth),
			fn:    func(ctx context.Context) (lat, error) { return runReqRep(ctx, c, sys, rrSize, c.depth, pinNone) },
			sum:   func(l lat) string { return si(l.ReqPerSec) + " req/s" },
		}
		res.Pipelined = append(res.Pipelined, pc)
		cells = append(cells, &pc.cellOf)
	}
	if o.selected("memory", "conclave") {
		res.Memory = &MemCell{cellOf: cellOf[memResult]{
			Label: "memory",
			fn:    func(ctx context.Context) (memResult, error) { return runMemory(ctx, c) },
			sum: func(m memResult) string {
				return fmt.Sprintf("RSS %v KiB at %v links, %.0f KiB per link", m.RSSKiB, m.Links, m.PerLink)
			},
		}}
		cells = append(cells, &res.Memory.cellOf)
	}
	if o.selected("failure", "conclave") {
		res.Failure = &FailCell{cellOf: cellOf[failResult]{
			Label: "failure detection",
			fn:    func(ctx context.Context) (failResult, error) { return runFailure(ctx, c) },
			sum: func(f failResult) string {
				return fmt.Sprintf("kill seen after %.0f ms (%v), leave after %.0f ms (%v)", f.KillMs, f.KillKinds, f.LeaveMs, f.LeaveKinds)
			},
		}}
		cells = append(cells, &res.Failure.cellOf)
	}

	total := len(cells) * o.runs
	step := 0
	for r := range o.runs {
		for _, cl := range cells {
			step++
			if ctx.Err() != nil {
				break
			}
			t0 := time.Now()
			sum, err := cl.once(ctx)
			if err != nil {
				res.Errors++
				c.log("[%d/%d] %s, run %d: ERROR %v", step, total, cl.label(), r+1, err)
				continue
			}
			c.log("[%d/%d] %s, run %d: %s (%.1fs)", step, total, cl.label(), r+1, sum, time.Since(t0).Seconds())
		}
	}
	res.summarise()
	return res
}

func machine() Machine {
	m := Machine{OS: runtime.GOOS, Arch: runtime.GOARCH, CPUs: runtime.NumCPU(), Go: runtime.Version(), Taskset: tasksetPath != ""}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	return m
}
