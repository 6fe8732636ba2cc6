package logtail

import (
	"os"
	"path/filepath"
	"testing"
)

func TestLines(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.log")
	if err := os.WriteFile(path, []byte("a\nb\nc\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for n, want := range map[int]string{
		2: "  last lines of " + path + ":\n    b\n    c",
		5: "  last lines of " + path + ":\n    a\n    b\n    c",
	} {
		if got := Lines(path, n); got != want {
			t.Errorf("Lines(%d) = %q, want %q", n, got, want)
		}
	}
	if got := Lines(filepath.Join(t.TempDir(), "none"), 3); got != "" {
		t.Errorf("a missing file: %q, want empty", got)
	}
}
