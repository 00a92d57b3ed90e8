package node

import (
	"encoding/binary"
	"net"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
)

// A process without the key opens gossip streams that each announce a
// sealed message just under memberlist's 20 MiB limit and send all but its
// last byte. memberlist would buffer every one of them whole, for the
// profile's TCP timeout; the guarded transport reads at most
// gossipStreamMaxBytes of gossipStreams streams at once.
func TestGossipStreamsBounded(t *testing.T) {
	cfg := testConfig("victim")
	cfg.Gossip = GossipLAN // 10 s TCP timeout: long enough to pile up
	victim := startNode(t, cfg)
	addr := victim.GossipAddr()

	heap := func() uint64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapInuse
	}
	const conns = 24
	const declared = 20<<20 - 16
	chunk := make([]byte, 1<<20)
	before := heap()
	var wg sync.WaitGroup
	held := make([]net.Conn, conns)
	sent := make([]int, conns)
	for i := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Error(err)
				return
			}
			held[i] = c
			if err := memberlist.AddLabelHeaderToStream(c, discoLabelPrefix+cfg.Cluster); err != nil {
				return
			}
			var h [5]byte
			h[0] = 10 // memberlist's encryptMsg
			binary.BigEndian.PutUint32(h[1:], declared)
			if _, err := c.Write(h[:]); err != nil {
				return
			}
			for sent[i] < declared-1 {
				_ = c.SetWriteDeadline(time.Now().Add(3 * time.Second)) // a waiting stream is not read
				n, err := c.Write(chunk[:min(len(chunk), declared-1-sent[i])])
				sent[i] += n
				if err != nil {
					return // the victim cut it off
				}
			}
		}()
	}
	wg.Wait()
	during := heap()
	defer func() {
		for _, c := range held {
			if c != nil {
				c.Close()
			}
		}
	}()
	whole := 0
	for _, n := range sent {
		if n >= declared-1 {
			whole++
		}
	}
	t.Logf("heap %d MiB before, %d MiB with %d streams open; %d of them sent all %d MiB",
		before>>20, during>>20, conns, whole, declared>>20)
	if during > before+64<<20 {
		t.Fatalf("a process without the key grew the node's heap by %d MiB", (during-before)>>20)
	}
	if whole > 0 {
		t.Fatalf("%d streams were read past %d bytes", whole, gossipStreamMaxBytes)
	}

	// The gossip still works: a member with the key joins.
	jcfg := testConfig("joiner")
	jcfg.Gossip = GossipLAN
	jcfg.Join = []string{addr}
	joiner := startNode(t, jcfg)
	ctx := testCtx(t, 20*time.Second)
	if err := joiner.WaitPeer(ctx, "victim"); err != nil {
		t.Fatal(err)
	}
}
