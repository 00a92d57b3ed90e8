//go:build linux

package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// openPTY opens a pseudo-terminal pair, closed when the test ends.
func openPTY(t *testing.T) (master, slave *os.File) {
	t.Helper()
	master, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminal: %v", err)
	}
	t.Cleanup(func() { master.Close() })
	var n int
	err = control(master, func(fd int) error {
		if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil { // unlockpt
			return err
		}
		var err error
		n, err = unix.IoctlGetInt(fd, unix.TIOCGPTN) // ptsname
		return err
	})
	if err != nil {
		t.Fatalf("set up the pseudo-terminal: %v", err)
	}
	slave, err = os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("open the pseudo-terminal's slave: %v", err)
	}
	t.Cleanup(func() { slave.Close() })
	return master, slave
}

func mustTermios(t *testing.T, f *os.File) *unix.Termios {
	t.Helper()
	tio, err := getTermios(f)
	if err != nil {
		t.Fatalf("termios: %v", err)
	}
	return tio
}

// TestEchoOff checks withEchoOff on a pseudo-terminal: echo off inside,
// line editing and signal keys on, and every setting as before afterwards,
// whether fn returns, fails or panics.
func TestEchoOff(t *testing.T) {
	_, slave := openPTY(t)
	if !isTerminal(slave) {
		t.Fatal("isTerminal(pty) = false")
	}
	if r, w, err := os.Pipe(); err == nil {
		if isTerminal(r) || isTerminal(w) {
			t.Error("isTerminal(pipe) = true")
		}
		r.Close()
		w.Close()
	}
	before := mustTermios(t, slave)
	if before.Lflag&unix.ECHO == 0 {
		t.Fatal("a new pseudo-terminal echoes nothing: cannot test")
	}
	inside := func() error {
		tio := mustTermios(t, slave)
		if tio.Lflag&(unix.ECHO|unix.ECHONL) != 0 || tio.Lflag&(unix.ICANON|unix.ISIG) != unix.ICANON|unix.ISIG {
			t.Errorf("inside withEchoOff: lflag %#x, want ECHO and ECHONL off, ICANON and ISIG on", tio.Lflag)
		}
		return nil
	}
	failure := errors.New("fn failed")
	for _, fn := range []func() error{
		inside,
		func() error { inside(); return failure },
		func() error { inside(); panic("fn panicked") },
	} {
		func() {
			defer func() { _ = recover() }()
			_ = withEchoOff(slave, io.Discard, fn)
		}()
		if after := mustTermios(t, slave); *after != *before {
			t.Errorf("settings not restored:\nbefore %+v\nafter  %+v", *before, *after)
		}
	}
	if err := withEchoOff(slave, io.Discard, func() error { return failure }); err != failure {
		t.Errorf("withEchoOff returned %v, want fn's error", err)
	}
}

// ptyOutput collects what the master side of a pseudo-terminal reads: what
// the terminal would show.
type ptyOutput struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func readPTY(master *os.File) *ptyOutput {
	o := &ptyOutput{}
	go func() {
		b := make([]byte, 4096)
		for {
			n, err := master.Read(b)
			o.mu.Lock()
			o.buf.Write(b[:n])
			o.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	return o
}

func (o *ptyOutput) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.buf.String()
}

// waitFor waits until the terminal has shown s.
func (o *ptyOutput) waitFor(t *testing.T, s string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(o.String(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("the terminal never showed %q; it shows %q", s, o.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// ptyCommand starts the built conclave with a pseudo-terminal as its
// controlling terminal, stdin and stderr, as in an interactive shell.
func ptyCommand(t *testing.T, bin string, slave *os.File, args ...string) (*exec.Cmd, *bytes.Buffer) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	cmd := exec.CommandContext(ctx, bin, args...) // killed if it hangs
	var stdout bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, &stdout, slave
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd, &stdout
}

// checkRestored checks that the command left the terminal as it found it
// and that it echoes again; the marker's echo also shows that everything the
// terminal printed before has been read.
func checkRestored(t *testing.T, master, slave *os.File, out *ptyOutput, before *unix.Termios) {
	t.Helper()
	if after := mustTermios(t, slave); *after != *before {
		t.Errorf("terminal settings not restored:\nbefore %+v\nafter  %+v", *before, *after)
	}
	if _, err := master.Write([]byte("echo-is-back\r")); err != nil {
		t.Fatal(err)
	}
	out.waitFor(t, "echo-is-back")
	// Discard the marker line from the terminal's input.
	_ = control(slave, func(fd int) error { return unix.IoctlSetInt(fd, unix.TCFLSH, unix.TCIFLUSH) })
}

// TestUserTerminal runs the built conclave on a pseudo-terminal, as a user
// at a shell would: the password is typed after the prompt, twice, never
// shown, and the terminal is left as it was, also on Ctrl-C.
func TestUserTerminal(t *testing.T) {
	bin := buildConclave(t)
	dir := t.TempDir()
	store := filepath.Join(dir, "users")
	const password, newPassword = "tty-s3cret-pw", "tty-n3w-pw"

	t.Run("add", func(t *testing.T) {
		master, slave := openPTY(t)
		out := readPTY(master)
		before := mustTermios(t, slave)
		cmd, stdout := ptyCommand(t, bin, slave, "user", "-store", store, "add", "alice", "-roles", "admin", "-iterations", testIterations)
		out.waitFor(t, "Password for alice: ")
		master.Write([]byte(password + "\r")) // Enter sends CR
		out.waitFor(t, "Again: ")
		master.Write([]byte(password + "\r"))
		if err := cmd.Wait(); err != nil {
			t.Fatalf("add: %v\nterminal: %q", err, out.String())
		}
		checkRestored(t, master, slave, out, before)
		if strings.Contains(out.String(), password) || strings.Contains(stdout.String(), password) {
			t.Errorf("the password was shown: terminal %q", out.String())
		}
		if !strings.Contains(stdout.String(), "added user alice") {
			t.Errorf("stdout %q", stdout.String())
		}
		if err := login(t, store, "alice", password); err != nil {
			t.Errorf("login with the typed password: %v", err)
		}
	})

	t.Run("passwd", func(t *testing.T) {
		master, slave := openPTY(t)
		out := readPTY(master)
		before := mustTermios(t, slave)
		cmd, _ := ptyCommand(t, bin, slave, "user", "-store", store, "passwd", "alice", "-iterations", testIterations)
		out.waitFor(t, "New password for alice: ")
		master.Write([]byte(newPassword + "\r"))
		out.waitFor(t, "Again: ")
		master.Write([]byte(newPassword + "\r"))
		if err := cmd.Wait(); err != nil {
			t.Fatalf("passwd: %v\nterminal: %q", err, out.String())
		}
		checkRestored(t, master, slave, out, before)
		if strings.Contains(out.String(), newPassword) {
			t.Errorf("the password was shown: terminal %q", out.String())
		}
		if err := login(t, store, "alice", newPassword); err != nil {
			t.Errorf("login with the new password: %v", err)
		}
	})

	t.Run("mismatch", func(t *testing.T) {
		master, slave := openPTY(t)
		out := readPTY(master)
		before := mustTermios(t, slave)
		cmd, _ := ptyCommand(t, bin, slave, "user", "-store", store, "passwd", "alice", "-iterations", testIterations)
		out.waitFor(t, "New password for alice: ")
		master.Write([]byte("first-try\r"))
		out.waitFor(t, "Again: ")
		master.Write([]byte("second-try\r"))
		err := cmd.Wait()
		if code := cmd.ProcessState.ExitCode(); code != 1 {
			t.Errorf("exit status %d (%v), want 1", code, err)
		}
		out.waitFor(t, "the two passwords differ; nothing changed")
		checkRestored(t, master, slave, out, before)
		if s := out.String(); strings.Contains(s, "first-try") || strings.Contains(s, "second-try") {
			t.Errorf("a password was shown: terminal %q", s)
		}
		if err := login(t, store, "alice", newPassword); err != nil {
			t.Errorf("the password changed after a mismatch: %v", err)
		}
	})

	t.Run("ctrl-c", func(t *testing.T) {
		master, slave := openPTY(t)
		out := readPTY(master)
		before := mustTermios(t, slave)
		other := filepath.Join(dir, "other")
		cmd, _ := ptyCommand(t, bin, slave, "user", "-store", other, "add", "bob", "-iterations", testIterations)
		out.waitFor(t, "Password for bob: ")
		master.Write([]byte("half-typed"))
		time.Sleep(50 * time.Millisecond)
		master.Write([]byte{0x03}) // Ctrl-C: the terminal sends SIGINT
		err := cmd.Wait()
		if code := cmd.ProcessState.ExitCode(); code != 130 {
			t.Errorf("exit status %d (%v), want 130", code, err)
		}
		checkRestored(t, master, slave, out, before)
		if strings.Contains(out.String(), "half-typed") {
			t.Errorf("the password was shown: terminal %q", out.String())
		}
		if _, err := os.Stat(other); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("an interrupted add created the store: %v", err)
		}
	})

	// Exit statuses of the binary, with stdin a pipe.
	t.Run("exit status", func(t *testing.T) {
		for _, c := range []struct {
			stdin string
			args  []string
			code  int
		}{
			{"", []string{"user"}, 2},
			{"", []string{"user", "-store", store, "add", "x", "-roles", "root"}, 2},
			{"", []string{"user", "-store", filepath.Join(dir, "missing"), "list"}, 1},
			{"", []string{"user", "-store", store, "del", "nobody"}, 1},
			{"piped pw\n", []string{"user", "-store", store, "add", "carol", "-iterations", testIterations}, 0},
			{"", []string{"user", "-store", store, "list"}, 0},
		} {
			cmd := exec.Command(bin, c.args...)
			cmd.Stdin = strings.NewReader(c.stdin)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			_ = cmd.Run()
			if code := cmd.ProcessState.ExitCode(); code != c.code {
				t.Errorf("conclave %s: exit status %d, want %d\n%s", strings.Join(c.args, " "), code, c.code, stderr.String())
			}
			if c.code == 1 && strings.Count(stderr.String(), "\n") != 1 {
				t.Errorf("conclave %s: stderr is not one line: %q", strings.Join(c.args, " "), stderr.String())
			}
		}
		if err := login(t, store, "carol", "piped pw"); err != nil {
			t.Errorf("login with the piped password: %v", err)
		}
	})
}
