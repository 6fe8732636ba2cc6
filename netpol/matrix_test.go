package netpol

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
)

var podNames = []string{"x/a", "x/b", "x/c", "y/a", "y/b", "y/c", "z/a", "z/b", "z/c"}

// expect builds a matrix over the fixture's pods from one row of marks per
// source ('.' allowed, 'X' denied), spaces ignored.
func expect(t *testing.T, rows ...string) Matrix {
	t.Helper()
	m := NewMatrix(podNames)
	for i, r := range rows {
		r = strings.ReplaceAll(r, " ", "")
		if len(r) != len(podNames) {
			t.Fatalf("row %d has %d cells", i, len(r))
		}
		for j := range r {
			m.Allowed[i][j] = r[j] == '.'
		}
	}
	return m
}

func TestReachabilityClassic(t *testing.T) {
	tests := []struct {
		name     string
		policies []networkingv1.NetworkPolicy
		want     []string // rows x/a..z/c, columns x/a..z/c
	}{
		{"no policy", nil, []string{
			"... ... ...", "... ... ...", "... ... ...",
			"... ... ...", "... ... ...", "... ... ...",
			"... ... ...", "... ... ...", "... ... ...",
		}},
		{"default deny ingress in x", []networkingv1.NetworkPolicy{policy("x", "deny", sel(), ingress)}, []string{
			"XXX ... ...", "XXX ... ...", "XXX ... ...",
			"XXX ... ...", "XXX ... ...", "XXX ... ...",
			"XXX ... ...", "XXX ... ...", "XXX ... ...",
		}},
		{"default deny egress in x", []networkingv1.NetworkPolicy{policy("x", "deny", sel(), egress)}, []string{
			"XXX XXX XXX", "XXX XXX XXX", "XXX XXX XXX",
			"... ... ...", "... ... ...", "... ... ...",
			"... ... ...", "... ... ...", "... ... ...",
		}},
		{"x/a allows from pod b", []networkingv1.NetworkPolicy{
			withIngress(policy("x", "allow-b", sel("pod=a"), ingress), from(podPeer(sel("pod=b")))),
		}, []string{
			"X.. ... ...", "... ... ...", "X.. ... ...",
			"X.. ... ...", "X.. ... ...", "X.. ... ...",
			"X.. ... ...", "X.. ... ...", "X.. ... ...",
		}},
		{"x/a allows from namespace y", []networkingv1.NetworkPolicy{
			withIngress(policy("x", "allow-y", sel("pod=a"), ingress), from(nsPeer(sel("ns=y")))),
		}, []string{
			"X.. ... ...", "X.. ... ...", "X.. ... ...",
			"... ... ...", "... ... ...", "... ... ...",
			"X.. ... ...", "X.. ... ...", "X.. ... ...",
		}},
		{"x/a allows from pod b in namespace y (AND)", []networkingv1.NetworkPolicy{
			withIngress(policy("x", "allow-yb", sel("pod=a"), ingress), from(bothPeer(sel("ns=y"), sel("pod=b")))),
		}, []string{
			"X.. ... ...", "X.. ... ...", "X.. ... ...",
			"X.. ... ...", "... ... ...", "X.. ... ...",
			"X.. ... ...", "X.. ... ...", "X.. ... ...",
		}},
		{"x/a allows from namespace y or pod b (OR)", []networkingv1.NetworkPolicy{
			withIngress(policy("x", "allow-y-or-b", sel("pod=a"), ingress), from(nsPeer(sel("ns=y")), podPeer(sel("pod=b")))),
		}, []string{
			"X.. ... ...", "... ... ...", "X.. ... ...",
			"... ... ...", "... ... ...", "... ... ...",
			"X.. ... ...", "X.. ... ...", "X.. ... ...",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := expect(t, tt.want...)
			for _, v6 := range []bool{false, true} {
				got := Reachability(tt.policies, namespaces(), pods(), corev1.ProtocolTCP, 80, v6)
				d, err := Diff(want, got)
				if err != nil {
					t.Fatal(err)
				}
				if !d.Empty() {
					t.Errorf("ipv6=%v: got\n%s\n%s", v6, got, d)
				}
			}
		})
	}
}

func TestMatrixString(t *testing.T) {
	m := NewMatrix([]string{"x/a", "x/b"})
	m.Allowed[0][1] = true
	// Upstream's TruthTable.PrettyPrint, byte for byte.
	want := "-\t\tx/a\tx/b\n" +
		"x/a\tX\t\t.\t\n" +
		"x/b\tX\t\tX\t"
	if got := m.String(); got != want {
		t.Errorf("got\n%q\nwant\n%q", got, want)
	}
}

func TestDiff(t *testing.T) {
	pols := []networkingv1.NetworkPolicy{policy("x", "deny", sel(), ingress)}
	want := Reachability(pols, namespaces(), pods(), corev1.ProtocolTCP, 80, false)
	got := NewMatrix(want.Names)
	for i := range got.Allowed {
		copy(got.Allowed[i], want.Allowed[i])
	}
	if d, err := Diff(want, got); err != nil || !d.Empty() {
		t.Fatalf("equal matrices: diff %v, err %v", d, err)
	}
	got.Allowed[3][0] = true // y/a reaches x/a although x denies all ingress
	d, err := Diff(want, got)
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Cells) != 1 || d.Cells[0].From != "y/a" || d.Cells[0].To != "x/a" || d.Cells[0].Want || !d.Cells[0].Got {
		t.Fatalf("got cells %+v, want y/a -> x/a want X got .", d.Cells)
	}
	s := d.String()
	for _, want := range []string{
		"1 of 81 cells differ\n",
		"\ny/a\tX\t\t.\t", // the comparison grid marks the differing cell
		"\ny/a -> x/a: want X, got . (10.0.2.1 -> 10.0.1.1:80/TCP denied: egress y/a not isolated; ingress x/a isolated by x/deny, no rule matches)",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("diff lacks %q:\n%s", want, s)
		}
	}
	if _, err := Diff(want, NewMatrix(podNames[:3])); err == nil {
		t.Error("Diff accepted matrices of different sizes")
	}
	other := NewMatrix(append([]string{"w/a"}, podNames[1:]...))
	if _, err := Diff(want, other); err == nil {
		t.Error("Diff accepted matrices over different pods")
	}
}
