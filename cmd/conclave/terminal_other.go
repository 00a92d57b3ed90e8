//go:build !(aix || darwin || dragonfly || freebsd || linux || netbsd || openbsd || solaris)

package main

import (
	"fmt"
	"io"
	"os"
	"runtime"
)

// isTerminal reports whether f may be a terminal. This platform has no
// termios, so any character device counts: withEchoOff then refuses it rather
// than read a password that the console would echo.
func isTerminal(f *os.File) bool {
	info, err := f.Stat()
	return err == nil && info.Mode()&os.ModeCharDevice != 0
}

func withEchoOff(*os.File, io.Writer, func() error) error {
	return fmt.Errorf("cannot turn off the terminal's echo on %s: send the password on stdin from a pipe or a file instead", runtime.GOOS)
}
