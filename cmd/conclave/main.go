// Command conclave is the conclave command-line tool.
//
// Usage:
//
//	conclave keygen -o FILE    write a new random 32-byte cluster key, mode 0600
//	conclave bench [-d 3s] [-runs 3] [-json] [link] [handshake]
//	                           measure links and handshakes between two processes
//	conclave user [-store FILE] add NAME [-roles worker] [-topics RULES] | list | del NAME
//	                           | passwd NAME | roles NAME LIST | topics NAME RULES
//	                           manage SCRAM users in a credential store (-store FILE
//	                           or $CONCLAVE_USERS_FILE); see conclave user -h
//	conclave status -connect ADDR [-key FILE] [-user NAME] [-json]
//	                           print a node's members and per-peer counters, as a
//	                           client of the cluster (a monitor user is enough)
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"

	"github.com/seed0811993b/conclave/auth"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		os.Exit(exitCode(ctx, err, os.Stderr))
	}
}

// exitCode reports err and returns the process's exit status: 0 for -h
// (the flag package has printed the usage), 130 when interrupted, the
// status an exitError carries (2 for a usage error), 1 otherwise.
func exitCode(ctx context.Context, err error, stderr io.Writer) int {
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	fmt.Fprintln(stderr, "conclave:", err)
	var e interface{ exitStatus() int }
	switch {
	case errors.As(err, &e):
		return e.exitStatus()
	case ctx.Err() != nil:
		return 130
	}
	return 1
}

const usage = `usage: conclave COMMAND [flags]

commands:
  keygen -o FILE    write a new random 32-byte cluster key (mode 0600)
  bench [-d 3s] [-runs 3] [-json] [link] [handshake]
                    measure links and handshakes between two processes
  user [-store FILE] add NAME [-roles worker] [-topics RULES] | list | del NAME
       | passwd NAME | roles NAME LIST | topics NAME RULES
                    manage SCRAM users in a credential store (-store FILE or
                    $CONCLAVE_USERS_FILE); see conclave user -h
  status -connect ADDR [-key FILE] [-user NAME] [-json]
                    print a node's members and per-peer counters, as a client
                    of the cluster (a monitor user is enough); see conclave status -h
`

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errors.New("no command")
	}
	switch args[0] {
	case "keygen":
		return keygen(args[1:], stdout, stderr)
	case "bench":
		return bench(ctx, args[1:], stdout, stderr)
	case "user":
		return userCommand(ctx, args[1:], os.Stdin, stdout, stderr)
	case "status":
		return statusCommand(ctx, args[1:], os.Stdin, stdout, stderr)
	case "bench-peer": // bench's other process; not for users
		return benchPeer(ctx, os.Stdin, stdout)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return fmt.Errorf("unknown command %q", args[0])
}

func keygen(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("keygen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.String("o", "", "write the key to `file` (must not exist)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *out == "" || fs.NArg() != 0 {
		return errors.New("usage: conclave keygen -o FILE")
	}
	key, err := auth.GenerateKey(nil)
	if err != nil {
		return err
	}
	if err := auth.WriteKeyFile(*out, key); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "conclave: wrote a %d-byte key to %s (mode 0600)\n", len(key), *out)
	return nil
}
