package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/seed0811993b/conclave/auth"
	"github.com/seed0811993b/conclave/node"
)

// coordinate starts a coordinator node on bind and runs jobs on the
// workers that join it.
func coordinate(ctx context.Context, key auth.Key, bind string, jobs, workers int, stdout io.Writer) error {
	n, err := node.Start(ctx, node.Config{Name: "coordinator", Key: key, Bind: bind, Gossip: node.GossipLocal})
	if err != nil {
		return err
	}
	defer n.Close()
	fmt.Fprintf(stdout, "coordinator: gossip on %s; start workers with: jobs -key FILE -name w1 -join %s worker\n", n.GossipAddr(), n.GossipAddr())
	if err := waitWorkers(ctx, n, workers); err != nil {
		return err
	}
	_, err = runJobs(ctx, n, jobs, nil, stdout)
	return err
}

// waitWorkers waits until count members serve "job".
func waitWorkers(ctx context.Context, n *node.Node, count int) error {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for len(n.Servers("job")) < count {
		select {
		case <-tick.C:
		case <-ctx.Done():
			return fmt.Errorf("waiting for %d workers: %w", count, ctx.Err())
		}
	}
	return nil
}

// runJobs runs jobs 1..count, four at a time, each on whichever worker's
// turn it is (RequestAny). A job whose worker fails, leaves or restarts is
// run again elsewhere: the error says the worker is gone, so the job may
// or may not have run there, and counting primes twice is harmless.
// afterResult, if not nil, is called after each result with the number
// done so far. It returns the number of jobs each worker did.
func runJobs(ctx context.Context, n *node.Node, count int, afterResult func(done int), stdout io.Writer) (map[string]int, error) {
	var (
		mu    sync.Mutex
		done  int
		per   = map[string]int{}
		rerun int
		first error
	)
	sem := make(chan struct{}, 4)
	var wg sync.WaitGroup
	for id := 1; id <= count; id++ {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			job := Job{ID: id, N: 200_000 + 10_000*id}
			for {
				var r Result
				err := n.RequestAny(ctx, "job", job, &r)
				if err == nil {
					mu.Lock()
					done++
					per[r.Worker]++
					d := done
					fmt.Fprintf(stdout, "job %2d -> %-3s %d primes below %d\n", r.ID, r.Worker, r.Primes, job.N)
					mu.Unlock()
					if afterResult != nil {
						afterResult(d)
					}
					return
				}
				if errors.Is(err, node.ErrPeerFailed) || errors.Is(err, node.ErrPeerLeft) ||
					errors.Is(err, node.ErrPeerRestarted) || errors.Is(err, node.ErrNoResponders) {
					mu.Lock()
					rerun++
					mu.Unlock()
					fmt.Fprintf(stdout, "job %2d: %v; running it again\n", id, err)
					select {
					case <-time.After(20 * time.Millisecond): // let a lost worker's handler drop out of the rotation
						continue
					case <-ctx.Done():
						err = ctx.Err()
					}
				}
				mu.Lock()
				if first == nil {
					first = fmt.Errorf("job %d: %w", id, err)
				}
				mu.Unlock()
				return
			}
		}()
	}
	wg.Wait()
	if first != nil {
		return per, first
	}
	names := make([]string, 0, len(per))
	for w, c := range per {
		names = append(names, fmt.Sprintf("%s %d", w, c))
	}
	sort.Strings(names)
	fmt.Fprintf(stdout, "%d jobs done (%s), %d run again after losing their worker\n", done, strings.Join(names, ", "), rerun)
	return per, nil
}
