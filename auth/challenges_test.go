package auth

import (
	"testing"
	"time"
)

func TestChallengeRegistry(t *testing.T) {
	now := time.Unix(1000, 0)
	r := newChallengeRegistry(3, func() time.Time { return now })
	a, b := []byte("challenge a"), []byte("challenge b")

	ra := r.register(a, time.Minute, endpoints{})
	if !r.contains(a) || r.contains(b) {
		t.Fatal("contains after one register")
	}
	r.release(ra)
	r.release(ra) // idempotent
	r.release(nil)
	if r.contains(a) || r.len() != 0 {
		t.Fatal("released challenge still there")
	}

	// Two handshakes with the same pinned random: one ending must not
	// unprotect the other.
	r1, r2 := r.register(a, time.Minute, endpoints{}), r.register(a, time.Minute, endpoints{})
	r.release(r1)
	if !r.contains(a) {
		t.Fatal("duplicate registration lost when the first was released")
	}
	r.release(r2)
	if r.contains(a) {
		t.Fatal("challenge survived both releases")
	}

	// Expiry: an abandoned handshake is forgotten.
	r.register(a, time.Minute, endpoints{})
	now = now.Add(59 * time.Second)
	r.register(b, time.Minute, endpoints{})
	if !r.contains(a) {
		t.Fatal("expired early")
	}
	now = now.Add(time.Second)
	if r.contains(a) || !r.contains(b) {
		t.Fatal("expiry wrong")
	}

	// The bound evicts the oldest.
	r.register([]byte("c"), time.Minute, endpoints{})
	r.register([]byte("d"), time.Minute, endpoints{})
	r.register([]byte("e"), time.Minute, endpoints{})
	if r.len() != 3 || r.contains(b) || !r.contains([]byte("c")) || !r.contains([]byte("e")) {
		t.Fatalf("eviction wrong: len %d", r.len())
	}
}

func TestChallengeRegistryConcurrent(t *testing.T) {
	r := newChallengeRegistry(1000, time.Now)
	done := make(chan struct{})
	for g := range 8 {
		go func() {
			defer func() { done <- struct{}{} }()
			for i := range 500 {
				c := []byte{byte(g), byte(i), byte(i >> 8)}
				reg := r.register(c, time.Minute, endpoints{})
				if !r.contains(c) {
					t.Error("lost a registration")
				}
				r.release(reg)
			}
		}()
	}
	for range 8 {
		<-done
	}
	if r.len() != 0 {
		t.Fatalf("%d registrations left", r.len())
	}
}

func TestChallengeBoundToConnection(t *testing.T) {
	r := newChallengeRegistry(10, time.Now)
	m := []byte("{sha256}challenge")
	issuer := endpoints{local: "127.0.0.1:7000", remote: "127.0.0.1:5555"}
	r.register(m, time.Minute, issuer)
	for _, tc := range []struct {
		name      string
		answerer  endpoints
		reflected bool
	}{
		{"same connection, other end", endpoints{local: "127.0.0.1:5555", remote: "127.0.0.1:7000"}, false},
		{"another connection", endpoints{local: "127.0.0.1:5556", remote: "127.0.0.1:7000"}, true},
		{"the issuing end itself", issuer, true},
		{"unknown connection", endpoints{}, true},
	} {
		if got := r.reflected(m, tc.answerer); got != tc.reflected {
			t.Errorf("%s: reflected = %v, want %v", tc.name, got, tc.reflected)
		}
	}
	// An unbound registration (not TCP) protects against every answerer.
	r.register([]byte("other"), time.Minute, endpoints{})
	if !r.reflected([]byte("other"), endpoints{}) {
		t.Error("an unbound challenge was answerable")
	}
}
