package transport_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/seed0811993b/conclave/auth"
	"github.com/seed0811993b/conclave/transport"
)

// Example_users is a listener that requires the cluster key and a user
// login, checked against a credential store (made with `conclave user add`),
// and a client logging in as alice.
func Example_users() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "conclave-example")
	defer os.RemoveAll(dir)
	key, _ := auth.GenerateKey(nil)

	// What `conclave user -store users add alice -roles worker` does.
	store, err := auth.CreateStore(filepath.Join(dir, "users"))
	if err != nil {
		log.Fatal(err)
	}
	cred, err := auth.NewCredential("correct horse", auth.MinSCRAMIterations, nil) // real stores: the 600 000 default
	if err != nil {
		log.Fatal(err)
	}
	cred.Roles = []string{auth.RoleWorker}
	if err := store.Add("alice", cred); err != nil {
		log.Fatal(err)
	}

	users, err := auth.NewSCRAMServer(store, auth.SCRAMServerOptions{})
	if err != nil {
		log.Fatal(err)
	}
	ln, err := transport.Listen("tcp", "127.0.0.1:0", &transport.Config{
		Auth: &auth.Config{Key: key, Users: users, Require: auth.RequireKeyAndUser},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer ln.Close()
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		link, err := transport.Dial(ctx, "tcp", ln.Addr().String(), &transport.Config{
			Auth: &auth.Config{Key: key, User: "alice", Password: "correct horse"},
		})
		if err != nil {
			log.Fatal(err) // a wrong password is auth.ErrAuthFailed
		}
		defer link.Close()
		link.Send(ctx, []byte("hello"))
		link.Flush(ctx)
	}()

	link, err := ln.Accept(ctx)
	if err != nil {
		log.Fatal(err)
	}
	defer link.Close()
	msg, _ := link.Recv(ctx)
	<-sent
	st := link.ConnectionState()
	fmt.Printf("%s from %s %v (%s)\n", msg, st.PeerUser, st.PeerRoles, st.Mechanism)
	// Output: hello from alice [worker] (cluster key and user login)
}
