package auth

import (
	"bytes"
	"testing"
)

func TestSCRAMKeyCache(t *testing.T) {
	var c scramKeyCache
	c.m = make(map[[32]byte]scramKeySet)
	salt := []byte("salt-0123456789a")
	want1, want2, want3, err := scramClientKeys("pencil", salt, MinSCRAMIterations)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2 { // derived, then cached
		k1, k2, k3, err := c.clientKeys("pencil", salt, MinSCRAMIterations)
		if err != nil || !bytes.Equal(k1, want1) || !bytes.Equal(k2, want2) || !bytes.Equal(k3, want3) {
			t.Fatalf("call %d: keys differ from scramClientKeys (%v)", i, err)
		}
		k1[0] ^= 1 // a caller scribbling on its copy must not reach the cache
	}
	if len(c.m) != 1 {
		t.Fatalf("%d entries after two calls, want 1", len(c.m))
	}
	// Any change of password, salt or count is another entry, never a hit.
	other, _, _, _ := c.clientKeys("pencil2", salt, MinSCRAMIterations)
	moved, _, _, _ := c.clientKeys("pencil", append([]byte{1}, salt...), MinSCRAMIterations)
	more, _, _, _ := c.clientKeys("pencil", salt, MinSCRAMIterations+1)
	for _, k := range [][]byte{other, moved, more} {
		if bytes.Equal(k, want1) {
			t.Fatal("another password, salt or count gave the same key")
		}
	}
	// A server handing out fresh salts cannot grow it without bound.
	for i := range maxCachedSCRAMKeys + 10 {
		c.clientKeys("pencil", []byte{byte(i), byte(i >> 8)}, MinSCRAMIterations)
	}
	if len(c.m) > maxCachedSCRAMKeys {
		t.Fatalf("%d entries, bound %d", len(c.m), maxCachedSCRAMKeys)
	}
}

// TestSCRAMClientCachedWrongPassword: a cached login does not let a wrong
// password through.
func TestSCRAMClientCachedWrongPassword(t *testing.T) {
	users := userServer(t)
	for range 2 {
		if side, err := scramLogin(t, users, "alice", "pencil"); err != nil {
			t.Fatalf("%s: %v", side, err)
		}
	}
	if _, err := scramLogin(t, users, "alice", "pencil!"); err == nil {
		t.Fatal("a wrong password logged in after a cached login")
	}
}
