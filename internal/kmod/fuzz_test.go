package kmod

import (
	"strings"
	"testing"
)

// FuzzParseDep: any input is parsed or refused, never a panic, and every
// module parsed has a .ko path, dependencies that are module files, and
// the name its path gives.
func FuzzParseDep(f *testing.F) {
	f.Add(dep)
	f.Add("kernel/a.ko:\n# comment\n\nkernel/b.ko.zst: kernel/a.ko\n")
	f.Add("x.ko")
	f.Fuzz(func(t *testing.T, in string) {
		mods, err := ParseDep(strings.NewReader(in))
		if err != nil {
			return
		}
		for name, m := range mods {
			if !strings.Contains(m.Path, ".ko") || Name(m.Path) != name {
				t.Fatalf("module %q: %+v", name, m)
			}
			for _, d := range m.Deps {
				if !strings.Contains(d, ".ko") {
					t.Fatalf("module %q: dependency %q", name, d)
				}
			}
			if _, err := Plan(mods, name, func(string) bool { return false }); err != nil {
				t.Fatalf("plan %s: %v", name, err)
			}
		}
	})
}
