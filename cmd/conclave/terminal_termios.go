//go:build aix || darwin || dragonfly || freebsd || linux || netbsd || openbsd || solaris

package main

import (
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"golang.org/x/sys/unix"
)

// isTerminal reports whether f is a terminal: whether it has termios
// settings.
func isTerminal(f *os.File) bool {
	_, err := getTermios(f)
	return err == nil
}

// withEchoOff runs fn with the terminal f's echo turned off, and restores the
// terminal's settings afterwards, whatever fn returns or panics. Line editing
// (ICANON) and signal keys (ISIG) stay on; a SIGINT (Ctrl-C), SIGTERM or
// SIGHUP arriving meanwhile restores the settings, ends the line on stderr and
// exits with status 128+signal (130 for Ctrl-C), rather than leaving the
// shell without echo.
func withEchoOff(f *os.File, stderr io.Writer, fn func() error) error {
	saved, err := getTermios(f)
	if err != nil {
		return fmt.Errorf("read the terminal's settings: %w", err)
	}
	restore := func() { _ = setTermios(f, saved) }
	stop := exitOnSignal(restore, stderr)
	defer func() {
		stop()
		restore()
	}()
	quiet := *saved
	quiet.Lflag &^= unix.ECHO | unix.ECHONL
	quiet.Lflag |= unix.ICANON | unix.ISIG
	quiet.Iflag |= unix.ICRNL
	if err := setTermios(f, &quiet); err != nil {
		return fmt.Errorf("turn off the terminal's echo: %w", err)
	}
	return fn()
}

// exitOnSignal makes SIGINT, SIGTERM and SIGHUP (those not ignored) call
// restore and exit until stop is called.
func exitOnSignal(restore func(), stderr io.Writer) (stop func()) {
	var sigs []os.Signal
	for _, s := range []os.Signal{os.Interrupt, syscall.SIGTERM, syscall.SIGHUP} {
		if !signal.Ignored(s) {
			sigs = append(sigs, s)
		}
	}
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, sigs...)
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		select {
		case sig := <-ch:
			restore()
			fmt.Fprintln(stderr)
			code := 130
			if s, ok := sig.(syscall.Signal); ok {
				code = 128 + int(s)
			}
			os.Exit(code)
		case <-done:
		}
	}()
	return func() {
		signal.Stop(ch)
		close(done)
		<-finished // never returns if a signal is being handled: the process is exiting
	}
}

func getTermios(f *os.File) (*unix.Termios, error) {
	var t *unix.Termios
	err := control(f, func(fd int) error {
		var err error
		t, err = unix.IoctlGetTermios(fd, ioctlGetTermios)
		return err
	})
	return t, err
}

func setTermios(f *os.File, t *unix.Termios) error {
	return control(f, func(fd int) error { return unix.IoctlSetTermios(fd, ioctlSetTermios, t) })
}

// control runs fn on f's descriptor without f.Fd, which would switch f to
// blocking mode.
func control(f *os.File, fn func(fd int) error) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) { ferr = fn(int(fd)) }); err != nil {
		return err
	}
	return ferr
}
