package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestMain lets the test binary serve as the children's binary too.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == childArg {
		os.Exit(childMain(os.Args[2:]))
	}
	code := m.Run()
	cleanupNATSBinary()
	os.Exit(code)
}

// runBench runs the program with args plus a tiny duration and returns the
// parsed JSON.
func runBench(t *testing.T, args ...string) *Results {
	t.Helper()
	var out, errOut bytes.Buffer
	args = append([]string{"-json", "-d", "200ms", "-warm", "100ms", "-runs", "1", "-depth", "32"}, args...)
	code := parentMain(args, &out, &errOut)
	t.Logf("progress:\n%s", errOut.String())
	var r Results
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		t.Fatalf("exit %d, output is not JSON: %v\n%s", code, err, out.String())
	}
	if code != 0 || r.Errors != 0 {
		t.Fatalf("exit %d with %d failed runs", code, r.Errors)
	}
	checkNoOrphans(t)
	return &r
}

// checkNoOrphans fails if any process still runs this test binary (a child)
// or the nats-server built for the test.
func checkNoOrphans(t *testing.T) {
	t.Helper()
	children.Lock()
	n := len(children.m)
	children.Unlock()
	if n != 0 {
		t.Errorf("%d children still tracked", n)
	}
	bins := []string{self}
	if natsServerBin.path != "" {
		bins = append(bins, natsServerBin.path)
	}
	deadline := time.Now().Add(3 * time.Second)
	for {
		left := processesRunning(bins)
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("orphan processes: %s", strings.Join(left, "; "))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func processesRunning(bins []string) []string {
	ents, _ := os.ReadDir("/proc")
	var left []string
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		exe, err := os.Readlink(filepath.Join("/proc", e.Name(), "exe"))
		if err != nil {
			continue
		}
		for _, b := range bins {
			if exe == b {
				cmd, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
				left = append(left, fmt.Sprintf("pid %d: %s", pid, bytes.ReplaceAll(cmd, []byte{0}, []byte{' '})))
			}
		}
	}
	return left
}

func TestAnchors(t *testing.T) {
	r := runBench(t, "oneway", "reqrep", "pipelined", "nats", "raw")
	if len(r.OneWay) != 6 {
		t.Errorf("%d one-way cells, want 6", len(r.OneWay))
	}
	for _, c := range r.OneWay {
		if c.Median == nil || c.Median.MsgsPerSec <= 0 {
			t.Errorf("one-way %s %d: no result", c.System, c.Size)
		}
	}
	wantRR := 3
	if tasksetPath == "" {
		wantRR = 2
	}
	if len(r.ReqRep) != wantRR {
		t.Errorf("%d request/reply cells, want %d", len(r.ReqRep), wantRR)
	}
	for _, c := range append(r.ReqRep, r.Pipelined...) {
		if c.Median == nil || c.Median.ReqPerSec <= 0 {
			t.Errorf("%s %s: no result", c.System, c.Pinning)
		}
	}
	for _, c := range r.ReqRep {
		if c.Median != nil && !(c.Median.P50 > 0 && c.Median.P50 <= c.Median.P90 && c.Median.P90 <= c.Median.P99) {
			t.Errorf("%s %s: percentiles out of order: %+v", c.System, c.Pinning, *c.Median)
		}
	}
}

func TestConclave(t *testing.T) {
	r := runBench(t, "conclave", "oneway", "reqrep", "pipelined", "memory", "failure")
	if len(r.OneWay) != 3 || len(r.Pipelined) != 1 {
		t.Errorf("cells: %d one-way, %d pipelined", len(r.OneWay), len(r.Pipelined))
	}
	for _, c := range r.OneWay {
		if c.Median == nil || c.Median.MsgsPerSec <= 0 {
			t.Errorf("one-way %d: no result", c.Size)
		}
	}
	for _, c := range append(r.ReqRep, r.Pipelined...) {
		if c.Median == nil || c.Median.ReqPerSec <= 0 {
			t.Errorf("%s %s: no result", c.System, c.Pinning)
		}
	}
	if m := r.Memory; m == nil || m.Median == nil || len(m.Median.RSSKiB) != len(memSteps) || m.Median.RSSKiB[0] <= 0 {
		t.Errorf("memory: %+v", m)
	}
	if f := r.Failure; f == nil || f.Median == nil || f.Median.KillMs <= 0 || f.Median.LeaveMs <= 0 {
		t.Errorf("failure detection: %+v", f)
	}
}

// TestChildErrorKillsTheRest checks that a failing cell reports its error
// and leaves no process behind.
func TestChildErrorKillsTheRest(t *testing.T) {
	c := &cfg{dur: 200 * time.Millisecond, warm: 50 * time.Millisecond, runs: 1, depth: 4, log: t.Logf}
	// A raw ping against a port nobody listens on: the client fails at once.
	ln, err := listenLocal()
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	ch, err := spawn(t.Context(), spec{role: "raw-ping", p: params{Size: 64, Addr: addr, Warm: c.warm, Dur: c.dur}, cpu: -1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ch.expect(t.Context(), "result"); err == nil || !strings.Contains(err.Error(), "refused") {
		t.Errorf("err = %v, want connection refused", err)
	}
	if err := ch.stop(5 * time.Second); err == nil {
		t.Error("a failed child exited 0")
	}
	checkNoOrphans(t)
}
