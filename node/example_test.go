package node_test

import (
	"context"
	"fmt"
	"log"
	"strings"
	"time"

	"github.com/seed0811993b/conclave/auth"
	"github.com/seed0811993b/conclave/node"
)

// Example starts two nodes in one process, as two processes of a cluster
// would, and sends a request from one to the other.
func Example() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	key, err := auth.GenerateKey(nil) // real programs: auth.LoadKeyFile("cluster.key")
	if err != nil {
		log.Fatal(err)
	}

	worker, err := node.Start(ctx, node.Config{Name: "worker", Key: key, Bind: "127.0.0.1:0"})
	if err != nil {
		log.Fatal(err)
	}
	defer worker.Close()
	node.HandleFunc(worker, "upper", func(ctx context.Context, m *node.Msg, s string) (string, error) {
		return strings.ToUpper(s), nil
	})

	client, err := node.Start(ctx, node.Config{Name: "client", Key: key, Join: []string{worker.GossipAddr()}})
	if err != nil {
		log.Fatal(err) // a wrong key fails here: the gossip refuses it
	}
	defer client.Close()
	if err := client.WaitPeer(ctx, "worker"); err != nil {
		log.Fatal(err)
	}

	out, err := node.Call[string](ctx, client, "worker", "upper", "hello")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(out)
	// Output: HELLO
}
