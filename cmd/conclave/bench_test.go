package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

// buildConclave compiles this command: bench re-executes its own binary,
// which in a test would be the test binary.
func buildConclave(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "conclave")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// TestBenchAcrossProcesses runs a short `conclave bench` through the real
// re-exec path and checks that every row is there.
func TestBenchAcrossProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes and measures for a few seconds")
	}
	bin := buildConclave(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "bench", "-d", "200ms", "-runs", "1")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("bench: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
	out := stdout.String()
	var want []string
	for _, size := range []string{"64 B", "1 KiB", "64 KiB"} {
		for _, kind := range []string{"raw", "sealed", "plain"} {
			want = append(want, `(?m)^  `+kind+` +`+size+` +[0-9,]+ +[0-9.]+ +[0-9.]+%$`)
		}
		want = append(want, `(?m)^  sealed/raw +`+size+` +[0-9.]+x`, `(?m)^  plain/raw +`+size+` +[0-9.]+x`)
	}
	for _, kind := range []string{"native", "python-mode", "tls13"} {
		want = append(want, `(?m)^  `+kind+` +[0-9,]+ +[0-9.]+%$`)
	}
	want = append(want, `(?m)^  (cpython +[0-9,]+ +[0-9.]+%|cpython: not found)$`, `(?m)^  native/tls13 +[0-9.]+x  >= 2x`,
		`(?m)^conclave bench: [a-z0-9]+/[a-z0-9]+, [0-9]+ CPUs, .*, go`)
	for _, re := range want {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("output has no line matching %s", re)
		}
	}
	if t.Failed() {
		t.Logf("output:\n%s", out)
	}
}

// TestBenchPeerDiesWithParent kills a running bench and checks that its peer
// process exits too.
func TestBenchPeerDiesWithParent(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	if runtime.GOOS != "linux" {
		t.Skip("finds the peer through /proc")
	}
	bin := buildConclave(t)
	cmd := exec.Command(bin, "bench", "-d", "30s", "link")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	var peer int
	for deadline := time.Now().Add(10 * time.Second); peer == 0 && time.Now().Before(deadline); {
		peer = childOf(cmd.Process.Pid)
		time.Sleep(20 * time.Millisecond)
	}
	if peer == 0 {
		t.Fatal("bench started no peer process")
	}
	if argv, _ := os.ReadFile(filepath.Join("/proc", strconv.Itoa(peer), "cmdline")); !bytes.Contains(argv, []byte("bench-peer")) {
		t.Fatalf("the child is not a bench peer: %q", argv)
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if st, _ := procStat(peer); st == nil || st[0] == "Z" {
			return // gone, or a zombie waiting for init to reap it
		}
	}
	p, _ := os.FindProcess(peer)
	p.Kill()
	t.Fatalf("the bench peer (pid %d) outlived its parent by 10s", peer)
}

// procStat returns the fields of /proc/PID/stat after the command name:
// state, ppid, and so on; nil if there is no such process.
func procStat(pid int) ([]string, error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return nil, err
	}
	s := string(b)
	return strings.Fields(s[strings.LastIndex(s, ")")+1:]), nil // the name may hold ')'; it ends at the last
}

// childOf returns a live child of ppid, or 0.
func childOf(ppid int) int {
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if st, _ := procStat(pid); len(st) > 1 && st[1] == strconv.Itoa(ppid) && st[0] != "Z" {
			return pid
		}
	}
	return 0
}

func TestBenchReport(t *testing.T) {
	r := &benchResults{Machine: machine{CPUs: 2, OS: "linux", Arch: "amd64", Go: "go1.26"}, Duration: 3, Runs: 3,
		Link:       []linkFigure{{Kind: "raw", Size: 64, FramesPerSec: 1234567.4, MBPerSec: 79, RunsFramesPerSec: []float64{1, 2, 3}}},
		LinkRatios: []ratio{newRatio("sealed/raw", 64, 1, 4, 0.5), newRatio("plain/raw", 64, 3, 4, 0)},
		Notes:      []string{"cpython: not found"}}
	var table, js strings.Builder
	writeTable(&table, r)
	for _, want := range []string{"  raw      64 B         1,234,567", "0.25x  >= 0.5x  MISSED\n", "0.75x\n", "cpython: not found"} {
		if !strings.Contains(table.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, table.String())
		}
	}
	if err := writeJSON(&js, r); err != nil {
		t.Fatal(err)
	}
	var back benchResults
	if err := json.Unmarshal([]byte(js.String()), &back); err != nil || back.LinkRatios[0].Met == nil || *back.LinkRatios[0].Met {
		t.Errorf("JSON does not round-trip: %v\n%s", err, js.String())
	}
	if m := median([]float64{3, 1, 2}); m != 2 {
		t.Errorf("median %v", m)
	}
	if m := median([]float64{4, 1, 2, 3}); m != 2.5 {
		t.Errorf("median %v", m)
	}
	if got := fmtCount(1234567.4); got != "1,234,567" {
		t.Errorf("fmtCount %q", got)
	}
}

func TestBenchFlags(t *testing.T) {
	var out, errOut strings.Builder
	for _, args := range [][]string{{"bench", "links"}, {"bench", "-runs", "0"}, {"bench", "-d", "0s"}} {
		if err := run(context.Background(), args, &out, &errOut); err == nil {
			t.Errorf("%q: no error", args)
		}
	}
}
