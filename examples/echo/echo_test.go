package main

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/seed0811993b/conclave/auth"
)

// buildEcho compiles this example once per test binary run.
func buildEcho(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "echo")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

func writeKey(t *testing.T) string {
	t.Helper()
	k, err := auth.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "cluster.key")
	if err := auth.WriteKeyFile(path, k); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestEchoAcrossProcesses runs the README's two-process recipe: a server
// process and client processes, with the right key and with a wrong one.
func TestEchoAcrossProcesses(t *testing.T) {
	bin := buildEcho(t)
	key := writeKey(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	srv := exec.CommandContext(ctx, bin, "-key", key, "serve", "127.0.0.1:0")
	stdout, err := srv.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	srv.Stderr = os.Stderr
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Process.Kill(); srv.Wait() })
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("server said nothing: %v", err)
	}
	addr := strings.TrimSpace(strings.TrimPrefix(line, "echo: serving on "))

	out, err := exec.CommandContext(ctx, bin, "-key", key, "send", addr, "Hello World", "again").CombinedOutput()
	if err != nil {
		t.Fatalf("client: %v\n%s", err, out)
	}
	for _, want := range []string{"echo: Hello World\n", "echo: again\n", "sealed=true"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("client output lacks %q:\n%s", want, out)
		}
	}

	cmd := exec.CommandContext(ctx, bin, "-key", writeKey(t), "send", addr, "let me in")
	out, err = cmd.CombinedOutput()
	if err == nil || cmd.ProcessState.ExitCode() != 1 {
		t.Fatalf("client with the wrong key: err %v, exit %d\n%s", err, cmd.ProcessState.ExitCode(), out)
	}
	if !strings.Contains(string(out), "authentication failed") || strings.Contains(string(out), "echo: let me in") {
		t.Errorf("wrong-key client should fail clearly and get no echo:\n%s", out)
	}
}

func TestEchoRefusesLooseKeyFile(t *testing.T) {
	bin := buildEcho(t)
	key := writeKey(t)
	if err := os.Chmod(key, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, "-key", key, "send", "127.0.0.1:1", "x").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "chmod 600") {
		t.Fatalf("a world-readable key file must be refused with advice: %v\n%s", err, out)
	}
}

func TestDemo(t *testing.T) {
	var out strings.Builder
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := run(ctx, nil, &out, &out); err != nil {
		t.Fatalf("demo: %v\n%s", err, out.String())
	}
	for _, want := range []string{"echo: Hello World", "wrong key was refused"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("demo output lacks %q:\n%s", want, out.String())
		}
	}
}
