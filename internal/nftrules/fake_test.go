package nftrules

import (
	"context"
	"strings"
	"testing"
)

// table is a small table with every kind of object, as later steps find
// it.
func table() Ruleset {
	rs := Empty()
	rs.Base = []BaseChain{{Name: "in", Type: "filter", Hook: "input", Priority: "filter", Rules: []string{"jump pods"}}}
	rs.Chains["pods"] = []string{
		"ip saddr vmap @pod-chains",
		`ip saddr @blocked counter name "dropped" drop comment "blocked sources"`,
	}
	rs.Chains["pod-a"] = []string{"meta l4proto . th dport @ports return", "drop"}
	rs.Maps["pod-chains"] = Map{Type: "ipv4_addr : verdict", Elements: map[string]string{"10.0.0.1": "goto pod-a"}}
	rs.Sets["blocked"] = Set{Type: "ipv4_addr", Interval: true, Elements: []string{"10.9.0.0/16", "10.10.0.1-10.10.0.9"}}
	rs.Sets["ports"] = Set{Type: "inet_proto . inet_service", Interval: true, Elements: []string{"tcp . 80-90", "udp . 53"}}
	rs.Counters = []string{"dropped"}
	return rs
}

func apply(t *testing.T, f *Fake, prev *Ruleset, next Ruleset) error {
	t.Helper()
	tx := NewTx("t")
	Sync(tx, prev, next)
	return f.Apply(context.Background(), tx)
}

// The fake refuses what the kernel refuses, and a refused transaction
// leaves the table as it was.
func TestFakeRefuses(t *testing.T) {
	for _, c := range []struct {
		name string
		ops  func(tx *Tx)
		want string
	}{
		{"a jump to a missing chain", func(tx *Tx) { tx.AddRule("pods", "jump nowhere") }, "missing chain nowhere"},
		{"a lookup in a missing set", func(tx *Tx) { tx.AddRule("pods", "ip daddr @nothing drop") }, "missing set nothing"},
		{"a missing counter", func(tx *Tx) { tx.AddRule("pods", `counter name "other" drop`) }, "missing counter other"},
		{"a rule outside the vocabulary", func(tx *Tx) { tx.AddRule("pods", "log prefix x") }, "vocabulary"},
		{"an element of the wrong family", func(tx *Tx) { tx.AddElement("pod-chains", "fd00::1", "goto pod-a") }, `"fd00::1" is not an ipv4_addr`},
		{"an element with too few parts", func(tx *Tx) { tx.AddElement("ports", "tcp", "") }, "has 1 parts"},
		{"a verdict to a missing chain", func(tx *Tx) { tx.AddElement("pod-chains", "10.0.0.2", "goto pod-b") }, "missing chain pod-b"},
		{"an element again with another value", func(tx *Tx) { tx.AddElement("pod-chains", "10.0.0.1", "return") }, "another value"},
		{"deleting a set a rule uses", func(tx *Tx) { tx.DeleteSet("blocked") }, "set in use"},
		{"deleting a chain a map points at", func(tx *Tx) { tx.FlushChain("pod-a"); tx.DeleteChain("pod-a") }, "chain in use"},
		{"deleting a chain with rules", func(tx *Tx) { tx.DeleteChain("pod-a") }, "chain not empty"},
		{"deleting a counter a rule counts on", func(tx *Tx) { tx.DeleteCounter("dropped") }, "counter in use"},
		{"deleting an element that is not there", func(tx *Tx) { tx.DeleteElement("pod-chains", "10.0.0.7") }, "no element"},
		{"a set again with another type", func(tx *Tx) { tx.AddSet("blocked", SetDef{Type: "ipv6_addr", Interval: true}) }, "another definition"},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := NewFake("t")
			if err := apply(t, f, nil, table()); err != nil {
				t.Fatal(err)
			}
			before, _ := f.Ruleset()
			tx := NewTx("t")
			// A good operation first: it must not survive the refusal.
			tx.AddElement("pod-chains", "10.0.0.3", "return")
			c.ops(tx)
			err := f.Apply(context.Background(), tx)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want an error saying %q", err, c.want)
			}
			after, _ := f.Ruleset()
			if _, ok := after.Maps["pod-chains"].Elements["10.0.0.3"]; ok || len(after.Chains) != len(before.Chains) {
				t.Errorf("a refused transaction changed the table")
			}
		})
	}
}

// Sync from one ruleset to another leaves exactly the second, touching
// only what changed; from nil it replaces the table whole.
func TestSyncDiff(t *testing.T) {
	f := NewFake("t")
	a := table()
	if err := apply(t, f, nil, a); err != nil {
		t.Fatal(err)
	}
	b := table()
	b.Maps["pod-chains"] = Map{Type: "ipv4_addr : verdict", Elements: map[string]string{"10.0.0.2": "goto pod-b"}}
	delete(b.Chains, "pod-a")
	b.Chains["pod-b"] = []string{"tcp dport 22 return", "drop"}
	delete(b.Sets, "ports")
	b.Sets["blocked"] = Set{Type: "ipv4_addr", Interval: true, Elements: []string{"10.9.0.0/16"}}
	tx := NewTx("t")
	Sync(tx, &a, b)
	if err := f.Apply(context.Background(), tx); err != nil {
		t.Fatalf("%v\n%s", err, tx)
	}
	want := strings.Join([]string{
		"add chain inet t pod-b",
		"flush chain inet t pod-a",
		"flush set inet t blocked",
		"add element inet t blocked { 10.9.0.0/16 }",
		"add rule inet t pod-b tcp dport 22 return",
		"add rule inet t pod-b drop",
		"delete element inet t pod-chains { 10.0.0.1 }",
		"add element inet t pod-chains { 10.0.0.2 : goto pod-b }",
		"delete chain inet t pod-a",
		"delete set inet t ports",
	}, "\n") + "\n"
	if got := tx.String(); got != want {
		t.Errorf("transaction:\n%s\nwant\n%s", got, want)
	}
	got, _ := f.Ruleset()
	if _, ok := got.Chains["pod-a"]; ok || len(got.Chains["pod-b"]) != 2 || got.Sets["blocked"].Elements[0] != "10.9.0.0/16" || len(got.Sets["blocked"].Elements) != 1 {
		t.Errorf("table after the diff: %+v", got)
	}
	tx = NewTx("t")
	Sync(tx, &b, b)
	if tx.Len() != 0 {
		t.Errorf("no change sent:\n%s", tx)
	}
}

// Deleting the table deletes what it held: nothing is left to read (or
// to trace) until it is built again.
func TestFakeDeleteTable(t *testing.T) {
	f := NewFake("t")
	if err := apply(t, f, nil, table()); err != nil {
		t.Fatal(err)
	}
	tx := NewTx("t")
	tx.DeleteTable()
	if err := f.Apply(context.Background(), tx); err != nil {
		t.Fatal(err)
	}
	rs, ok := f.Ruleset()
	if ok || len(rs.Chains)+len(rs.Sets)+len(rs.Maps)+len(rs.Counters)+len(rs.Base) != 0 {
		t.Errorf("table after delete: %+v (exists %v), want nothing", rs, ok)
	}
}
