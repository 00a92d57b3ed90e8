package node

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkSend measures one-way messages through the public API between
// two nodes in one process (sealed links over loopback TCP). conclave
// bench and examples/bench measure across processes.
func BenchmarkSend(b *testing.B) {
	for _, size := range []int{64, 1024, 64 << 10} {
		b.Run(fmt.Sprintf("%dB", size), func(b *testing.B) {
			nodes := startCluster(b, 2, nil)
			var got atomic.Int64
			done := make(chan struct{})
			want := int64(b.N)
			nodes[1].Handle("sink", func(ctx context.Context, m *Msg) (any, error) {
				if got.Add(1) == want {
					close(done)
				}
				return nil, nil
			})
			ctx := context.Background()
			payload := make([]byte, size)
			b.SetBytes(int64(size))
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				if err := nodes[0].Send(ctx, "n1", "sink", payload); err != nil {
					b.Fatal(err)
				}
			}
			select {
			case <-done:
			case <-time.After(60 * time.Second):
				b.Fatalf("only %d of %d arrived", got.Load(), b.N)
			}
		})
	}
}

// BenchmarkRequest measures sequential request/reply round trips.
func BenchmarkRequest(b *testing.B) {
	nodes := startCluster(b, 2, nil)
	nodes[1].Handle("echo", func(ctx context.Context, m *Msg) (any, error) { return m.Data(), nil })
	ctx := context.Background()
	payload := make([]byte, 64)
	var out []byte
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if err := nodes[0].Request(ctx, "n1", "echo", payload, &out); err != nil {
			b.Fatal(err)
		}
	}
}
