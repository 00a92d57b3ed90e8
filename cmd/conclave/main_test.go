package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/seed0811993b/conclave/auth"
)

func TestKeygen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cluster.key")
	var out, errOut strings.Builder
	if err := run(context.Background(), []string{"keygen", "-o", path}, &out, &errOut); err != nil {
		t.Fatalf("keygen: %v\n%s", err, errOut.String())
	}
	k, err := auth.LoadKeyFile(path)
	if err != nil || len(k) != 32 {
		t.Fatalf("the written key does not load as 32 bytes: %v", err)
	}
	if strings.Contains(out.String(), string(k)) {
		t.Error("keygen printed the key")
	}
	if err := run(context.Background(), []string{"keygen", "-o", path}, &out, &errOut); err == nil {
		t.Error("keygen overwrote an existing key")
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o600 {
		t.Errorf("mode %v", st.Mode().Perm())
	}
}
