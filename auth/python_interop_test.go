package auth

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/seed0811993b/conclave/internal/frame"
)

// Interop with real CPython: the bytes of ModePython are only right if
// Python's own multiprocessing.connection agrees.

// pyenvVersions makes pyenv's shims resolve python3.13, python3.12 and
// python3.11 at once.
const pyenvVersions = "PYENV_VERSION=3.13.0:3.12.1:3.11.7"

type pyInterp struct {
	path  string // the interpreter itself, not a pyenv shim
	minor int    // 3.minor
}

func (p pyInterp) String() string { return fmt.Sprintf("python3.%d", p.minor) }

var (
	pythonsOnce sync.Once
	pythons     []pyInterp
)

// findPythons returns the interpreters present. None is a skip locally and a
// failure in CI, where a silently skipped interop suite would prove nothing.
func findPythons(t *testing.T) []pyInterp {
	t.Helper()
	pythonsOnce.Do(func() {
		found := make([]*pyInterp, 3)
		var wg sync.WaitGroup
		for i, minor := range []int{13, 12, 11} {
			wg.Go(func() { found[i] = probePython(minor) })
		}
		wg.Wait()
		for _, p := range found {
			if p != nil {
				pythons = append(pythons, *p)
			}
		}
	})
	if len(pythons) == 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("no python3.11/3.12/3.13 found: CI must run the CPython interop tests")
		}
		t.Skip("no python3.11/3.12/3.13 found")
	}
	return pythons
}

// probePython returns python3.minor if it runs, resolved past pyenv's shim:
// the bash shim costs more than Python's own startup, and the tests start
// Python many times.
func probePython(minor int) *pyInterp {
	path, err := exec.LookPath(fmt.Sprintf("python3.%d", minor))
	if err != nil {
		return nil
	}
	cmd := exec.Command(path, "-c", "import sys; print(sys.version_info[1]); print(sys.executable)")
	cmd.Env = append(os.Environ(), pyenvVersions)
	out, err := cmd.Output()
	if err != nil {
		return nil // a pyenv shim without that version installed
	}
	v, exe, ok := strings.Cut(strings.TrimSpace(string(out)), "\n")
	if !ok || v != strconv.Itoa(minor) || exe == "" {
		return nil
	}
	return &pyInterp{exe, minor}
}

// peerProc is a child process that reports on stdout, one line at a time.
type peerProc struct {
	t      testing.TB
	ctx    context.Context
	cmd    *exec.Cmd
	eof    chan struct{} // closed when stdout ends
	notify chan struct{} // a new line or EOF; capacity 1

	// mu guards output and next.
	mu     sync.Mutex
	output []string // every stdout line
	next   int      // the first line line() has not looked at

	waitOnce sync.Once
	waitErr  error
}

// startPeer runs name with args, writes secret to its stdin (so that it never
// shows in argv) and collects its stdout. The process is killed when ctx ends
// or the test does.
func startPeer(t testing.TB, ctx context.Context, secret string, env []string, name string, args ...string) *peerProc {
	t.Helper()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdin = strings.NewReader(secret + "\n")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	cmd.WaitDelay = 2 * time.Second
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &peerProc{t: t, ctx: ctx, cmd: cmd, eof: make(chan struct{}), notify: make(chan struct{}, 1)}
	go func() {
		defer close(p.eof)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			p.mu.Lock()
			p.output = append(p.output, sc.Text())
			p.mu.Unlock()
			select {
			case p.notify <- struct{}{}:
			default:
			}
		}
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = p.waitProc()
		if t.Failed() && stderr.Len() > 0 {
			t.Logf("%s stderr:\n%s", name, stderr.String())
		}
	})
	return p
}

// waitProc waits for exit once; stdout must be drained first (os/exec).
func (p *peerProc) waitProc() error {
	p.waitOnce.Do(func() {
		<-p.eof
		p.waitErr = p.cmd.Wait()
	})
	return p.waitErr
}

// line waits for the next stdout line starting with prefix and returns the
// rest of it.
func (p *peerProc) line(prefix string) string {
	p.t.Helper()
	for {
		p.mu.Lock()
		for p.next < len(p.output) {
			l := p.output[p.next]
			p.next++
			if rest, found := strings.CutPrefix(l, prefix); found {
				p.mu.Unlock()
				return strings.TrimSpace(rest)
			}
		}
		p.mu.Unlock()
		select {
		case <-p.notify:
		case <-p.eof:
			p.mu.Lock()
			more := p.next < len(p.output)
			p.mu.Unlock()
			if !more {
				p.t.Fatalf("peer exited without printing %q; output %q", prefix, p.out())
			}
		case <-p.ctx.Done():
			p.t.Fatalf("peer did not print %q: %v; output %q", prefix, p.ctx.Err(), p.out())
		}
	}
}

func (p *peerProc) out() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.output...)
}

// wait waits for the process to exit and returns its exit code and output.
func (p *peerProc) wait() (int, []string) {
	p.t.Helper()
	err := p.waitProc()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, p.out()
	case errors.As(err, &ee) && ee.Exited():
		return ee.ExitCode(), p.out()
	}
	p.t.Fatalf("peer: %v; output %q", err, p.out())
	return -1, nil
}

// expectExit waits for the process and checks its exit code and that some
// output line starts with want.
func (p *peerProc) expectExit(code int, want string) {
	p.t.Helper()
	got, out := p.wait()
	if got != code || !containsPrefix(out, want) {
		p.t.Fatalf("peer exited %d with output %q; want %d and a line starting %q", got, out, code, want)
	}
}

func containsPrefix(lines []string, prefix string) bool {
	for _, l := range lines {
		if strings.HasPrefix(l, prefix) {
			return true
		}
	}
	return false
}

// pyEchoServe echoes frames on c until the peer closes.
func pyEchoServe(c net.Conn) (int, error) {
	for n := 0; ; n++ {
		p, err := frame.Read(c, 1<<20)
		if errors.Is(err, io.EOF) {
			return n, nil
		}
		if err != nil {
			return n, err
		}
		if _, err := c.Write(frame.Append(nil, p)); err != nil {
			return n, err
		}
	}
}

// pyEchoCheck sends a small and a large frame and checks the echoes.
func pyEchoCheck(t *testing.T, c net.Conn) {
	t.Helper()
	big := make([]byte, 100<<10)
	for i := range big {
		big[i] = byte(i * 7)
	}
	for _, msg := range [][]byte{[]byte("hello from go"), big} {
		if _, err := c.Write(frame.Append(nil, msg)); err != nil {
			t.Fatal(err)
		}
		got, err := frame.Read(c, 1<<20)
		if err != nil || string(got) != string(msg) {
			t.Fatalf("echo of %d bytes: got %d bytes, err %v", len(msg), len(got), err)
		}
	}
}

func TestPythonInterop(t *testing.T) {
	t.Parallel()
	for _, py := range findPythons(t) {
		legacyPeer := py.minor <= 11
		t.Run(py.String(), func(t *testing.T) {
			t.Parallel()
			for _, allowMD5 := range []bool{false, true} {
				name := "strict"
				if allowMD5 {
					name = "PythonLegacyMD5"
				}
				want := "sha256"
				if legacyPeer {
					want = "md5"
				}
				refused := legacyPeer && !allowMD5
				t.Run(name+"/python client", func(t *testing.T) {
					t.Parallel()
					testPyClientToGo(t, py, allowMD5, refused, want)
				})
				t.Run(name+"/python listener", func(t *testing.T) {
					t.Parallel()
					testGoToPyListener(t, py, allowMD5, refused, want)
				})
			}
			t.Run("wrong key/python client", func(t *testing.T) {
				t.Parallel()
				cfg := pyCfg(pyTestKey(t))
				cfg.PythonLegacyMD5 = true
				addr, accepted := pyListen(t, cfg)
				p := runPython(t, py, pyTestKey(t), "mp_client.py", port(t, addr))
				pyWantErr(t, accepted, ErrAuthFailed)
				p.expectExit(2, "AuthenticationError")
			})
			t.Run("wrong key/python listener", func(t *testing.T) {
				t.Parallel()
				p := runPython(t, py, pyTestKey(t), "mp_listener.py")
				cfg := pyCfg(pyTestKey(t))
				cfg.PythonLegacyMD5 = true
				pyWantErr(t, pyDial(t, "127.0.0.1:"+p.line("PORT"), cfg), ErrAuthFailed)
				p.expectExit(2, "AuthenticationError")
			})
		})
	}
}

func runPython(t *testing.T, py pyInterp, key Key, script string, args ...string) *peerProc {
	t.Helper()
	args = append([]string{"testdata/python/" + script}, args...)
	return startPeer(t, pyTestCtx(t), fmt.Sprintf("%x", []byte(key)), []string{pyenvVersions}, py.path, args...)
}

func port(t testing.TB, addr string) string {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func testPyClientToGo(t *testing.T, py pyInterp, allowMD5, refused bool, digest string) {
	key := pyTestKey(t)
	cfg := pyCfg(key)
	cfg.PythonLegacyMD5 = allowMD5
	addr, accepted := pyListen(t, cfg)
	p := runPython(t, py, key, "mp_client.py", port(t, addr))
	if refused {
		err := pyWantErr(t, accepted, ErrLegacyDigest)
		if !strings.Contains(err.Error(), "PythonLegacyMD5") {
			t.Fatalf("error %q does not name Config.PythonLegacyMD5", err)
		}
		p.expectExit(2, "AuthenticationError") // it got #FAILURE#
		return
	}
	r := <-accepted
	if r.err != nil {
		t.Fatalf("handshake with %v: %v; python said %q", py, r.err, p.out())
	}
	if got := r.c.ConnectionState().PythonDigest; got != digest {
		t.Fatalf("PythonDigest = %q, want %q", got, digest)
	}
	if n, err := pyEchoServe(r.c); err != nil || n != 2 {
		t.Fatalf("echoed %d frames: %v", n, err)
	}
	p.expectExit(0, fmt.Sprintf("OK 3.%d", py.minor))
}

func testGoToPyListener(t *testing.T, py pyInterp, allowMD5, refused bool, digest string) {
	key := pyTestKey(t)
	cfg := pyCfg(key)
	cfg.PythonLegacyMD5 = allowMD5
	p := runPython(t, py, key, "mp_listener.py")
	dialed := pyDial(t, "127.0.0.1:"+p.line("PORT"), cfg)
	if refused {
		err := pyWantErr(t, dialed, ErrLegacyDigest)
		if !strings.Contains(err.Error(), "PythonLegacyMD5") {
			t.Fatalf("error %q does not name Config.PythonLegacyMD5", err)
		}
		p.expectExit(3, "EOFError") // we hung up instead of answering
		return
	}
	r := <-dialed
	if r.err != nil {
		t.Fatalf("handshake with %v: %v; python said %q", py, r.err, p.out())
	}
	if got := r.c.ConnectionState().PythonDigest; got != digest {
		t.Fatalf("PythonDigest = %q, want %q", got, digest)
	}
	pyEchoCheck(t, r.c)
	r.c.Close()
	p.expectExit(0, "OK 2")
}

// --- a Go peer in another process ---

// The challenge registry refuses, by design, to let one process answer a
// challenge it issued, so a Go-to-Go ModePython handshake needs two
// processes. TestPythonPeerProcess is that second process: the test binary
// re-runs itself with CONCLAVE_PY_PEER set.
const pyPeerEnv = "CONCLAVE_PY_PEER"

// TestPythonPeerProcess is not a test: it is the child half of
// runGoPeer and does nothing unless pyPeerEnv is set.
func TestPythonPeerProcess(t *testing.T) {
	role := os.Getenv(pyPeerEnv)
	if role == "" {
		return
	}
	line, err := bufio.NewReader(os.Stdin).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	var key []byte
	if _, err := fmt.Sscanf(line, "%x", &key); err != nil {
		t.Fatal(err)
	}
	cfg := &Config{Key: key, Mode: ModePython}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var c *Conn
	switch role {
	case "listen":
		ln, err := Listen("tcp", "127.0.0.1:0", cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		fmt.Println("PORT", port(t, ln.Addr().String()))
		nc, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		c = nc.(*Conn)
		err = c.HandshakeContext(ctx)
		reportHandshake(c, err)
	case "dial":
		c, err = Dial(ctx, "tcp", os.Getenv(pyPeerEnv+"_ADDR"), cfg)
		reportHandshake(c, err)
	default:
		t.Fatalf("unknown role %q", role)
	}
	if c == nil || !c.ConnectionState().HandshakeComplete {
		return
	}
	defer c.Close()
	n, err := pyEchoServe(c)
	fmt.Println("ECHOED", n, err)
}

func reportHandshake(c *Conn, err error) {
	if err == nil {
		fmt.Println("HANDSHAKE ok", c.ConnectionState().PythonDigest)
		return
	}
	for _, s := range []error{ErrAuthFailed, ErrReflected, ErrLegacyDigest, ErrProtocol, ErrHandshakeTimeout} {
		if errors.Is(err, s) {
			fmt.Println("HANDSHAKE error", s)
			return
		}
	}
	fmt.Println("HANDSHAKE error other", err)
}

// runGoPeer starts the test binary as a Go ModePython peer in role "listen"
// or "dial".
func runGoPeer(t *testing.T, key Key, role, addr string) *peerProc {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	env := []string{pyPeerEnv + "=" + role, pyPeerEnv + "_ADDR=" + addr,
		// A race-enabled binary otherwise sleeps a second before exiting.
		"GORACE=" + strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0")}
	return startPeer(t, pyTestCtx(t), fmt.Sprintf("%x", []byte(key)), env, exe, "-test.run=^TestPythonPeerProcess$", "-test.count=1")
}
