// Command echo is the seed recipe's authenticated echo server and client,
// built on conclave's transport.
//
// Usage:
//
//	echo                                    run a server and a client in one process (demo)
//	echo [-key FILE] [-python [-legacy-md5]] serve ADDR   echo every frame back to its sender
//	echo [-key FILE] [-python [-legacy-md5]] send ADDR MESSAGE...
//
// With no arguments it generates a throwaway key, serves on a loopback port
// and sends "Hello World" through it. Otherwise the key comes from -key or
// $CONCLAVE_KEY_FILE (make one with `conclave keygen -o FILE`); keys never go
// on the command line. -python speaks Python's multiprocessing.connection
// handshake, so Python's Client and Listener can be the other side.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"

	"github.com/seed0811993b/conclave/auth"
	"github.com/seed0811993b/conclave/transport"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return // the flag package printed the usage
		}
		fmt.Fprintln(os.Stderr, "echo:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("echo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	keyFile := fs.String("key", os.Getenv("CONCLAVE_KEY_FILE"), "cluster key `file` (default $CONCLAVE_KEY_FILE)")
	python := fs.Bool("python", false, "speak Python's multiprocessing.connection handshake (plaintext after it)")
	legacy := fs.Bool("legacy-md5", false, "with -python, also accept Python 3.11 and older (HMAC-MD5)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return demo(ctx, stdout)
	}
	if *keyFile == "" {
		return errors.New("no key: pass -key FILE or set CONCLAVE_KEY_FILE (make one with `conclave keygen -o FILE`)")
	}
	key, err := auth.LoadKeyFile(*keyFile)
	if err != nil {
		return err
	}
	cfg := config(key, *python)
	cfg.Auth.PythonLegacyMD5 = *legacy
	switch cmd, rest := fs.Arg(0), fs.Args()[1:]; {
	case cmd == "serve" && len(rest) == 1:
		ln, err := transport.Listen("tcp", rest[0], cfg)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "echo: serving on %s\n", ln.Addr())
		return serve(ctx, ln)
	case cmd == "send" && len(rest) >= 2:
		return send(ctx, cfg, rest[0], rest[1:], stdout)
	}
	fs.Usage()
	return errors.New("usage: echo [-key FILE] [-python] serve ADDR | send ADDR MESSAGE [MESSAGE ...]")
}

func config(key auth.Key, python bool) *transport.Config {
	mode := auth.ModeNative
	if python {
		mode = auth.ModePython
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	return &transport.Config{Auth: &auth.Config{Key: key, Mode: mode}, Logger: logger}
}

// serve echoes every frame of every authenticated peer until ctx ends.
func serve(ctx context.Context, ln *transport.Listener) error {
	defer ln.Close()
	for {
		lk, err := ln.Accept(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		go func() {
			defer lk.Close()
			for {
				p, err := lk.Recv(ctx)
				if err != nil {
					return
				}
				if err := lk.Send(ctx, p); err != nil {
					return
				}
			}
		}()
	}
}

// send dials addr, sends each message and prints what comes back.
func send(ctx context.Context, cfg *transport.Config, addr string, msgs []string, stdout io.Writer) error {
	lk, err := transport.Dial(ctx, "tcp", addr, cfg)
	if err != nil {
		return fmt.Errorf("dial %s: %w", addr, err)
	}
	defer lk.Close()
	st := lk.ConnectionState()
	fmt.Fprintf(stdout, "echo: connected to %s (%s, sealed=%v)\n", addr, st.Mode, st.Sealed)
	for _, m := range msgs {
		if err := lk.Send(ctx, []byte(m)); err != nil {
			return err
		}
		p, err := lk.Recv(ctx)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "echo: %s\n", p)
	}
	return nil
}

// demo runs the whole recipe in one process: a server on a loopback port, a
// client with the right key, and one with a wrong key that must be refused.
func demo(ctx context.Context, stdout io.Writer) error {
	key, err := auth.GenerateKey(nil)
	if err != nil {
		return err
	}
	cfg := config(key, false)
	cfg.Logger = nil // the refused client below is expected; keep the output clean
	ln, err := transport.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		return err
	}
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- serve(sctx, ln) }()
	defer func() { cancel(); <-done }()
	addr := ln.Addr().String()
	fmt.Fprintf(stdout, "echo: demo server on %s with a fresh random key\n", addr)
	if err := send(ctx, cfg, addr, []string{"Hello World"}, stdout); err != nil {
		return err
	}
	wrong, err := auth.GenerateKey(nil)
	if err != nil {
		return err
	}
	err = send(ctx, config(wrong, false), addr, []string{"let me in"}, stdout)
	if !errors.Is(err, auth.ErrAuthFailed) {
		return fmt.Errorf("a client with the wrong key was not refused: %v", err)
	}
	fmt.Fprintf(stdout, "echo: a client with the wrong key was refused: %v\n", err)
	return nil
}
