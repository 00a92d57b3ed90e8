// Command jobs is a distributed job runner on conclave nodes: a
// coordinator hands jobs to worker processes, each job to one worker, and
// re-runs the jobs of a worker that dies.
//
// Usage:
//
//	jobs                                         demo: a coordinator and 3 worker processes, one killed midway
//	jobs [-key FILE] coordinator [-bind ADDR] [-jobs N] [-workers N]
//	jobs [-key FILE] worker -name NAME -join ADDR
//
// Flags may come before or after the subcommand. A worker runs until
// interrupted (SIGINT or SIGTERM), then leaves the cluster.
//
// The key comes from -key or $CONCLAVE_KEY_FILE (make one with `conclave
// keygen -o FILE`); the demo makes a throwaway key and hands it to its
// workers on their standard input, never on the command line.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/seed0811993b/conclave/auth"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], bufio.NewReader(os.Stdin), os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return // the flag package printed the usage
		}
		fmt.Fprintln(os.Stderr, "jobs:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("jobs", flag.ContinueOnError)
	fs.SetOutput(stderr)
	keyFile := fs.String("key", os.Getenv("CONCLAVE_KEY_FILE"), "cluster key `file` (default $CONCLAVE_KEY_FILE)")
	keyStdin := fs.Bool("key-stdin", false, "read the key, in hex, from the first line of standard input (how the demo starts workers)")
	bind := fs.String("bind", "127.0.0.1:0", "gossip `address` to bind")
	join := fs.String("join", "", "gossip `address` of a member to join")
	name := fs.String("name", "", "worker `name`")
	jobs := fs.Int("jobs", 30, "jobs to run (coordinator)")
	workers := fs.Int("workers", 1, "workers to wait for before starting (coordinator)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return demo(ctx, stdout)
	}
	cmd := fs.Arg(0)
	if err := fs.Parse(fs.Args()[1:]); err != nil { // flags after the subcommand
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments after %s: %q", cmd, fs.Args())
	}
	var key auth.Key
	var err error
	switch {
	case *keyStdin:
		key, err = readKeyLine(stdin)
	case *keyFile != "":
		key, err = auth.LoadKeyFile(*keyFile)
	default:
		err = errors.New("no key: pass -key FILE or set CONCLAVE_KEY_FILE (make one with `conclave keygen -o FILE`)")
	}
	if err != nil {
		return err
	}
	switch cmd {
	case "coordinator":
		return coordinate(ctx, key, *bind, *jobs, *workers, stdout)
	case "worker":
		if *name == "" || *join == "" {
			return errors.New("worker needs -name NAME and -join ADDR")
		}
		var parent io.Reader
		if *keyStdin {
			parent = stdin // the demo's pipe: it ends when the demo does
		}
		return work(ctx, key, *name, *bind, *join, parent, stdout)
	}
	fs.Usage()
	return errors.New("usage: jobs [-key FILE] coordinator [-bind ADDR] | worker -name NAME -join ADDR")
}
