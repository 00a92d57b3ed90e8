package auth_test

import (
	"crypto/sha256"
	"fmt"
	"log"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/seed0811993b/conclave/auth"
)

// ExampleSCRAMServer completes a SCRAM-SHA-256 login through the seed's two
// calls: the client proves it knows the password, the server proves it holds
// the user's verifier.
func ExampleSCRAMServer() {
	// Done once, by `conclave user add`: only the verifier is kept.
	// (Real credentials use the default count: pass 0.)
	cred, err := auth.NewCredential("correct horse", auth.MinSCRAMIterations, nil)
	if err != nil {
		log.Fatal(err)
	}
	cred.Roles = []string{auth.RoleWorker}
	server, err := auth.NewSCRAMServer(auth.CredentialMap{"alice": cred}, auth.SCRAMServerOptions{})
	if err != nil {
		log.Fatal(err)
	}

	client, err := auth.NewSCRAMClient("alice", "correct horse", auth.SCRAMClientOptions{})
	if err != nil {
		log.Fatal(err)
	}
	user, cnonce := client.First()                                      // client -> server
	salt, iterations, combined, err := server.ClientFirst(user, cnonce) // server -> client
	if err != nil {
		log.Fatal(err)
	}
	proof, err := client.Final(salt, iterations, combined) // client -> server
	if err != nil {
		log.Fatal(err)
	}
	signature, err := server.ClientFinal(user, combined, proof) // server -> client
	if err != nil {
		log.Fatal(err) // errors.Is(err, auth.ErrSCRAMAuth): unknown user or wrong password
	}
	if err := client.VerifyServer(signature); err != nil {
		log.Fatal(err) // the server does not hold alice's verifier: hang up
	}
	fmt.Println("logged in as", user)
	// Output: logged in as alice
}

// ExampleSCRAMServer_Finish shows the form a handshake uses: the remote
// address for rate limiting, a login bound to the handshake transcript, and
// the user's roles.
func ExampleSCRAMServer_Finish() {
	cred, _ := auth.NewCredential("correct horse", auth.MinSCRAMIterations, nil)
	cred.Roles = []string{auth.RoleAdmin}
	server, _ := auth.NewSCRAMServer(auth.CredentialMap{"alice": cred}, auth.SCRAMServerOptions{})
	client, _ := auth.NewSCRAMClient("alice", "correct horse", auth.SCRAMClientOptions{})

	// Both ends hash the handshake so far; a relayed login sees two hashes.
	transcript := sha256.Sum256([]byte("hello messages, key shares, ..."))

	user, cnonce := client.First()
	ch, err := server.Start(auth.SCRAMStart{User: user, ClientNonce: cnonce, Remote: "192.0.2.10"})
	if err != nil {
		log.Fatal(err)
	}
	proof, _ := client.FinalBound(ch.Salt, ch.Iterations, ch.CombinedNonce, transcript[:])
	login, err := server.Finish(auth.SCRAMProof{
		User: user, CombinedNonce: ch.CombinedNonce, ClientProof: proof,
		ChannelBinding: transcript[:], Remote: "192.0.2.10",
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(login.User, login.Roles, client.VerifyServer(login.ServerSignature))
	// Output: alice [admin] <nil>
}

// ExampleStore keeps users in a credential file, as `conclave user add` and a
// listener do.
func ExampleStore() {
	dir, err := os.MkdirTemp("", "conclave-users")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	store, err := auth.CreateStore(filepath.Join(dir, "users")) // created 0600
	if err != nil {
		log.Fatal(err)
	}
	cred, _ := auth.NewCredential("correct horse", auth.MinSCRAMIterations, nil)
	cred.Roles, err = auth.ParseRoles("worker,monitor")
	if err != nil {
		log.Fatal(err)
	}
	if err := store.Add("pipeline", cred); err != nil {
		log.Fatal(err)
	}
	for _, u := range store.List() {
		fmt.Println(u.Name, u.Credential.Roles, u.Credential.Iterations)
	}
	// A SCRAMServer reads the store directly and sees later changes.
	if _, err := auth.NewSCRAMServer(store, auth.SCRAMServerOptions{}); err != nil {
		log.Fatal(err)
	}
	// Output: pipeline [worker monitor] 4096
}

// ExampleStore_Reload reloads the store on SIGHUP, for operators who expect
// it. A Store also notices changes by itself, within StoreCheckInterval.
func ExampleStore_Reload() {
	store, err := auth.OpenStore(os.Getenv("CONCLAVE_USERS_FILE"))
	if err != nil {
		log.Print(err)
		return
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go func() {
		for range hup {
			if err := store.Reload(); err != nil {
				log.Printf("credential store not reloaded, the previous users stay in force: %v", err)
			}
		}
	}()
}

// ExampleTopicRules limits a user to some topics.
func ExampleTopicRules() {
	rules, err := auth.ParseTopicRules("jobs.*,!jobs.admin")
	if err != nil {
		log.Fatal(err)
	}
	for _, topic := range []string{"jobs.resize", "jobs.admin", "logs"} {
		fmt.Println(topic, rules.Allows(topic))
	}
	// Output:
	// jobs.resize true
	// jobs.admin false
	// logs false
}
