package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/seed0811993b/conclave/auth"
	"github.com/seed0811993b/conclave/internal/benchkit"
)

// benchOptions are the bench command's flags.
type benchOptions struct {
	dur, warmup time.Duration
	runs        int
	json        bool
	verbose     bool
	what        []string // "link", "handshake"
}

func parseBench(args []string, stderr io.Writer) (*benchOptions, error) {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: conclave bench [-d 3s] [-runs 3] [-warmup 200ms] [-json] [-v] [link] [handshake]")
		fs.PrintDefaults()
	}
	o := &benchOptions{}
	fs.DurationVar(&o.dur, "d", 3*time.Second, "measure each figure for `duration`")
	fs.IntVar(&o.runs, "runs", 3, "run each measurement `n` times and report the median")
	fs.DurationVar(&o.warmup, "warmup", 200*time.Millisecond, "run each measurement this `long` before counting")
	fs.BoolVar(&o.json, "json", false, "print machine-readable JSON instead of the table")
	fs.BoolVar(&o.verbose, "v", false, "report every run on stderr as it finishes")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if o.dur <= 0 || o.runs < 1 || o.warmup < 0 {
		return nil, errors.New("bench: -d must be positive, -runs at least 1, -warmup not negative")
	}
	o.what = fs.Args()
	if len(o.what) == 0 {
		o.what = []string{"link", "handshake"}
	}
	for _, w := range o.what {
		if w != "link" && w != "handshake" {
			return nil, fmt.Errorf("bench: unknown benchmark %q (want link or handshake)", w)
		}
	}
	return o, nil
}

// bench measures conclave between this process and a copy of itself (the
// bench peer) and prints the figures next to their anchors.
func bench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, err := parseBench(args, stderr)
	if err != nil {
		return err
	}
	key, err := auth.GenerateKey(nil)
	if err != nil {
		return err
	}
	b := &benchRun{opts: o, key: key, stderr: stderr}
	b.res = benchResults{Machine: thisMachine(), Duration: o.dur.Seconds(), Warmup: o.warmup.Seconds(), Runs: o.runs}
	b.peer, err = startPeer(ctx, key, stderr)
	if err != nil {
		return err
	}
	defer b.peer.close()
	if slices.Contains(o.what, "link") {
		if err := b.links(ctx); err != nil {
			return err
		}
	}
	if slices.Contains(o.what, "handshake") {
		if b.tlsCert, err = benchkit.SelfSignedCert(); err != nil {
			return err
		}
		if err := b.handshakes(ctx); err != nil {
			return err
		}
	}
	if err := b.peer.close(); err != nil {
		return fmt.Errorf("bench: peer: %w", err)
	}
	if o.json {
		return writeJSON(stdout, &b.res)
	}
	writeTable(stdout, &b.res)
	return nil
}

// progress reports one finished run on stderr when -v is set.
func (b *benchRun) progress(format string, args ...any) {
	if b.opts.verbose {
		fmt.Fprintf(b.stderr, "bench: "+format+"\n", args...)
	}
}
