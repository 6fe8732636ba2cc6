package nftrules

import (
	"context"
	"fmt"
	"strings"
)

// Backend applies transactions to one table, each all or nothing: the
// kernel (Netlink) or the strict in-memory Fake.
type Backend interface {
	Apply(ctx context.Context, tx *Tx) error
	// TableExists reports whether the table is there already.
	TableExists(ctx context.Context) (bool, error)
}

// Tx is one nftables transaction as data: what Sync decides, applied by a
// Backend all or nothing. Keeping it as data lets tests read what a sync
// would send, and lets the kernel backend talk netlink directly instead of
// running the nft tool (which reads the whole table before every change:
// ~1 s per change at 10,000 Services; see docs/service-proxy.md).
type Tx struct {
	// Table names the table in String's output; the backend knows its own.
	Table string
	Ops   []Op
}

// NewTx returns an empty transaction on table.
func NewTx(table string) *Tx { return &Tx{Table: table} }

// OpKind is what an operation does.
type OpKind uint8

// The operations: add creates (an existing object is left as it is),
// delete removes (a missing object fails the transaction), flush empties a
// chain or a set.
const (
	OpAdd OpKind = iota
	OpDelete
	OpFlush
)

// ObjKind is what an operation works on.
type ObjKind uint8

// The objects of the table.
const (
	ObjTable ObjKind = iota
	ObjChain
	ObjRule
	ObjSet
	ObjElement
	// ObjCounter is a named counter ("counter name X" in a rule counts
	// on it); Name is the counter's.
	ObjCounter
)

// Op is one operation. Name is the chain (rules too) or the set or map
// (elements too).
type Op struct {
	Kind OpKind
	Obj  ObjKind
	Name string
	// Base is set when adding a base chain.
	Base *BaseChain
	// Rule is the rule's text, in nft syntax; a trailing comment "..."
	// becomes the rule's comment.
	Rule string
	// Def is set when adding a set or map.
	Def *SetDef
	// Key and Value are an element's, in nft syntax (" . " between the
	// parts of a concatenation); Value only in maps.
	Key, Value string
}

// SetDef is what a set or map is: its nft type ("ipv4_addr", or
// "ipv4_addr . inet_proto . inet_service : verdict" for a map), whether it
// holds intervals (CIDRs), and for dynamic sets the elements' timeout.
type SetDef struct {
	Type           string
	Interval       bool
	TimeoutSeconds int
}

// IsMap reports whether the definition is a map's.
func (d SetDef) IsMap() bool { return strings.Contains(d.Type, " : ") }

func (tx *Tx) add(op Op) { tx.Ops = append(tx.Ops, op) }

// AddTable adds the table.
func (tx *Tx) AddTable() { tx.add(Op{Kind: OpAdd, Obj: ObjTable}) }

// DeleteTable deletes the table with everything in it.
func (tx *Tx) DeleteTable() { tx.add(Op{Kind: OpDelete, Obj: ObjTable}) }

// AddChain adds a regular chain, or a base chain when base is not nil.
func (tx *Tx) AddChain(name string, base *BaseChain) {
	tx.add(Op{Kind: OpAdd, Obj: ObjChain, Name: name, Base: base})
}

// FlushChain removes every rule of a chain.
func (tx *Tx) FlushChain(name string) { tx.add(Op{Kind: OpFlush, Obj: ObjChain, Name: name}) }

// DeleteChain deletes an empty chain nothing jumps to.
func (tx *Tx) DeleteChain(name string) { tx.add(Op{Kind: OpDelete, Obj: ObjChain, Name: name}) }

// AddRule appends a rule to a chain.
func (tx *Tx) AddRule(chain, rule string) {
	tx.add(Op{Kind: OpAdd, Obj: ObjRule, Name: chain, Rule: rule})
}

// AddSet adds a set or map.
func (tx *Tx) AddSet(name string, def SetDef) {
	tx.add(Op{Kind: OpAdd, Obj: ObjSet, Name: name, Def: &def})
}

// FlushSet removes every element of a set or map.
func (tx *Tx) FlushSet(name string) { tx.add(Op{Kind: OpFlush, Obj: ObjSet, Name: name}) }

// DeleteSet deletes a set or map no rule refers to.
func (tx *Tx) DeleteSet(name string) { tx.add(Op{Kind: OpDelete, Obj: ObjSet, Name: name}) }

// AddElement adds an element to a set (value "") or a map.
func (tx *Tx) AddElement(set, key, value string) {
	tx.add(Op{Kind: OpAdd, Obj: ObjElement, Name: set, Key: key, Value: value})
}

// AddCounter adds a named counter.
func (tx *Tx) AddCounter(name string) { tx.add(Op{Kind: OpAdd, Obj: ObjCounter, Name: name}) }

// DeleteCounter deletes a named counter no rule refers to.
func (tx *Tx) DeleteCounter(name string) { tx.add(Op{Kind: OpDelete, Obj: ObjCounter, Name: name}) }

// DeleteElement deletes an element by its key.
func (tx *Tx) DeleteElement(set, key string) {
	tx.add(Op{Kind: OpDelete, Obj: ObjElement, Name: set, Key: key})
}

// Len is the number of operations.
func (tx *Tx) Len() int { return len(tx.Ops) }

// String renders the transaction as nft commands, for logs and tests.
func (tx *Tx) String() string {
	var b strings.Builder
	for _, op := range tx.Ops {
		b.WriteString(op.text(tx.Table))
		b.WriteByte('\n')
	}
	return b.String()
}

// text renders one operation on table as an nft command.
func (op Op) text(table string) string {
	verb := map[OpKind]string{OpAdd: "add", OpDelete: "delete", OpFlush: "flush"}[op.Kind]
	t := "inet " + table
	switch op.Obj {
	case ObjTable:
		return fmt.Sprintf("%s table %s", verb, t)
	case ObjChain:
		if op.Base != nil {
			return fmt.Sprintf("%s chain %s %s { type %s hook %s priority %s ; }", verb, t, op.Name, op.Base.Type, op.Base.Hook, op.Base.Priority)
		}
		return fmt.Sprintf("%s chain %s %s", verb, t, op.Name)
	case ObjRule:
		return fmt.Sprintf("%s rule %s %s %s", verb, t, op.Name, op.Rule)
	case ObjSet:
		if op.Def == nil {
			return fmt.Sprintf("%s set %s %s", verb, t, op.Name)
		}
		kind := "set"
		if op.Def.IsMap() {
			kind = "map"
		}
		extra := ""
		if op.Def.Interval {
			extra = " flags interval ;"
		}
		if op.Def.TimeoutSeconds > 0 {
			extra = fmt.Sprintf(" flags dynamic,timeout ; timeout %ds ;", op.Def.TimeoutSeconds)
		}
		return fmt.Sprintf("%s %s %s %s { type %s ;%s }", verb, kind, t, op.Name, op.Def.Type, extra)
	case ObjCounter:
		return fmt.Sprintf("%s counter %s %s", verb, t, op.Name)
	case ObjElement:
		if op.Value != "" {
			return fmt.Sprintf("%s element %s %s { %s : %s }", verb, t, op.Name, op.Key, op.Value)
		}
		return fmt.Sprintf("%s element %s %s { %s }", verb, t, op.Name, op.Key)
	}
	return "?"
}
