package auth

import (
	"crypto/ecdh"
	"crypto/mlkem"
	"sync"
)

// Ephemeral key generation is a third of a handshake's CPU (X25519 37 us,
// ML-KEM-768 51 us here). keyPool makes a few keys ahead of need so that it
// runs while the process waits on the network, not on the handshake's
// critical path. Each key is handed out once and never reused; nothing is
// generated until the first handshake, and the refill goroutine exits when
// the pool is full.
type keyPool[K any] struct {
	gen  func() (K, error)
	keys chan K

	mu        sync.Mutex
	refilling bool
}

// poolSize is enough for a burst of connections (a node joining a cluster
// dials every peer at once) while holding few secrets in memory.
const poolSize = 8

func newKeyPool[K any](gen func() (K, error)) *keyPool[K] {
	return &keyPool[K]{gen: gen, keys: make(chan K, poolSize)}
}

// get returns a fresh key, from the pool when one is ready.
func (p *keyPool[K]) get() (K, error) {
	defer p.refill()
	select {
	case k := <-p.keys:
		return k, nil
	default:
		return p.gen()
	}
}

func (p *keyPool[K]) refill() {
	p.mu.Lock()
	if p.refilling {
		p.mu.Unlock()
		return
	}
	p.refilling = true
	p.mu.Unlock()
	go func() {
		for {
			k, err := p.gen()
			full := err != nil
			if !full {
				select {
				case p.keys <- k:
				default:
					full = true
				}
			}
			if full || len(p.keys) == cap(p.keys) {
				p.mu.Lock()
				p.refilling = false
				p.mu.Unlock()
				return
			}
		}
	}()
}

// clientKeys is what a native client sends in its hello.
type clientKeys struct {
	x  *ecdh.PrivateKey
	dk *mlkem.DecapsulationKey768
}

var (
	clientKeyPool = newKeyPool(func() (clientKeys, error) {
		x, err := ecdh.X25519().GenerateKey(nil)
		if err != nil {
			return clientKeys{}, err
		}
		dk, err := mlkem.GenerateKey768()
		return clientKeys{x, dk}, err
	})
	serverKeyPool = newKeyPool(func() (*ecdh.PrivateKey, error) {
		return ecdh.X25519().GenerateKey(nil)
	})
)
