package node

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestLocalRequestHonoursDeadline: a request to this node itself returns at
// its ctx's deadline, as a remote one does, even while the handler is still
// running; Gather's answer from this node does too.
func TestLocalRequestHonoursDeadline(t *testing.T) {
	nodes := startCluster(t, 2, nil)
	a, b := nodes[0], nodes[1]
	release := make(chan struct{})
	defer close(release)
	stuck := func(ctx context.Context, m *Msg) (any, error) {
		<-release // ignores ctx, as a handler stuck in a slow call would
		return "late", nil
	}
	a.Handle("stuck", stuck)
	b.Handle("stuck", stuck)
	waitFor(t, "both handlers known", 5*time.Second, func() bool { return len(a.Servers("stuck")) == 2 })

	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := a.Request(ctx, a.Name(), "stuck", nil, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Request to itself = %v, want context.DeadlineExceeded", err)
	}

	ctx, cancel = context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	res, err := a.Gather(ctx, "stuck", nil)
	if err != nil || len(res) != 2 {
		t.Fatalf("Gather = %v, %v", res, err)
	}
	for _, r := range res {
		if !errors.Is(r.Err, context.DeadlineExceeded) {
			t.Errorf("Gather's answer from %s: %v, want context.DeadlineExceeded", r.From, r.Err)
		}
	}
}

// TestLocalRequestHandlerSeesCancel: the handler of a request to this node
// itself gets a ctx that ends with the caller's.
func TestLocalRequestHandlerSeesCancel(t *testing.T) {
	n := startNode(t, testConfig("solo"))
	ended := make(chan error, 1)
	n.Handle("wait", func(ctx context.Context, m *Msg) (any, error) {
		<-ctx.Done()
		ended <- ctx.Err()
		return nil, ctx.Err()
	})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := n.Request(ctx, "solo", "wait", nil, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Request = %v, want context.DeadlineExceeded", err)
	}
	select {
	case err := <-ended:
		if err == nil {
			t.Fatal("the handler's ctx ended without an error")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the handler's ctx did not end with the caller's")
	}
}

// TestSelfSendEndsOnClose: sends to this node itself that wait for room in
// its full inbox return ErrClosed when the node closes, instead of waiting
// for ever for a consumer that has stopped.
func TestSelfSendEndsOnClose(t *testing.T) {
	c := testConfig("solo")
	c.InboxBytes = 8 << 10
	n := startNode(t, c)
	started := make(chan struct{})
	n.Handle("slow", func(ctx context.Context, m *Msg) (any, error) {
		select {
		case started <- struct{}{}:
		default:
		}
		<-ctx.Done() // holds the inbox's consumer until the node closes
		return nil, nil
	})
	const senders = 4
	errs := make(chan error, senders)
	for range senders {
		go func() {
			var err error
			for err == nil {
				err = n.Send(context.Background(), "solo", "slow", make([]byte, 2048))
			}
			errs <- err
		}()
	}
	<-started
	waitFor(t, "the inbox to fill", 10*time.Second, func() bool {
		n.self.mu.Lock()
		defer n.self.mu.Unlock()
		return n.self.bytes+2048+len("slow") > n.self.max
	})
	n.Close()
	for i := range senders {
		select {
		case err := <-errs:
			if !errors.Is(err, ErrClosed) {
				t.Errorf("sender %d: %v, want ErrClosed", i, err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%d of %d sends to the node itself still wait after Close", senders-i, senders)
		}
	}
}
