package auth_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"

	"github.com/seed0811993b/conclave/auth"
)

// ExampleDial runs a native handshake between a listener and a dialer that
// share a key, then sends one sealed message.
func ExampleDial() {
	key, err := auth.GenerateKey(nil) // real programs: auth.LoadKeyFile
	if err != nil {
		log.Fatal(err)
	}
	ln, err := auth.Listen("tcp", "127.0.0.1:0", &auth.Config{Key: key, Name: "server"})
	if err != nil {
		log.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		c.Write([]byte("hello, key holder")) // runs the handshake first
	}()

	conn, err := auth.Dial(context.Background(), "tcp", ln.Addr().String(), &auth.Config{Key: key})
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	msg, err := io.ReadAll(conn)
	if err != nil {
		log.Fatal(err)
	}
	st := conn.ConnectionState()
	fmt.Printf("%s (from %q, sealed %v)\n", msg, st.PeerName, st.Sealed)
	// Output: hello, key holder (from "server", sealed true)
}

// ExampleConfig_wrongKey shows how a failed handshake reads.
func ExampleConfig_wrongKey() {
	key1, _ := auth.GenerateKey(nil)
	key2, _ := auth.GenerateKey(nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		auth.Server(c, &auth.Config{Key: key1}).Handshake()
	}()
	_, err = auth.Dial(context.Background(), "tcp", ln.Addr().String(), &auth.Config{Key: key2})
	fmt.Println(errors.Is(err, auth.ErrAuthFailed))
	// Output: true
}
