package main

import (
	"context"
	"errors"
	"io"
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

// TestExitCodes: -h on every command is a success, a cut-short run exits
// 130, and a usage error 2.
func TestExitCodes(t *testing.T) {
	for _, args := range [][]string{{"keygen", "-h"}, {"bench", "-h"}, {"user", "-h"}, {"status", "-h"}, {"help"}} {
		var out, errOut strings.Builder
		code := 0
		if err := run(context.Background(), args, &out, &errOut); err != nil {
			code = exitCode(context.Background(), err, &errOut)
		}
		if code != 0 || out.Len()+errOut.Len() == 0 || strings.Contains(errOut.String(), "help requested") {
			t.Errorf("%v: exit %d, stdout %q, stderr %q", args, code, out.String(), errOut.String())
		}
	}
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	if code := exitCode(cancelled, cancelled.Err(), io.Discard); code != 130 {
		t.Errorf("interrupted: exit %d, want 130", code)
	}
	if code := exitCode(context.Background(), usagef("bad"), io.Discard); code != 2 {
		t.Errorf("usage error: exit %d, want 2", code)
	}
	if code := exitCode(context.Background(), errors.New("failed"), io.Discard); code != 1 {
		t.Errorf("failure: exit %d, want 1", code)
	}
}
