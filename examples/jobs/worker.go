package main

import (
	"bufio"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/seed0811993b/conclave/auth"
	"github.com/seed0811993b/conclave/node"
)

// Job asks a worker to count the primes below N.
type Job struct {
	ID int `msgpack:"id"`
	N  int `msgpack:"n"`
}

// Result is a worker's answer to a Job.
type Result struct {
	ID     int    `msgpack:"id"`
	Worker string `msgpack:"worker"`
	Primes int    `msgpack:"primes"`
}

// work runs a worker until ctx ends or, when parent is not nil, until
// parent ends (the demo's pipe: the process that started it is gone), then
// leaves the cluster gracefully.
func work(ctx context.Context, key auth.Key, name, bind, join string, parent io.Reader, stdout io.Writer) error {
	n, err := node.Start(ctx, node.Config{Name: name, Key: key, Bind: bind, Join: []string{join}, Gossip: node.GossipLocal})
	if err != nil {
		return err
	}
	defer n.Close()
	if _, err := node.HandleFunc(n, "job", func(ctx context.Context, m *node.Msg, j Job) (Result, error) {
		if j.N < 0 || j.N > 50_000_000 {
			return Result{}, fmt.Errorf("job %d: n=%d out of range", j.ID, j.N)
		}
		return Result{ID: j.ID, Worker: name, Primes: countPrimes(j.N)}, nil
	}); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "worker %s ready\n", name)

	eof := make(chan struct{}) // stays open without a parent to watch
	if parent != nil {
		go func() { io.Copy(io.Discard, parent); close(eof) }()
	}
	select {
	case <-eof:
	case <-ctx.Done():
	}
	leaveCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return n.Leave(leaveCtx)
}

// countPrimes counts the primes below n with a sieve: real work, a few
// milliseconds for the demo's sizes.
func countPrimes(n int) int {
	if n < 3 {
		return 0
	}
	composite := make([]bool, n)
	count := 0
	for i := 2; i < n; i++ {
		if composite[i] {
			continue
		}
		count++
		for j := i * i; j < n; j += i {
			composite[j] = true
		}
	}
	return count
}

// readKeyLine reads a key written in hex on the first line of r, which it
// then leaves positioned after that line.
func readKeyLine(r io.Reader) (auth.Key, error) {
	br, ok := r.(*bufio.Reader)
	if !ok {
		return nil, errors.New("internal: readKeyLine needs a *bufio.Reader")
	}
	line, err := br.ReadString('\n')
	if err != nil {
		return nil, fmt.Errorf("reading the key from standard input: %w", err)
	}
	b, err := hex.DecodeString(strings.TrimSpace(line))
	if err != nil || len(b) < auth.MinKeyLen {
		return nil, errors.New("standard input's first line is not a key in hex")
	}
	return auth.Key(b), nil
}
