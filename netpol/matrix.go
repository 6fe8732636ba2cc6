package netpol

import (
	"fmt"
	"net/netip"
	"strings"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
)

// Matrix is a reachability truth table between pods for one protocol and
// port: Allowed[i][j] says whether Names[i] reaches Names[j].
type Matrix struct {
	Names   []string // "namespace/name", for rows (from) and columns (to)
	Allowed [][]bool
	// Why[i][j] explains a cell (a Verdict's String); nil in a matrix that
	// was observed rather than computed.
	Why [][]string
}

// NewMatrix returns a matrix over names with every cell denied, for a
// caller that fills it from observations.
func NewMatrix(names []string) Matrix {
	m := Matrix{Names: names, Allowed: make([][]bool, len(names))}
	for i := range m.Allowed {
		m.Allowed[i] = make([]bool, len(names))
	}
	return m
}

// Reachability computes the matrix between all pods, in the order given, for
// protocol and port. Each pod is reached at and speaks from its first IPv4
// address, or its first IPv6 one when ipv6 is set; pods without one are
// left out.
func Reachability(policies []networkingv1.NetworkPolicy, namespaces []Namespace, pods []Pod, protocol corev1.Protocol, port int32, ipv6 bool) Matrix {
	c := newCluster(namespaces, pods)
	var names []string
	var addrs []netip.Addr
	for _, p := range pods {
		for _, ip := range p.IPs {
			if ip.Unmap().Is6() == ipv6 {
				names = append(names, p.Namespace+"/"+p.Name)
				addrs = append(addrs, ip)
				break
			}
		}
	}
	m := NewMatrix(names)
	m.Why = make([][]string, len(names))
	for i := range names {
		m.Why[i] = make([]string, len(names))
		for j := range names {
			v := c.allowed(policies, Conn{Src: addrs[i], Dst: addrs[j], Protocol: protocol, Port: port})
			m.Allowed[i][j], m.Why[i][j] = v.Allowed, v.String()
		}
	}
	return m
}

// String renders the matrix as upstream's netpol e2e does (TruthTable's
// PrettyPrint): rows are sources, columns destinations, '.' allowed, 'X'
// denied, tab separated.
func (m Matrix) String() string {
	return grid(m.Names, func(i, j int) bool { return m.Allowed[i][j] })
}

func grid(names []string, cell func(i, j int) bool) string {
	lines := []string{strings.Join(append([]string{"-\t"}, names...), "\t")}
	for i, from := range names {
		line := []string{from}
		for j := range names {
			mark := "X"
			if cell(i, j) {
				mark = "."
			}
			line = append(line, mark+"\t")
		}
		lines = append(lines, strings.Join(line, "\t"))
	}
	return strings.Join(lines, "\n")
}

// MatrixDiff is the comparison of an expected matrix with an observed one.
type MatrixDiff struct {
	Names []string
	Cells []DiffCell // the cells that differ, row by row
}

// DiffCell is one pair on which two matrices disagree.
type DiffCell struct {
	From, To  string
	Want, Got bool
	Why       string // the expected matrix's explanation, if it has one
}

// Diff compares want with got, which must be over the same names in the
// same order.
func Diff(want, got Matrix) (MatrixDiff, error) {
	if len(want.Names) != len(got.Names) {
		return MatrixDiff{}, fmt.Errorf("matrices over %d and %d pods", len(want.Names), len(got.Names))
	}
	for i := range want.Names {
		if want.Names[i] != got.Names[i] {
			return MatrixDiff{}, fmt.Errorf("pod %d is %s in one matrix and %s in the other", i, want.Names[i], got.Names[i])
		}
	}
	d := MatrixDiff{Names: want.Names}
	for i, from := range want.Names {
		for j, to := range want.Names {
			if want.Allowed[i][j] == got.Allowed[i][j] {
				continue
			}
			c := DiffCell{From: from, To: to, Want: want.Allowed[i][j], Got: got.Allowed[i][j]}
			if want.Why != nil {
				c.Why = want.Why[i][j]
			}
			d.Cells = append(d.Cells, c)
		}
	}
	return d, nil
}

// Empty says whether the matrices agree.
func (d MatrixDiff) Empty() bool { return len(d.Cells) == 0 }

// String prints the comparison grid the way upstream does ('.' where the
// matrices agree, 'X' where they differ), then one line per differing cell.
func (d MatrixDiff) String() string {
	bad := map[[2]string]bool{}
	for _, c := range d.Cells {
		bad[[2]string{c.From, c.To}] = true
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%d of %d cells differ\n", len(d.Cells), len(d.Names)*len(d.Names))
	b.WriteString(grid(d.Names, func(i, j int) bool { return !bad[[2]string{d.Names[i], d.Names[j]}] }))
	for _, c := range d.Cells {
		fmt.Fprintf(&b, "\n%s -> %s: want %s, got %s", c.From, c.To, mark(c.Want), mark(c.Got))
		if c.Why != "" {
			b.WriteString(" (" + c.Why + ")")
		}
	}
	return b.String()
}

func mark(allowed bool) string {
	if allowed {
		return "."
	}
	return "X"
}
