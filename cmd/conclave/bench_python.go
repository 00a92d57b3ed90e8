package main

import (
	"bufio"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// pyenvVersion makes pyenv's shims resolve python3.13, python3.12 and
// python3.11.
const pyenvVersion = "PYENV_VERSION=3.13.0:3.12.1:3.11.7"

// Both Python scripts read the key as hex from the first line of stdin and
// exit when stdin ends, so that they never outlive this process.
const pyWatchParent = `import os, sys, threading
key = bytes.fromhex(sys.stdin.readline().strip())
def _watch():
    sys.stdin.read()
    os._exit(0)
threading.Thread(target=_watch, daemon=True).start()
`

// pyListener accepts, handshakes (inside accept) and closes, forever.
const pyListener = pyWatchParent + `from multiprocessing.connection import Listener
from multiprocessing import AuthenticationError
with Listener(("127.0.0.1", 0), authkey=key) as ln:
    print("PORT", ln.address[1], flush=True)
    while True:
        try:
            ln.accept().close()
        except (AuthenticationError, EOFError, OSError):
            pass
`

// pyClient connects in a loop for a warm-up, then counts for a duration, as
// benchkit.Handshakes does. Arguments: port, warm-up and duration in seconds.
const pyClient = pyWatchParent + `import time
from multiprocessing.connection import Client
addr = ("127.0.0.1", int(sys.argv[1]))
def loop(until):
    n = 0
    while time.perf_counter() < until:
        Client(addr, authkey=key).close()
        n += 1
    return n
loop(time.perf_counter() + float(sys.argv[2]))
start = time.perf_counter()
n = loop(start + float(sys.argv[3]))
print("COUNT", n, time.perf_counter() - start, flush=True)
`

// pythonInterp is a CPython interpreter, resolved past any pyenv shim.
type pythonInterp struct {
	exe, version string
}

// findPython looks for python3.12, then python3.13, then python3.
func findPython(ctx context.Context) (*pythonInterp, error) {
	for _, name := range []string{"python3.12", "python3.13", "python3"} {
		path, err := exec.LookPath(name)
		if err != nil {
			continue
		}
		cmd := exec.CommandContext(ctx, path, "-c", "import sys, platform; print(sys.executable); print(platform.python_version())")
		cmd.Env = append(os.Environ(), pyenvVersion)
		out, err := cmd.Output()
		if err != nil {
			continue // a pyenv shim without that version installed
		}
		exe, version, ok := strings.Cut(strings.TrimSpace(string(out)), "\n")
		if ok && exe != "" {
			return &pythonInterp{exe: exe, version: "Python " + version}, nil
		}
	}
	return nil, errors.New("no python3.12, python3.13 or python3")
}

// pyProc is a running Python script.
type pyProc struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines chan string // stdout, closed at its end
}

// startPython runs script with args, hands it the key on stdin and collects
// its stdout lines.
func (b *benchRun) startPython(ctx context.Context, py *pythonInterp, script string, args ...string) (*pyProc, error) {
	cmd := exec.CommandContext(ctx, py.exe, append([]string{"-c", script}, args...)...)
	cmd.Env = append(os.Environ(), pyenvVersion)
	cmd.Stderr = b.stderr
	cmd.WaitDelay = peerExitGrace
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &pyProc{cmd: cmd, stdin: stdin, lines: make(chan string, 4)}
	go func() {
		defer close(p.lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			p.lines <- sc.Text()
		}
	}()
	if _, err := io.WriteString(stdin, hex.EncodeToString(b.key)+"\n"); err != nil {
		p.stop()
		return nil, err
	}
	return p, nil
}

// line waits up to timeout for a stdout line starting with prefix and
// returns the fields after it.
func (p *pyProc) line(prefix string, timeout time.Duration) ([]string, error) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	for {
		select {
		case l, ok := <-p.lines:
			if !ok {
				return nil, fmt.Errorf("python exited before printing %s", prefix)
			}
			if f := strings.Fields(l); len(f) > 0 && f[0] == prefix {
				return f[1:], nil
			}
		case <-t.C:
			return nil, fmt.Errorf("python printed no %s in time", prefix)
		}
	}
}

// stop closes the script's stdin, which makes it exit, and waits for it.
func (p *pyProc) stop() {
	_ = p.stdin.Close()
	_ = p.cmd.Wait()
}

// measureCPython runs CPython's Listener and Client in two processes of
// their own and returns the client's handshakes per second.
func (b *benchRun) measureCPython(ctx context.Context, py *pythonInterp) (float64, error) {
	ln, err := b.startPython(ctx, py, pyListener)
	if err != nil {
		return 0, err
	}
	defer ln.stop()
	f, err := ln.line("PORT", connectTimeout)
	if err != nil || len(f) != 1 {
		return 0, fmt.Errorf("listener: %v %q", err, f)
	}
	secs := func(d time.Duration) string { return strconv.FormatFloat(d.Seconds(), 'f', -1, 64) }
	cl, err := b.startPython(ctx, py, pyClient, f[0], secs(b.opts.warmup), secs(b.opts.dur))
	if err != nil {
		return 0, err
	}
	defer cl.stop()
	f, err = cl.line("COUNT", b.opts.warmup+b.opts.dur+connectTimeout+replyTimeout)
	if err != nil || len(f) != 2 {
		return 0, fmt.Errorf("client: %v %q", err, f)
	}
	n, err1 := strconv.Atoi(f[0])
	s, err2 := strconv.ParseFloat(f[1], 64)
	if err := errors.Join(err1, err2); err != nil || s <= 0 {
		return 0, fmt.Errorf("client: bad count %q: %v", f, err)
	}
	return float64(n) / s, nil
}
