// Package golden compares test output with golden files, and rewrites
// them when the package's -update flag is set (`make golden` sets it in
// every package that defines it). Each package keeps its own flag, so
// the Makefile can find it; this holds the logic they share.
package golden

import (
	"os"
	"path/filepath"
	"sort"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// Compare fails t when got differs from the file at path; with update it
// writes got there instead.
func Compare(t testing.TB, path string, got []byte, update bool) {
	t.Helper()
	if update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (make golden creates it)", err)
	}
	if d := cmp.Diff(string(want), string(got)); d != "" {
		t.Errorf("%s differs (-want +got; make golden rewrites it if the change is intended):\n%s", path, d)
	}
}

// Prune finds the files matching pattern that belong to no case (keep
// says which do): with update it deletes them, else it fails t naming
// them, so a removed case cannot leave outputs behind.
func Prune(t testing.TB, pattern string, keep func(path string) bool, update bool) {
	t.Helper()
	files, err := filepath.Glob(pattern)
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(files)
	for _, f := range files {
		if keep(f) {
			continue
		}
		if update {
			if err := os.Remove(f); err != nil {
				t.Fatal(err)
			}
			continue
		}
		t.Errorf("%s belongs to no case (make golden deletes it)", f)
	}
}
