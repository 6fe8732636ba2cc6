package nftrules

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"

	"github.com/google/nftables"
)

// Fake is a table in memory that refuses what the kernel refuses: rules
// the compiler cannot compile, references to chains, sets, maps or
// counters that do not exist, elements that do not fit their set's type,
// deleting what does not exist or is still referred to, adding an element
// again with another value. A transaction applies whole or not at all.
// Tests read what it holds (Ruleset) and trace packets through it
// (NewTracer).
type Fake struct {
	mu     sync.Mutex
	table  string
	exists bool
	rs     Ruleset
	defs   map[string]SetDef
	// base are the base chains' definitions, by name.
	base map[string]BaseChain

	runs, lastOps int
	lastTx        string
	failNext      error
}

// NewFake returns a fake backend for a table that does not exist yet.
func NewFake(table string) *Fake { return &Fake{table: table} }

// TableExists implements Backend.
func (f *Fake) TableExists(context.Context) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.exists, nil
}

// FailNext makes the next Apply fail with err, as a kernel refusing it.
func (f *Fake) FailNext(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failNext = err
}

// Runs is the number of transactions Apply was given, refused ones too.
func (f *Fake) Runs() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.runs
}

// LastTx is the last transaction Apply was given, as nft commands, and
// its number of operations.
func (f *Fake) LastTx() (string, int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.lastTx, f.lastOps
}

// Counters implements what a backend that reads named counters offers;
// the fake counts no packets.
func (f *Fake) Counters(context.Context) (map[string]uint64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.exists {
		return nil, fmt.Errorf("no table %s", f.table)
	}
	out := map[string]uint64{}
	for _, c := range f.rs.Counters {
		out[c] = 0
	}
	return out, nil
}

// Apply implements Backend.
func (f *Fake) Apply(_ context.Context, tx *Tx) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.runs++
	f.lastOps, f.lastTx = tx.Len(), tx.String()
	if f.failNext != nil {
		err := f.failNext
		f.failNext = nil
		return err
	}
	c := f.clone()
	for _, op := range tx.Ops {
		if err := c.apply(op); err != nil {
			return fmt.Errorf("%s: %w", op.text(f.table), err)
		}
	}
	f.exists, f.rs, f.defs, f.base = c.exists, c.rs, c.defs, c.base
	return nil
}

// Ruleset is the table as the fake holds it: base chains (with their
// rules also in Chains), set elements sorted. ok is false when there is
// no table.
func (f *Fake) Ruleset() (rs Ruleset, ok bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.clone()
	for k, s := range c.rs.Sets {
		slices.Sort(s.Elements)
		c.rs.Sets[k] = s
	}
	for _, name := range sortedKeys(c.base) {
		b := c.base[name]
		b.Rules = c.rs.Chains[name]
		c.rs.Base = append(c.rs.Base, b)
	}
	return c.rs, c.exists
}

// clone copies the table, for a transaction to work on.
func (f *Fake) clone() *Fake {
	c := &Fake{table: f.table, exists: f.exists, defs: maps.Clone(f.defs), base: maps.Clone(f.base), rs: Empty()}
	for k, v := range f.rs.Chains {
		c.rs.Chains[k] = slices.Clone(v)
	}
	for k, m := range f.rs.Maps {
		c.rs.Maps[k] = Map{Type: m.Type, Elements: maps.Clone(m.Elements)}
	}
	for k, s := range f.rs.Sets {
		s.Elements = slices.Clone(s.Elements)
		c.rs.Sets[k] = s
	}
	c.rs.Counters = slices.Clone(f.rs.Counters)
	return c
}

// used reports whether a rule of another chain, or a map element,
// refers to the chain, set or counter.
func (f *Fake) used(chain, set, counter string) bool {
	for name, rules := range f.rs.Chains {
		if name == chain {
			continue
		}
		for _, r := range rules {
			cs, ss, ks := Refs(r)
			if (chain != "" && slices.Contains(cs, chain)) || (set != "" && slices.Contains(ss, set)) || (counter != "" && slices.Contains(ks, counter)) {
				return true
			}
		}
	}
	if chain == "" {
		return false
	}
	for _, m := range f.rs.Maps {
		for _, v := range m.Elements {
			if cs, _, _ := Refs(v); slices.Contains(cs, chain) {
				return true
			}
		}
	}
	return false
}

func (f *Fake) apply(op Op) error {
	if op.Obj != ObjTable && !f.exists {
		return fmt.Errorf("no table")
	}
	switch op.Obj {
	case ObjTable:
		switch op.Kind {
		case OpAdd:
			if !f.exists {
				f.exists, f.rs, f.defs, f.base = true, Empty(), map[string]SetDef{}, map[string]BaseChain{}
			}
		case OpDelete:
			if !f.exists {
				return fmt.Errorf("no table")
			}
			f.exists, f.rs, f.defs, f.base = false, Empty(), nil, nil
		default:
			return fmt.Errorf("not an operation on a table")
		}
	case ObjChain:
		return f.applyChain(op)
	case ObjRule:
		if _, has := f.rs.Chains[op.Name]; !has {
			return fmt.Errorf("no chain")
		}
		if _, err := compileRule(op.Rule); err != nil {
			return err
		}
		cs, ss, ks := Refs(op.Rule)
		for _, c := range cs {
			if _, ok := f.rs.Chains[c]; !ok {
				return fmt.Errorf("rule jumps to missing chain %s", c)
			}
			if _, ok := f.base[c]; ok {
				return fmt.Errorf("rule jumps to base chain %s", c)
			}
		}
		for _, s := range ss {
			if _, ok := f.defs[s]; !ok {
				return fmt.Errorf("rule uses missing set %s", s)
			}
		}
		for _, k := range ks {
			if !slices.Contains(f.rs.Counters, k) {
				return fmt.Errorf("rule counts on missing counter %s", k)
			}
		}
		f.rs.Chains[op.Name] = append(f.rs.Chains[op.Name], op.Rule)
	case ObjSet:
		return f.applySet(op)
	case ObjElement:
		return f.applyElement(op)
	case ObjCounter:
		has := slices.Contains(f.rs.Counters, op.Name)
		switch op.Kind {
		case OpAdd:
			if !has {
				f.rs.Counters = append(f.rs.Counters, op.Name)
				slices.Sort(f.rs.Counters)
			}
		case OpDelete:
			if !has {
				return fmt.Errorf("no counter")
			}
			if f.used("", "", op.Name) {
				return fmt.Errorf("counter in use")
			}
			f.rs.Counters = slices.DeleteFunc(f.rs.Counters, func(c string) bool { return c == op.Name })
		default:
			return fmt.Errorf("not an operation on a counter")
		}
	}
	return nil
}

func (f *Fake) applyChain(op Op) error {
	_, has := f.rs.Chains[op.Name]
	switch op.Kind {
	case OpAdd:
		if op.Base != nil {
			b := *op.Base
			b.Rules = nil
			if old, ok := f.base[op.Name]; has && (!ok || old.Type != b.Type || old.Hook != b.Hook || old.Priority != b.Priority) {
				return fmt.Errorf("chain exists with another definition")
			}
			if err := baseChain(&nftables.Chain{Name: op.Name}, &b); err != nil {
				return err
			}
			f.base[op.Name] = b
		} else if _, ok := f.base[op.Name]; ok {
			return fmt.Errorf("chain exists as a base chain")
		}
		if !has {
			f.rs.Chains[op.Name] = nil
		}
	case OpFlush:
		if !has {
			return fmt.Errorf("no chain")
		}
		f.rs.Chains[op.Name] = nil
	case OpDelete:
		switch {
		case !has:
			return fmt.Errorf("no chain")
		case len(f.rs.Chains[op.Name]) > 0:
			return fmt.Errorf("chain not empty")
		case f.used(op.Name, "", ""):
			return fmt.Errorf("chain in use")
		}
		delete(f.rs.Chains, op.Name)
		delete(f.base, op.Name)
	default:
		return fmt.Errorf("not an operation on a chain")
	}
	return nil
}

func (f *Fake) applySet(op Op) error {
	old, has := f.defs[op.Name]
	switch op.Kind {
	case OpAdd:
		if op.Def == nil {
			return fmt.Errorf("no definition")
		}
		if has {
			if old != *op.Def {
				return fmt.Errorf("set exists with another definition (%+v)", old)
			}
			return nil
		}
		t, err := parseSetType(op.Def.Type)
		if err != nil {
			return err
		}
		if t.isMap && (op.Def.Interval || op.Def.TimeoutSeconds > 0) {
			return fmt.Errorf("a map here is neither interval nor dynamic")
		}
		f.defs[op.Name] = *op.Def
		if t.isMap {
			f.rs.Maps[op.Name] = Map{Type: op.Def.Type, Elements: map[string]string{}}
		} else {
			f.rs.Sets[op.Name] = Set{Type: op.Def.Type, Interval: op.Def.Interval, TimeoutSeconds: op.Def.TimeoutSeconds}
		}
	case OpFlush:
		if !has {
			return fmt.Errorf("no set")
		}
		if m, ok := f.rs.Maps[op.Name]; ok {
			f.rs.Maps[op.Name] = Map{Type: m.Type, Elements: map[string]string{}}
		} else {
			s := f.rs.Sets[op.Name]
			s.Elements = nil
			f.rs.Sets[op.Name] = s
		}
	case OpDelete:
		if !has {
			return fmt.Errorf("no set")
		}
		if f.used("", op.Name, "") {
			return fmt.Errorf("set in use")
		}
		delete(f.defs, op.Name)
		delete(f.rs.Maps, op.Name)
		delete(f.rs.Sets, op.Name)
	default:
		return fmt.Errorf("not an operation on a set")
	}
	return nil
}

func (f *Fake) applyElement(op Op) error {
	d, has := f.defs[op.Name]
	if !has {
		return fmt.Errorf("no set")
	}
	t, err := parseSetType(d.Type)
	if err != nil {
		return err
	}
	if d.TimeoutSeconds > 0 {
		return fmt.Errorf("the kernel fills this dynamic set")
	}
	if _, err := t.parseKey(op.Key, d.Interval); err != nil {
		return err
	}
	if t.isMap {
		m := f.rs.Maps[op.Name]
		old, had := m.Elements[op.Key]
		switch op.Kind {
		case OpAdd:
			if had && old != op.Value {
				return fmt.Errorf("element exists with another value")
			}
			if t.verdict {
				v, err := parseVerdict(op.Value)
				if err != nil {
					return err
				}
				if v.Chain != "" {
					if _, ok := f.rs.Chains[v.Chain]; !ok {
						return fmt.Errorf("element points at missing chain %s", v.Chain)
					}
				}
			} else if _, err := t.parseData(op.Value); err != nil {
				return err
			}
			m.Elements[op.Key] = op.Value
		case OpDelete:
			if !had {
				return fmt.Errorf("no element")
			}
			delete(m.Elements, op.Key)
		default:
			return fmt.Errorf("not an operation on an element")
		}
		return nil
	}
	if op.Value != "" {
		return fmt.Errorf("a set's element has no value")
	}
	s := f.rs.Sets[op.Name]
	i := slices.Index(s.Elements, op.Key)
	switch op.Kind {
	case OpAdd:
		if i < 0 {
			s.Elements = append(s.Elements, op.Key)
		}
	case OpDelete:
		if i < 0 {
			return fmt.Errorf("no element")
		}
		s.Elements = slices.Delete(s.Elements, i, i+1)
	default:
		return fmt.Errorf("not an operation on an element")
	}
	f.rs.Sets[op.Name] = s
	return nil
}
