package e2e

import (
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/berthnet/berth/netpol"
)

// npPod names one pod of the model.
type npPod struct{ ns, name string }

func (p npPod) is(ns, name string) bool { return p.ns == ns && p.name == name }

// npExpect is a case's truth table written by hand, in the spirit of
// upstream's Reachability.Expect calls: whether from reaches to with the
// probe, as a person reads the case's policies. It shares nothing with
// the evaluator the compiler uses (netpol.Reachability), which stays a
// second opinion: the lab must match this table, and the evaluator must
// agree with it.
type npExpect func(from, to npPod, pr npProbe) bool

var (
	tcp80 = npProbe{corev1.ProtocolTCP, 80}
	tcp81 = npProbe{corev1.ProtocolTCP, 81}
	udp80 = npProbe{corev1.ProtocolUDP, 80}
	udp81 = npProbe{corev1.ProtocolUDP, 81}
)

// npAllAllowed is the table with no policy: every pod reaches every pod.
func npAllAllowed(from, to npPod, pr npProbe) bool { return true }

// matrix renders the table for one probe over the model's pods, in order.
func (e npExpect) matrix(names []string, pr npProbe) netpol.Matrix {
	m := netpol.NewMatrix(names)
	for i, f := range names {
		for j, t := range names {
			m.Allowed[i][j] = e(splitPod(f), splitPod(t), pr)
		}
	}
	return m
}

func splitPod(s string) npPod {
	ns, name, _ := strings.Cut(s, "/")
	return npPod{ns, name}
}

// npDisagreement lists the cells where the evaluator's table (with its
// reasons) differs from the hand-written one; "" when none.
func npDisagreement(hand, eval netpol.Matrix, pr npProbe) string {
	var out []string
	for i := range hand.Names {
		for j := range hand.Names {
			if i != j && hand.Allowed[i][j] != eval.Allowed[i][j] {
				why := ""
				if eval.Why != nil {
					why = ": " + eval.Why[i][j]
				}
				out = append(out, fmt.Sprintf("%s -> %s %s: by hand %v, evaluator %v%s", hand.Names[i], hand.Names[j], pr, hand.Allowed[i][j], eval.Allowed[i][j], why))
			}
		}
	}
	return strings.Join(out, "\n")
}
