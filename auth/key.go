package auth

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
)

const (
	// MinKeyLen is the shortest cluster key accepted. A shorter key could be
	// guessed offline by anyone who completes a handshake with a key holder.
	MinKeyLen = 16
	// GeneratedKeyLen is the size of a key made by GenerateKey.
	GeneratedKeyLen = 32
)

// Key is a shared cluster key. Its formatting methods never reveal it: fmt,
// %v, %x, %#v, slog and text encoders (encoding/json, msgpack) all write a
// placeholder. Keys live in key files (WriteKeyFile, LoadKeyFile).
type Key []byte

const redacted = "auth.Key(redacted)"

// String returns a placeholder, never the key.
func (k Key) String() string { return redacted }

// GoString returns a placeholder, never the key.
func (k Key) GoString() string { return redacted }

// Format prints a placeholder for every verb, so that no format string can
// leak the key.
func (k Key) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, redacted) }

// LogValue keeps the key out of structured logs.
func (k Key) LogValue() slog.Value { return slog.StringValue(redacted) }

// MarshalText returns the placeholder, so that a Key inside a value that is
// encoded whole (slog's JSON handler, encoding/json, msgpack) stays out of
// the output.
func (k Key) MarshalText() ([]byte, error) { return []byte(redacted), nil }

func (k Key) check() error {
	switch {
	case len(k) == 0:
		return fmt.Errorf("%w: no key given (run `conclave keygen -o FILE` and load it)", ErrBadKey)
	case len(k) < MinKeyLen:
		return fmt.Errorf("%w: key is %d bytes, need at least %d (`conclave keygen` writes %d random bytes)",
			ErrBadKey, len(k), MinKeyLen, GeneratedKeyLen)
	}
	return nil
}

// GenerateKey returns a new random key of GeneratedKeyLen bytes read from r
// (crypto/rand.Reader when r is nil).
func GenerateKey(r io.Reader) (Key, error) {
	if r == nil {
		r = (&Config{}).rand()
	}
	k := make(Key, GeneratedKeyLen)
	if _, err := io.ReadFull(r, k); err != nil {
		return nil, fmt.Errorf("auth: generate key: %w", err)
	}
	return k, nil
}

// WriteKeyFile writes k to a new file at path with mode 0600. It refuses to
// replace an existing file, so a key in use is never lost by accident.
func WriteKeyFile(path string, k Key) error {
	if err := k.check(); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("auth: key file %s already exists; remove it first to replace it", path)
		}
		return fmt.Errorf("auth: write key file: %w", err)
	}
	_, err = f.Write(k)
	if serr := f.Sync(); err == nil {
		err = serr
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(path)
		return fmt.Errorf("auth: write key file %s: %w", path, err)
	}
	return nil
}

// LoadKeyFile reads a key file: its whole contents are the key. It refuses a
// file that group or others can read, an empty file and a key shorter than
// MinKeyLen, with an error that says how to fix it.
func LoadKeyFile(path string) (Key, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("auth: load key file: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("auth: load key file: %w", err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%w: %s is not a regular file", ErrBadKey, path)
	}
	if perm := st.Mode().Perm(); perm&0o077 != 0 {
		abs, _ := filepath.Abs(path)
		return nil, fmt.Errorf("%w: key file %s has mode %04o, readable by group or others; run `chmod 600 %s`",
			ErrBadKey, path, perm, abs)
	}
	// A key file is small; refuse to slurp a wrong path that names a huge file.
	k, err := io.ReadAll(io.LimitReader(f, 1<<16+1))
	if err != nil {
		return nil, fmt.Errorf("auth: load key file %s: %w", path, err)
	}
	if len(k) > 1<<16 {
		return nil, fmt.Errorf("%w: key file %s is over 64 KiB; is it the right file?", ErrBadKey, path)
	}
	if err := Key(k).check(); err != nil {
		return nil, fmt.Errorf("%w (file %s)", err, path)
	}
	return k, nil
}
