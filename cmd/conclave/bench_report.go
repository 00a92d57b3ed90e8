package main

import (
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"strings"

	"github.com/seed0811993b/conclave/auth"
)

// benchRun is one `conclave bench`: its options, its peer and what it has
// measured so far.
type benchRun struct {
	opts    *benchOptions
	key     auth.Key
	stderr  io.Writer
	peer    *peerProc
	tlsCert tls.Certificate
	res     benchResults
}

// benchResults is everything bench prints, and its -json output.
type benchResults struct {
	Machine         machine           `json:"machine"`
	Duration        float64           `json:"duration_s"` // per run
	Warmup          float64           `json:"warmup_s"`
	Runs            int               `json:"runs"`
	Link            []linkFigure      `json:"link,omitempty"`
	LinkRatios      []ratio           `json:"link_ratios,omitempty"`
	Handshake       []handshakeFigure `json:"handshake,omitempty"`
	HandshakeRatios []ratio           `json:"handshake_ratios,omitempty"`
	Notes           []string          `json:"notes,omitempty"`
}

// machine describes where the figures were measured.
type machine struct {
	CPUs     int    `json:"cpus"`
	OS       string `json:"goos"`
	Arch     string `json:"goarch"`
	CPUModel string `json:"cpu_model,omitempty"`
	Go       string `json:"go"`
}

// linkFigure is the median of one link kind and size over the runs.
type linkFigure struct {
	Kind             string    `json:"kind"`
	Size             int       `json:"size"`
	FramesPerSec     float64   `json:"frames_per_s"`
	MBPerSec         float64   `json:"mb_per_s"` // payload bytes, 1e6 per MB
	Spread           float64   `json:"spread"`   // (max-min)/median over the runs
	RunsFramesPerSec []float64 `json:"runs_frames_per_s"`
}

// handshakeFigure is the median of one handshake kind over the runs.
type handshakeFigure struct {
	Kind       string    `json:"kind"`
	PerSec     float64   `json:"per_s"`
	Spread     float64   `json:"spread"`
	RunsPerSec []float64 `json:"runs_per_s"`
}

// ratio compares a figure with its anchor's (both medians).
type ratio struct {
	Name  string  `json:"name"` // "sealed/raw"
	Size  int     `json:"size,omitempty"`
	Value float64 `json:"value"`
	Goal  float64 `json:"goal,omitempty"` // the least Value that meets the goal; 0: no goal
	Met   *bool   `json:"met,omitempty"`
}

func newRatio(name string, size int, x, anchor, goal float64) ratio {
	r := ratio{Name: name, Size: size, Goal: goal}
	if anchor > 0 {
		r.Value = x / anchor
	}
	if goal > 0 {
		met := r.Value >= goal
		r.Met = &met
	}
	return r
}

func thisMachine() machine {
	m := machine{CPUs: runtime.NumCPU(), OS: runtime.GOOS, Arch: runtime.GOARCH, Go: runtime.Version()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.Lines(string(b)) {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	return m
}

// median returns the middle of xs (the mean of the two middles for an even
// count); xs is not modified.
func median(xs []float64) float64 {
	s := slices.Sorted(slices.Values(xs))
	if len(s) == 0 {
		return 0
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// spread returns (max-min)/median of xs.
func spread(xs []float64) float64 {
	m := median(xs)
	if m == 0 {
		return 0
	}
	return (slices.Max(xs) - slices.Min(xs)) / m
}

// sizeName writes a payload size as the table does: "64 B", "1 KiB".
func sizeName(n int) string {
	if n >= 1<<10 && n%(1<<10) == 0 {
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d B", n)
}

// fmtCount formats x rounded to an integer with thousands separators.
func fmtCount(x float64) string {
	s := fmt.Sprintf("%.0f", x)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 && s[i-1] != '-' {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

func writeJSON(w io.Writer, r *benchResults) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

func writeTable(w io.Writer, r *benchResults) {
	m := r.Machine
	cpu := m.CPUModel
	if cpu == "" {
		cpu = "CPU model unknown"
	}
	fmt.Fprintf(w, "conclave bench: %s/%s, %d CPUs, %s, %s\n", m.OS, m.Arch, m.CPUs, cpu, m.Go)
	fmt.Fprintf(w, "each figure: median of %d run(s) of %gs after a %gs warm-up, between this process and a child\n",
		r.Runs, r.Duration, r.Warmup)
	fmt.Fprintln(w, "process over loopback TCP; spread = (max-min)/median over the runs")
	if len(r.Link) > 0 {
		fmt.Fprintln(w, "\nlink: one way, the child sends as fast as it can, this process receives and counts")
		fmt.Fprintf(w, "  %-8s %-7s %14s %11s %8s\n", "kind", "size", "frames/s", "MB/s", "spread")
		for _, f := range r.Link {
			fmt.Fprintf(w, "  %-8s %-7s %14s %11.1f %7.1f%%\n", f.Kind, sizeName(f.Size), fmtCount(f.FramesPerSec), f.MBPerSec, 100*f.Spread)
		}
		fmt.Fprintln(w)
		writeRatios(w, r.LinkRatios)
	}
	if len(r.Handshake) > 0 || len(r.Notes) > 0 {
		fmt.Fprintln(w, "\nhandshake: sequential dials, TCP connect included (conclave and tls13: the child dials")
		fmt.Fprintln(w, "this process; cpython: a Client process dials a Listener process)")
		fmt.Fprintf(w, "  %-13s %14s %8s\n", "kind", "handshakes/s", "spread")
		for _, f := range r.Handshake {
			fmt.Fprintf(w, "  %-13s %14s %7.1f%%\n", f.Kind, fmtCount(f.PerSec), 100*f.Spread)
		}
		for _, n := range r.Notes {
			fmt.Fprintf(w, "  %s\n", n)
		}
		fmt.Fprintln(w)
		writeRatios(w, r.HandshakeRatios)
	}
}

func writeRatios(w io.Writer, rs []ratio) {
	fmt.Fprintf(w, "  %-20s %-7s %7s  goal\n", "ratio", "size", "value")
	for _, r := range rs {
		size, goal := "", ""
		if r.Size > 0 {
			size = sizeName(r.Size)
		}
		if r.Met != nil {
			verdict := "met"
			if !*r.Met {
				verdict = "MISSED"
			}
			goal = fmt.Sprintf(">= %gx  %s", r.Goal, verdict)
		}
		line := fmt.Sprintf("  %-20s %-7s %6.2fx  %s", r.Name, size, r.Value, goal)
		fmt.Fprintln(w, strings.TrimRight(line, " "))
	}
}
