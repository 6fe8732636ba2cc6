package sysctl

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestEnsure(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "ip_forward")
	if err := os.WriteFile(p, []byte("1\n"), 0o444); err != nil {
		t.Fatal(err)
	}
	// Already right: no write, so a read-only file is fine (as /proc/sys is
	// in an unprivileged container).
	if err := Ensure(p, "1"); err != nil {
		t.Fatalf("Ensure on a value already set: %v", err)
	}
	if os.Geteuid() != 0 { // root writes read-only files anyway
		if err := Ensure(p, "0"); err == nil {
			t.Fatal("Ensure wrote a read-only file")
		}
	}
	if err := os.Chmod(p, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Ensure(p, "0"); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(p); string(b) != "0" {
		t.Fatalf("file holds %q after Ensure(0)", b)
	}
	if err := Ensure(filepath.Join(dir, "missing"), "1"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing parameter: %v, want os.ErrNotExist", err)
	}
}
