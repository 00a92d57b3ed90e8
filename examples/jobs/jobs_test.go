package main

import (
	"bufio"
	"context"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/seed0811993b/conclave/auth"
)

// TestDemo runs the demo as a user would: a coordinator and three worker
// processes, one killed with SIGKILL midway. Every job must be done, the
// kill reported as a failure, and the two other workers must leave
// gracefully.
func TestDemo(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "jobs")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin).CombinedOutput()
	text := string(out)
	if err != nil {
		t.Fatalf("demo failed: %v\n%s", err, text)
	}
	for _, want := range []string{
		"event: w3 failed (node: peer failed: w3#",
		"event: w1 left",
		"event: w2 left",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %q:\n%s", want, text)
		}
	}
	m := regexp.MustCompile(`30 jobs done \(w1 (\d+), w2 (\d+), w3 (\d+)\)`).FindStringSubmatch(text)
	if m == nil {
		t.Fatalf("no summary line:\n%s", text)
	}
	if strings.Contains(text, "w1 failed") || strings.Contains(text, "w2 failed") {
		t.Errorf("a worker that left was reported failed:\n%s", text)
	}
	t.Log(m[0])
}

// TestStandaloneWorker runs a coordinator and a worker as a user starts
// them by hand: flags after the subcommand, a key file, and a worker whose
// standard input is closed (nohup, systemd, ssh -n), which must keep
// working until the jobs are done and then leave on SIGTERM.
func TestStandaloneWorker(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "jobs")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	keyFile := filepath.Join(dir, "cluster.key")
	key, err := auth.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := auth.WriteKeyFile(keyFile, key); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	coord := exec.CommandContext(ctx, bin, "-key", keyFile, "coordinator", "-jobs", "5", "-workers", "1")
	out, err := coord.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	coord.Stderr = coord.Stdout
	if err := coord.Start(); err != nil {
		t.Fatal(err)
	}
	lines := bufio.NewScanner(out)
	var addr string
	for addr == "" && lines.Scan() {
		if m := regexp.MustCompile(`gossip on (\S+);`).FindStringSubmatch(lines.Text()); m != nil {
			addr = m[1]
		}
	}
	if addr == "" {
		t.Fatal("the coordinator printed no gossip address")
	}

	worker := exec.CommandContext(ctx, bin, "-key", keyFile, "worker", "-name", "w1", "-join", addr)
	worker.Stdin = nil // /dev/null: read at once to its end
	var wout strings.Builder
	worker.Stdout, worker.Stderr = &wout, &wout
	if err := worker.Start(); err != nil {
		t.Fatal(err)
	}
	var text strings.Builder
	for lines.Scan() {
		text.WriteString(lines.Text() + "\n")
	}
	if err := coord.Wait(); err != nil {
		t.Fatalf("coordinator: %v\n%s\nworker:\n%s", err, text.String(), wout.String())
	}
	if !strings.Contains(text.String(), "5 jobs done (w1 5)") {
		t.Fatalf("coordinator output:\n%s\nworker:\n%s", text.String(), wout.String())
	}
	if err := worker.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("the worker was gone before SIGTERM: %v\n%s", err, wout.String())
	}
	if err := worker.Wait(); err != nil {
		t.Fatalf("worker after SIGTERM: %v\n%s", err, wout.String())
	}
}
