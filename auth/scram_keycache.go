package auth

import (
	"crypto/sha256"
	"encoding/binary"
	"slices"
	"sync"
)

// scramKeys remembers the keys PBKDF2 derived for recent (password, salt,
// iterations), so that a process that logs in again and again as the same
// user (a node redialling its peers, a client reconnecting) pays the
// deliberately slow derivation once, not once per connection. The keys
// are password equivalents for that salt, held only in memory, as the
// password itself is.
var scramKeys = scramKeyCache{m: make(map[[sha256.Size]byte]scramKeySet)}

// maxCachedSCRAMKeys bounds the cache: a server choosing new salts can
// only evict entries, each costing it a PBKDF2 run on our side.
const maxCachedSCRAMKeys = 64

type scramKeySet struct{ clientKey, storedKey, serverKey []byte }

type scramKeyCache struct {
	mu sync.Mutex
	m  map[[sha256.Size]byte]scramKeySet
}

// clientKeys returns scramClientKeys(password, salt, iterations), from the
// cache when it can.
func (c *scramKeyCache) clientKeys(password string, salt []byte, iterations int) (clientKey, storedKey, serverKey []byte, err error) {
	id := scramKeyID(password, salt, iterations)
	c.mu.Lock()
	ks, ok := c.m[id]
	c.mu.Unlock()
	if ok {
		return slices.Clone(ks.clientKey), slices.Clone(ks.storedKey), slices.Clone(ks.serverKey), nil
	}
	clientKey, storedKey, serverKey, err = scramClientKeys(password, salt, iterations)
	if err != nil {
		return nil, nil, nil, err
	}
	c.mu.Lock()
	if len(c.m) >= maxCachedSCRAMKeys {
		for k, old := range c.m {
			clear(old.clientKey)
			clear(old.serverKey)
			delete(c.m, k)
			break
		}
	}
	c.m[id] = scramKeySet{slices.Clone(clientKey), slices.Clone(storedKey), slices.Clone(serverKey)}
	c.mu.Unlock()
	return clientKey, storedKey, serverKey, nil
}

// reset forgets every entry (tests and benchmarks of the slow path).
func (c *scramKeyCache) reset() {
	c.mu.Lock()
	clear(c.m)
	c.mu.Unlock()
}

// scramKeyID names a (password, salt, iterations) without keeping the
// password: a hash of the three, each length-prefixed.
func scramKeyID(password string, salt []byte, iterations int) [sha256.Size]byte {
	h := sha256.New()
	var n [8]byte
	h.Write([]byte("conclave scram key cache\x00"))
	binary.BigEndian.PutUint64(n[:], uint64(len(password)))
	h.Write(n[:])
	h.Write([]byte(password))
	binary.BigEndian.PutUint64(n[:], uint64(len(salt)))
	h.Write(n[:])
	h.Write(salt)
	binary.BigEndian.PutUint64(n[:], uint64(iterations))
	h.Write(n[:])
	var id [sha256.Size]byte
	h.Sum(id[:0])
	return id
}
