package main

import (
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"text/tabwriter"
)

// Results is the whole output; -json prints it as is.
type Results struct {
	Machine   Machine       `json:"machine"`
	Config    Config        `json:"config"`
	OneWay    []*OneWayCell `json:"one_way,omitempty"`
	ReqRep    []*RRCell     `json:"request_reply,omitempty"`
	Pipelined []*RRCell     `json:"pipelined,omitempty"`
	Memory    *MemCell      `json:"memory,omitempty"`
	Failure   *FailCell     `json:"failure_detection,omitempty"`
	Ratios    []Ratio       `json:"ratios"`
	Errors    int           `json:"errors"`
	Seconds   float64       `json:"seconds"`
}

type Machine struct {
	OS      string `json:"os"`
	Arch    string `json:"arch"`
	CPU     string `json:"cpu,omitempty"`
	CPUs    int    `json:"cpus"`
	Go      string `json:"go"`
	Taskset bool   `json:"taskset"`
}

type Config struct {
	Duration string `json:"duration"`
	Warm     string `json:"warm"`
	Runs     int    `json:"runs"`
	Depth    int    `json:"pipelined_depth"`
	RRSize   int    `json:"request_bytes"`
}

type OneWayCell struct {
	System string  `json:"system"`
	Size   int     `json:"payload_bytes"`
	Median *tput   `json:"median,omitempty"`
	Spread float64 `json:"spread"` // (max-min)/median of msgs/s over the runs
	cellOf[tput]
}

type RRCell struct {
	System  string  `json:"system"`
	Pinning string  `json:"pinning"`
	Depth   int     `json:"in_flight,omitempty"`
	Median  *lat    `json:"median,omitempty"`
	Spread  float64 `json:"spread"` // of req/s
	cellOf[lat]
}

type MemCell struct {
	Median *memResult `json:"median,omitempty"`
	cellOf[memResult]
}

type FailCell struct {
	Median *failResult `json:"median,omitempty"`
	// Worst is the largest detection time over all runs.
	WorstKillMs   float64 `json:"worst_kill_detect_ms"`
	WorstLeaveMs  float64 `json:"worst_leave_detect_ms"`
	WorstFreezeMs float64 `json:"worst_freeze_detect_ms"`
	cellOf[failResult]
}

// Ratio is one derived comparison, conclave against an anchor.
type Ratio struct {
	Name  string  `json:"name"`
	Value float64 `json:"value"`
	Goal  string  `json:"goal,omitempty"`
	Met   *bool   `json:"met,omitempty"`
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func medianOf[T any](runs []T, f func(T) float64) float64 {
	xs := make([]float64, len(runs))
	for i, r := range runs {
		xs[i] = f(r)
	}
	return median(xs)
}

func spread[T any](runs []T, f func(T) float64) float64 {
	if len(runs) < 2 {
		return 0
	}
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, r := range runs {
		lo, hi = min(lo, f(r)), max(hi, f(r))
	}
	return (hi - lo) / medianOf(runs, f)
}

// summarise computes the medians and the ratios.
func (r *Results) summarise() {
	for _, c := range r.OneWay {
		if len(c.Runs) == 0 {
			continue
		}
		m := &tput{MsgsPerSec: medianOf(c.Runs, func(t tput) float64 { return t.MsgsPerSec })}
		m.MBPerSec = m.MsgsPerSec * float64(c.Size) / 1e6
		m.SentPerSec = medianOf(c.Runs, func(t tput) float64 { return t.SentPerSec })
		for _, t := range c.Runs {
			m.Drops += t.Drops
		}
		c.Median = m
		c.Spread = spread(c.Runs, func(t tput) float64 { return t.MsgsPerSec })
	}
	for _, c := range append(slices.Clone(r.ReqRep), r.Pipelined...) {
		if len(c.Runs) == 0 {
			continue
		}
		c.Median = &lat{
			P50:       medianOf(c.Runs, func(l lat) float64 { return l.P50 }),
			P90:       medianOf(c.Runs, func(l lat) float64 { return l.P90 }),
			P99:       medianOf(c.Runs, func(l lat) float64 { return l.P99 }),
			ReqPerSec: medianOf(c.Runs, func(l lat) float64 { return l.ReqPerSec }),
		}
		c.Spread = spread(c.Runs, func(l lat) float64 { return l.ReqPerSec })
	}
	if c := r.Memory; c != nil && len(c.Runs) > 0 {
		m := &memResult{Links: c.Runs[0].Links}
		for i := range m.Links {
			m.RSSKiB = append(m.RSSKiB, int64(medianOf(c.Runs, func(x memResult) float64 { return float64(x.RSSKiB[i]) })))
		}
		m.PerLink = medianOf(c.Runs, func(x memResult) float64 { return x.PerLink })
		c.Median = m
	}
	if c := r.Failure; c != nil && len(c.Runs) > 0 {
		c.Median = &failResult{
			KillMs:      medianOf(c.Runs, func(f failResult) float64 { return f.KillMs }),
			LeaveMs:     medianOf(c.Runs, func(f failResult) float64 { return f.LeaveMs }),
			LeaveCallMs: medianOf(c.Runs, func(f failResult) float64 { return f.LeaveCallMs }),
			FreezeMs:    medianOf(c.Runs, func(f failResult) float64 { return f.FreezeMs }),
		}
		for _, f := range c.Runs {
			c.WorstKillMs = max(c.WorstKillMs, f.KillMs)
			c.WorstLeaveMs = max(c.WorstLeaveMs, f.LeaveMs)
			c.WorstFreezeMs = max(c.WorstFreezeMs, f.FreezeMs)
		}
	}
	r.ratios()
}

func (r *Results) oneWay(sys string, size int) *tput {
	for _, c := range r.OneWay {
		if c.System == sys && c.Size == size {
			return c.Median
		}
	}
	return nil
}

func findRR(cells []*RRCell, sys, pin string) *lat {
	for _, c := range cells {
		if c.System == sys && (pin == "" || c.Pinning == pin) {
			return c.Median
		}
	}
	return nil
}

func (r *Results) ratios() {
	r.Ratios = []Ratio{}
	add := func(name string, num, den float64) {
		if den > 0 && num > 0 {
			r.Ratios = append(r.Ratios, Ratio{Name: name, Value: num / den})
		}
	}
	for _, size := range oneWaySizes {
		cc, nt, raw := r.oneWay("conclave", size), r.oneWay("nats", size), r.oneWay("raw", size)
		if cc != nil && nt != nil {
			add(fmt.Sprintf("one-way %s msgs/s, conclave / NATS", sizeName(size)), cc.MsgsPerSec, nt.MsgsPerSec)
		}
		if cc != nil && raw != nil {
			add(fmt.Sprintf("one-way %s msgs/s, conclave / raw TCP", sizeName(size)), cc.MsgsPerSec, raw.MsgsPerSec)
		}
	}
	for _, c := range r.ReqRep {
		if c.System != "conclave" || c.Median == nil {
			continue
		}
		if raw := findRR(r.ReqRep, "raw", c.Pinning); raw != nil {
			add("request/reply p50, conclave / raw TCP, "+c.Pinning, c.Median.P50, raw.P50)
			add("request/reply p99, conclave / raw TCP, "+c.Pinning, c.Median.P99, raw.P99)
		}
	}
	if cc := findRR(r.Pipelined, "conclave", ""); cc != nil {
		if nt := findRR(r.Pipelined, "nats", ""); nt != nil {
			add("pipelined req/s, conclave / NATS", cc.ReqPerSec, nt.ReqPerSec)
		}
		if raw := findRR(r.Pipelined, "raw", ""); raw != nil {
			add("pipelined req/s, conclave / raw TCP", cc.ReqPerSec, raw.ReqPerSec)
		}
	}
	goal := func(name string, v, limit float64) {
		met := v <= limit
		r.Ratios = append(r.Ratios, Ratio{Name: name, Value: v, Goal: fmt.Sprintf("<= %.0f ms", limit), Met: &met})
	}
	if f := r.Failure; f != nil && f.Median != nil {
		goal("SIGKILL seen as failed by all survivors, ms (worst run)", f.WorstKillMs, 1000)
		goal("Leave seen as left by all others, ms (worst run)", f.WorstLeaveMs, 100)
	}
}

var systemNames = map[string]string{"nats": "NATS", "raw": "raw TCP", "conclave": "conclave"}

func sizeName(n int) string {
	switch {
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	default:
		return fmt.Sprintf("%d B", n)
	}
}

// si formats a rate with k or M.
func si(v float64) string {
	switch {
	case math.IsNaN(v):
		return "-"
	case v >= 1e6:
		return fmt.Sprintf("%.2f M", v/1e6)
	case v >= 1e3:
		return fmt.Sprintf("%.1f k", v/1e3)
	}
	return fmt.Sprintf("%.0f", v)
}

func pct(s float64) string { return fmt.Sprintf("%.0f%%", 100*s) }

func errNote(errs []string) string {
	if len(errs) == 0 {
		return ""
	}
	return fmt.Sprintf("  (%d failed runs: %s)", len(errs), firstLine(errs[0]))
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
}

func printTable(w io.Writer, r *Results) {
	fmt.Fprintf(w, "conclave bench: %s/%s, %d CPUs (%s), %s; each cell the median of %d runs of %s after %s warm-up\n",
		r.Machine.OS, r.Machine.Arch, r.Machine.CPUs, r.Machine.CPU, r.Machine.Go, r.Config.Runs, r.Config.Duration, r.Config.Warm)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	flush := func() { tw.Flush() }

	if len(r.OneWay) > 0 {
		fmt.Fprintln(w, "\nOne-way throughput (sender and receiver processes; NATS adds the server process)")
		fmt.Fprintln(tw, "payload\tsystem\tmsgs/s\tMB/s\tspread\tdrops\t")
		for _, c := range r.OneWay {
			if c.Median == nil {
				fmt.Fprintf(tw, "%s\t%s\t-\t-\t\t\t%s\n", sizeName(c.Size), systemNames[c.System], errNote(c.Errors))
				continue
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%.0f\t%s\t%d\t%s\n", sizeName(c.Size), systemNames[c.System],
				si(c.Median.MsgsPerSec), c.Median.MBPerSec, pct(c.Spread), c.Median.Drops, errNote(c.Errors))
		}
		flush()
	}
	printRR := func(title string, cells []*RRCell, lat bool) {
		if len(cells) == 0 {
			return
		}
		fmt.Fprintln(w, "\n"+title)
		if lat {
			fmt.Fprintln(tw, "system\tpinning\tp50 us\tp90 us\tp99 us\treq/s\tspread\t")
		} else {
			fmt.Fprintln(tw, "system\tin flight\treq/s\tspread\t")
		}
		for _, c := range cells {
			switch {
			case c.Median == nil && lat:
				fmt.Fprintf(tw, "%s\t%s\t-\t-\t-\t-\t\t%s\n", systemNames[c.System], c.Pinning, errNote(c.Errors))
			case c.Median == nil:
				fmt.Fprintf(tw, "%s\t%d\t-\t\t%s\n", systemNames[c.System], c.Depth, errNote(c.Errors))
			case lat:
				fmt.Fprintf(tw, "%s\t%s\t%.1f\t%.1f\t%.1f\t%s\t%s\t%s\n", systemNames[c.System], c.Pinning,
					c.Median.P50, c.Median.P90, c.Median.P99, si(c.Median.ReqPerSec), pct(c.Spread), errNote(c.Errors))
			default:
				fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\n", systemNames[c.System], c.Depth,
					si(c.Median.ReqPerSec), pct(c.Spread), errNote(c.Errors))
			}
		}
		flush()
	}
	printRR(fmt.Sprintf("Sequential request/reply, %d B (NATS: client, server and replier processes, unpinned)", r.Config.RRSize), r.ReqRep, true)
	printRR(fmt.Sprintf("Pipelined request/reply, %d B, one goroutine per request in flight, unpinned", r.Config.RRSize), r.Pipelined, false)

	if c := r.Memory; c != nil {
		fmt.Fprintln(w, "\nMemory: VmRSS of one conclave node process with links to N other node processes (after debug.FreeOSMemory)")
		if c.Median == nil {
			fmt.Fprintf(w, "  -%s\n", errNote(c.Errors))
		} else {
			var hdr, row strings.Builder
			hdr.WriteString("links\t")
			row.WriteString("RSS MiB\t")
			for i, n := range c.Median.Links {
				fmt.Fprintf(&hdr, "%d\t", n)
				fmt.Fprintf(&row, "%.1f\t", float64(c.Median.RSSKiB[i])/1024)
			}
			fmt.Fprintln(tw, hdr.String())
			fmt.Fprintln(tw, row.String())
			flush()
			fmt.Fprintf(w, "  per link: %.0f KiB ((RSS with %d links - idle) / %d)%s\n", c.Median.PerLink,
				c.Median.Links[len(c.Median.Links)-1], c.Median.Links[len(c.Median.Links)-1], errNote(c.Errors))
		}
	}
	if c := r.Failure; c != nil {
		fmt.Fprintf(w, "\nFailure detection: %d node processes; SIGKILL one, then another calls Leave, then SIGSTOP a third\n", clusterSize)
		if c.Median == nil {
			fmt.Fprintf(w, "  -%s\n", errNote(c.Errors))
		} else {
			fmt.Fprintln(tw, "event\tseen by\tmedian ms\tworst ms\tgoal\t")
			fmt.Fprintf(tw, "SIGKILL -> failed\tlast of 4 survivors\t%.0f\t%.0f\t<= 1000 ms\t\n", c.Median.KillMs, c.WorstKillMs)
			fmt.Fprintf(tw, "Leave -> left\tlast of 3 others\t%.0f\t%.0f\t<= 100 ms\t\n", c.Median.LeaveMs, c.WorstLeaveMs)
			fmt.Fprintf(tw, "SIGSTOP -> failed\tlast of 2 others\t%.0f\t%.0f\t(hung process, no socket closes)\t\n", c.Median.FreezeMs, c.WorstFreezeMs)
			flush()
			fmt.Fprintf(w, "  Leave itself returned after %.0f ms (median)\n", c.Median.LeaveCallMs)
			kinds := map[string]int{}
			for _, f := range c.Runs {
				for _, k := range f.KillKinds {
					kinds["kill:"+k]++
				}
				for _, k := range f.LeaveKinds {
					kinds["leave:"+k]++
				}
				for _, k := range f.FreezeKinds {
					kinds["freeze:"+k]++
				}
			}
			if kinds["kill:left"] > 0 || kinds["leave:failed"] > 0 || kinds["freeze:left"] > 0 {
				fmt.Fprintf(w, "  note: event kinds seen %v (a kill should read failed, a Leave left)\n", kinds)
			}
			if len(c.Errors) > 0 {
				fmt.Fprintln(w, errNote(c.Errors))
			}
		}
	}
	if len(r.Ratios) > 0 {
		fmt.Fprintln(w, "\nRatios (medians)")
		for _, q := range r.Ratios {
			switch {
			case q.Met != nil:
				verdict := "met"
				if !*q.Met {
					verdict = "MISSED"
				}
				fmt.Fprintf(tw, "%s\t%.0f\tgoal %s: %s\t\n", q.Name, q.Value, q.Goal, verdict)
			default:
				fmt.Fprintf(tw, "%s\t%.2fx\t\t\n", q.Name, q.Value)
			}
		}
		flush()
	}
	fmt.Fprintf(w, "\n%d failed runs; took %.0f s\n", r.Errors, r.Seconds)
}
