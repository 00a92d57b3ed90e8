package main

import (
	"bufio"
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"

	"github.com/seed0811993b/conclave/auth"
	"github.com/seed0811993b/conclave/node"
)

// demo runs a coordinator here and three workers as child processes of
// this program, kills one of them with SIGKILL after ten jobs, and shows
// the coordinator noticing and re-running that worker's jobs.
func demo(ctx context.Context, stdout io.Writer) error {
	key, err := auth.GenerateKey(nil)
	if err != nil {
		return err
	}
	n, err := node.Start(ctx, node.Config{Name: "coordinator", Key: key, Bind: "127.0.0.1:0", Gossip: node.GossipLocal})
	if err != nil {
		return err
	}
	defer n.Close()
	out := &lockedWriter{w: stdout}
	go func() {
		for ev := range n.Events() {
			if ev.Err != nil {
				fmt.Fprintf(out, "event: %s %s (%v)\n", ev.Member.Name, ev.Kind, ev.Err)
			} else {
				fmt.Fprintf(out, "event: %s %s\n", ev.Member.Name, ev.Kind)
			}
		}
	}()

	exe, err := os.Executable()
	if err != nil {
		return err
	}
	var workers []*child
	defer func() {
		for _, w := range workers {
			w.stop()
		}
	}()
	for _, name := range []string{"w1", "w2", "w3"} {
		w, err := startWorker(ctx, exe, key, name, n.GossipAddr(), out)
		if err != nil {
			return err
		}
		workers = append(workers, w)
	}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := waitWorkers(wctx, n, len(workers)); err != nil {
		return err
	}

	var once sync.Once
	killAfter := func(done int) {
		if done >= 10 {
			once.Do(func() {
				fmt.Fprintln(out, "demo: killing w3 with SIGKILL")
				workers[2].cmd.Process.Kill()
			})
		}
	}
	if _, err := runJobs(wctx, n, 30, killAfter, out); err != nil {
		return err
	}
	for _, w := range workers {
		w.stop()
	}
	return nil
}

// child is a worker process the demo started.
type child struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	once  sync.Once
}

// startWorker starts this program as a worker, hands it the key on its
// standard input and waits until it says it is ready.
func startWorker(ctx context.Context, exe string, key auth.Key, name, join string, out io.Writer) (*child, error) {
	cmd := exec.CommandContext(ctx, exe, "-key-stdin", "-name", name, "-join", join, "worker")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	c := &child{cmd: cmd, stdin: stdin}
	if _, err := fmt.Fprintln(stdin, hex.EncodeToString(key)); err != nil {
		c.stop()
		return nil, err
	}
	lines := bufio.NewScanner(stdout)
	if !lines.Scan() || !strings.Contains(lines.Text(), "ready") {
		c.stop()
		return nil, fmt.Errorf("worker %s did not start", name)
	}
	fmt.Fprintln(out, lines.Text())
	go func() {
		for lines.Scan() {
			fmt.Fprintln(out, lines.Text())
		}
	}()
	return c, nil
}

// stop closes the worker's standard input, which makes it leave the
// cluster and exit, and waits for it.
func (c *child) stop() {
	c.once.Do(func() {
		c.stdin.Close()
		done := make(chan struct{})
		go func() { c.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			c.cmd.Process.Kill()
			<-done
		}
	})
}

// lockedWriter serialises lines from several goroutines.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
