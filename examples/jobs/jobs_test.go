package main

import (
	"context"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
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
