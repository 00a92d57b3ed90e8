package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// Reading a password. From a terminal, it is read with echo turned off (see
// withEchoOff), after a prompt on stderr, and typed twice when it is a new
// password. From anything else (a pipe, a file), it is one line, read
// without a prompt: the trailing newline is stripped, nothing else. A
// password is never taken from an argument or the environment, where other
// users and logs could see it.

// maxPasswordLen bounds a password, in bytes.
const maxPasswordLen = 1024

var (
	errEmptyPassword    = errors.New("empty password refused")
	errPasswordMismatch = errors.New("the two passwords differ; nothing changed")
	errInterrupted      = exitError{130, "interrupted; nothing changed"}
)

// readPassword reads a password from in. When in is a terminal it prompts on
// stderr with prompt and, if confirm, asks again and requires the same
// answer. Reading from anything else stops with errInterrupted when ctx is
// done (main's ctx is on Ctrl-C); a terminal read exits the process on
// Ctrl-C instead (see withEchoOff).
func readPassword(ctx context.Context, in io.Reader, stderr io.Writer, prompt string, confirm bool) (string, error) {
	if f, ok := in.(*os.File); ok && isTerminal(f) {
		var pw string
		err := withEchoOff(f, stderr, func() error {
			var err error
			pw, err = promptPassword(f, stderr, prompt, confirm)
			return err
		})
		return pw, err
	}
	type result struct {
		line string
		err  error
	}
	done := make(chan result, 1)
	go func() { // left blocked in Read if ctx ends first: the process is about to exit
		line, err := readLine(in, "stdin")
		done <- result{line, err}
	}()
	var line string
	select {
	case r := <-done:
		if r.err != nil {
			return "", r.err
		}
		line = r.line
	case <-ctx.Done():
		return "", errInterrupted
	}
	if strings.HasSuffix(line, "\r") {
		// Most likely a file with CRLF line ends: taking the '\r' as part of
		// the password would lock the user out without a clue.
		return "", errors.New("the password on stdin ends in a carriage return (CRLF line end?); send it with a plain \\n line end")
	}
	return line, checkPassword(line)
}

// promptPassword reads the password from a terminal whose echo is off.
func promptPassword(f *os.File, stderr io.Writer, prompt string, confirm bool) (string, error) {
	fmt.Fprint(stderr, prompt)
	pw, err := readLine(f, "the terminal")
	fmt.Fprintln(stderr) // the Enter key was not echoed
	if err != nil {
		return "", err
	}
	if err := checkPassword(pw); err != nil {
		return "", err
	}
	if !confirm {
		return pw, nil
	}
	fmt.Fprint(stderr, "Again: ")
	again, err := readLine(f, "the terminal")
	fmt.Fprintln(stderr)
	if err != nil {
		return "", err
	}
	if again != pw {
		return "", errPasswordMismatch
	}
	return pw, nil
}

// exitError is an error for which main exits with status code.
type exitError struct {
	code int
	msg  string
}

func (e exitError) Error() string   { return e.msg }
func (e exitError) exitStatus() int { return e.code }

func checkPassword(pw string) error {
	if pw == "" {
		return errEmptyPassword
	}
	return nil
}

// readLine reads one line from r, a byte at a time so as not to read past it,
// and returns it without its '\n'. A last line without '\n' counts; no input
// at all is an error.
func readLine(r io.Reader, what string) (string, error) {
	var line []byte
	var b [1]byte
	for {
		n, err := r.Read(b[:])
		if n == 1 {
			if b[0] == '\n' {
				return string(line), nil
			}
			if len(line) == maxPasswordLen {
				return "", fmt.Errorf("password longer than %d bytes", maxPasswordLen)
			}
			line = append(line, b[0])
			continue
		}
		if errors.Is(err, io.EOF) {
			if len(line) == 0 {
				return "", fmt.Errorf("no password: end of input on %s", what)
			}
			return string(line), nil
		}
		if err != nil {
			return "", fmt.Errorf("read the password from %s: %w", what, err)
		}
	}
}
