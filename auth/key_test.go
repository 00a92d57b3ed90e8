package auth

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
)

func TestKeyFileRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "k")
	k := testKey(t)
	if err := WriteKeyFile(path, k); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v, want 0600", st.Mode().Perm())
	}
	got, err := LoadKeyFile(path)
	if err != nil || !bytes.Equal(got, k) {
		t.Fatalf("LoadKeyFile = %v; want the written key", err)
	}
	if err := WriteKeyFile(path, k); err == nil {
		t.Error("WriteKeyFile replaced an existing key file")
	}
}

func TestLoadKeyFileRefusals(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, data []byte, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, tc := range []struct {
		name, path, advice string
	}{
		{"world readable", write("world", bytes.Repeat([]byte{1}, 32), 0o644), "chmod 600"},
		{"group readable", write("group", bytes.Repeat([]byte{1}, 32), 0o640), "chmod 600"},
		{"empty", write("empty", nil, 0o600), "keygen"},
		{"short", write("short", []byte("peekaboo"), 0o600), "at least 16"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := LoadKeyFile(tc.path)
			if !errors.Is(err, ErrBadKey) {
				t.Fatalf("err %v, want ErrBadKey", err)
			}
			if !strings.Contains(err.Error(), tc.advice) {
				t.Errorf("error %q does not say what to do (%q)", err, tc.advice)
			}
		})
	}
}

func TestKeyNeverPrinted(t *testing.T) {
	k := Key("super-secret-cluster-key-0123456789")
	cfg := &Config{Key: k}
	var logged bytes.Buffer
	slog.New(slog.NewTextHandler(&logged, nil)).Info("cfg", "key", k, "config", cfg)
	for _, s := range []string{
		fmt.Sprint(k), fmt.Sprintf("%v %s %x %X %q %#v %+v", k, k, k, k, k, k, k),
		fmt.Sprintf("%v %+v %#v", *cfg, cfg, *cfg), logged.String(),
	} {
		if strings.Contains(s, "super-secret") || strings.Contains(s, fmt.Sprintf("%x", []byte(k))) {
			t.Fatalf("key leaked: %s", s)
		}
	}
}

// TestSecretsStayOutOfEncoders: a Key or Password inside a value that an
// application encodes whole (a config struct logged by slog's JSON handler,
// written as JSON or msgpack) comes out as its placeholder.
func TestSecretsStayOutOfEncoders(t *testing.T) {
	key := Key("0123456789abcdef-very-secret-key")
	type login struct {
		User     string
		Password Password
	}
	type appConfig struct {
		Key   Key
		Login login
	}
	cfg := appConfig{Key: key, Login: login{User: "alice", Password: "hunter2-secret"}}
	var logged bytes.Buffer
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("starting", "config", cfg)
	js, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	mp, err := msgpack.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for name, out := range map[string][]byte{"slog JSON": logged.Bytes(), "encoding/json": js, "msgpack": mp} {
		for _, secret := range [][]byte{key, []byte("hunter2"), []byte("MDEyMzQ1Njc4OWFiY2RlZi12ZXJ5")} {
			if bytes.Contains(out, secret) {
				t.Errorf("%s output holds a secret: %q", name, out)
			}
		}
		if !bytes.Contains(out, []byte("auth.Key(redacted)")) || !bytes.Contains(out, []byte("auth.Password(redacted)")) {
			t.Errorf("%s output lacks the placeholders: %q", name, out)
		}
	}
}
