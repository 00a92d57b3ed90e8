package auth

import (
	"bytes"
	"crypto/ecdh"
	"errors"
	"testing"
)

// nativeSeeds returns a real ClientHello and, for it, a real ServerHello and
// ClientFinished, as frame payloads.
func nativeSeeds(f *testing.F) (ch, sh, cf []byte) {
	key := bytes.Repeat([]byte{9}, 32)
	c := newNativeClient(&Config{Key: key})
	s := newNativeServer(&Config{Key: key}, "")
	out, _, err := c.step(nil)
	if err != nil {
		f.Fatal(err)
	}
	ch = out[4:]
	if _, _, err := s.step(nil); err != nil {
		f.Fatal(err)
	}
	out, _, err = s.step(ch)
	if err != nil {
		f.Fatal(err)
	}
	sh = out[4:]
	out, _, err = c.step(sh)
	if err != nil {
		f.Fatal(err)
	}
	return ch, sh, out[4:]
}

// checkSentinel fails unless err is nil or one a caller can classify.
func checkSentinel(t *testing.T, err error) {
	t.Helper()
	if err == nil {
		return
	}
	for _, s := range []error{ErrAuthFailed, ErrProtocol, ErrUnsupportedVersion, ErrUnsupportedCipher, ErrNotAllowed} {
		if errors.Is(err, s) {
			return
		}
	}
	t.Fatalf("error %v matches no auth sentinel", err)
}

// FuzzNativeServer drives the accepting state machine with arbitrary
// messages: it must never panic, never finish without a valid client proof,
// and fail only with classifiable errors.
func FuzzNativeServer(f *testing.F) {
	ch, _, cf := nativeSeeds(f)
	f.Add(ch, cf)
	f.Add(ch[:len(ch)-1], cf)
	f.Add([]byte("conclave\x7f\x01"), []byte{})
	xk := fuzzServerKey(f)
	f.Fuzz(func(t *testing.T, m1, m2 []byte) {
		s := newNativeServer(&Config{Key: bytes.Repeat([]byte{9}, 32)}, "")
		s.xk = xk // key generation is not under test; parsing is
		if _, _, err := s.step(nil); err != nil {
			t.Fatal(err)
		}
		_, _, err := s.step(m1)
		checkSentinel(t, err)
		if err != nil {
			return
		}
		_, done, err := s.step(m2)
		checkSentinel(t, err)
		if done && err == nil {
			// Only a proof made with the key over this very transcript can
			// get here, and the fuzzer cannot make one for a fresh server.
			t.Fatal("server finished a handshake with a fuzzed client")
		}
	})
}

// FuzzNativeClient drives the dialing state machine with arbitrary server
// messages.
func FuzzNativeClient(f *testing.F) {
	_, sh, _ := nativeSeeds(f)
	f.Add(sh, []byte("conclave\x04"+string(make([]byte, 32))))
	f.Add([]byte("conclave\x7f\x02"), []byte{})
	f.Add([]byte("conclave\x7f\x07"), []byte{})
	keys := fuzzClientKeys(f)
	f.Fuzz(func(t *testing.T, m1, m2 []byte) {
		c := newNativeClient(&Config{Key: bytes.Repeat([]byte{9}, 32)})
		k := keys
		c.keys = &k // key generation is not under test; parsing is
		if _, _, err := c.step(nil); err != nil {
			t.Fatal(err)
		}
		_, _, err := c.step(m1)
		checkSentinel(t, err)
		if err != nil {
			return
		}
		_, _, err = c.step(m2)
		checkSentinel(t, err)
		if err == nil {
			t.Fatal("client accepted a fuzzed server")
		}
	})
}

func fuzzClientKeys(f *testing.F) clientKeys {
	k, err := clientKeyPool.gen()
	if err != nil {
		f.Fatal(err)
	}
	return k
}

func fuzzServerKey(f *testing.F) *ecdh.PrivateKey {
	k, err := serverKeyPool.gen()
	if err != nil {
		f.Fatal(err)
	}
	return k
}
