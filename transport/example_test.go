package transport_test

import (
	"context"
	"fmt"
	"log"

	"github.com/seed0811993b/conclave/auth"
	"github.com/seed0811993b/conclave/transport"
)

// Example is the README's program: an echo server and a client sharing a
// cluster key.
func Example() {
	ctx := context.Background()
	key, err := auth.GenerateKey(nil) // real programs: auth.LoadKeyFile("cluster.key")
	if err != nil {
		log.Fatal(err)
	}
	cfg := &transport.Config{Auth: &auth.Config{Key: key, Name: "worker-1"}}

	ln, err := transport.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		log.Fatal(err)
	}
	defer ln.Close()
	go func() {
		link, err := ln.Accept(ctx) // authenticated; handshakes run off the accept loop
		if err != nil {
			return
		}
		defer link.Close()
		for {
			msg, err := link.Recv(ctx)
			if err != nil {
				return
			}
			if err := link.Send(ctx, msg); err != nil {
				return
			}
		}
	}()

	link, err := transport.Dial(ctx, "tcp", ln.Addr().String(), cfg)
	if err != nil {
		log.Fatal(err) // a wrong key is auth.ErrAuthFailed
	}
	defer link.Close()
	if err := link.Send(ctx, []byte("Hello World")); err != nil {
		log.Fatal(err)
	}
	reply, err := link.Recv(ctx)
	if err != nil {
		log.Fatal(err)
	}
	st := link.ConnectionState()
	fmt.Printf("%s (peer %q, sealed %v)\n", reply, st.PeerName, st.Sealed)
	// Output: Hello World (peer "worker-1", sealed true)
}
