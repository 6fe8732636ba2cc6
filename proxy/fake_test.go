package proxy

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
)

// fakeBackend holds the table in memory and refuses what the kernel
// refuses: objects that do not exist, chains still in use, elements that
// clash. A transaction applies whole or not at all.
type fakeBackend struct {
	exists bool
	rs     Ruleset
	defs   map[string]SetDef
	runs   int
	// lastOps is the size of the last transaction, lastTx its text.
	lastOps int
	lastTx  string
	// fail makes the next Apply fail.
	fail error
}

func newFake() *fakeBackend { return &fakeBackend{} }

func (f *fakeBackend) TableExists(context.Context) (bool, error) { return f.exists, nil }

func (f *fakeBackend) clone() *fakeBackend {
	c := &fakeBackend{exists: f.exists, defs: maps.Clone(f.defs),
		rs: Ruleset{Chains: map[string][]string{}, Maps: map[string]Map{}, Sets: map[string]Set{}}}
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
	return c
}

func (f *fakeBackend) Apply(_ context.Context, tx *Tx) error {
	f.runs++
	f.lastOps, f.lastTx = tx.Len(), tx.String()
	if f.fail != nil {
		err := f.fail
		f.fail = nil
		return err
	}
	c := f.clone()
	for _, op := range tx.Ops {
		if err := c.apply(op); err != nil {
			return fmt.Errorf("%s: %w", op, err)
		}
	}
	c.runs, c.lastOps, c.lastTx = f.runs, f.lastOps, f.lastTx
	*f = *c
	return nil
}

// refs lists the chains and sets a rule or verdict names.
func refs(text string) (chains, sets []string) {
	for i, w := range strings.Fields(text) {
		w = strings.TrimSuffix(w, ",")
		if strings.HasPrefix(w, "@") {
			sets = append(sets, w[1:])
		}
		if i > 0 {
			if prev := strings.Fields(text)[i-1]; prev == "goto" || prev == "jump" {
				chains = append(chains, w)
			}
		}
	}
	return chains, sets
}

func (f *fakeBackend) used(chain, set string) bool {
	for name, rules := range f.rs.Chains {
		if name == chain {
			continue
		}
		for _, r := range rules {
			cs, ss := refs(r)
			if (chain != "" && slices.Contains(cs, chain)) || (set != "" && slices.Contains(ss, set)) {
				return true
			}
		}
	}
	for _, m := range f.rs.Maps {
		for _, v := range m.Elements {
			if cs, _ := refs(v); chain != "" && slices.Contains(cs, chain) {
				return true
			}
		}
	}
	return false
}

func (f *fakeBackend) apply(op Op) error {
	if op.Obj != ObjTable && !f.exists {
		return fmt.Errorf("no table")
	}
	switch op.Obj {
	case ObjTable:
		switch op.Kind {
		case OpAdd:
			if !f.exists {
				f.exists = true
				f.rs = Ruleset{Chains: map[string][]string{}, Maps: map[string]Map{}, Sets: map[string]Set{}}
				f.defs = map[string]SetDef{}
			}
		case OpDelete:
			if !f.exists {
				return fmt.Errorf("no table")
			}
			f.exists = false
		}
	case ObjChain:
		_, has := f.rs.Chains[op.Name]
		switch op.Kind {
		case OpAdd:
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
			case f.used(op.Name, ""):
				return fmt.Errorf("chain in use")
			}
			delete(f.rs.Chains, op.Name)
		}
	case ObjRule:
		if _, has := f.rs.Chains[op.Name]; !has {
			return fmt.Errorf("no chain")
		}
		cs, ss := refs(op.Rule)
		for _, c := range cs {
			if _, ok := f.rs.Chains[c]; !ok {
				return fmt.Errorf("rule jumps to missing chain %s", c)
			}
		}
		for _, s := range ss {
			if _, ok := f.defs[s]; !ok {
				return fmt.Errorf("rule uses missing set %s", s)
			}
		}
		f.rs.Chains[op.Name] = append(f.rs.Chains[op.Name], op.Rule)
	case ObjSet:
		_, has := f.defs[op.Name]
		switch op.Kind {
		case OpAdd:
			if has {
				return nil
			}
			f.defs[op.Name] = *op.Def
			if op.Def.IsMap() {
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
			if f.used("", op.Name) {
				return fmt.Errorf("set in use")
			}
			delete(f.defs, op.Name)
			delete(f.rs.Maps, op.Name)
			delete(f.rs.Sets, op.Name)
		}
	case ObjElement:
		d, has := f.defs[op.Name]
		if !has {
			return fmt.Errorf("no set")
		}
		if d.IsMap() {
			m := f.rs.Maps[op.Name]
			old, had := m.Elements[op.Key]
			switch op.Kind {
			case OpAdd:
				if had && old != op.Value {
					return fmt.Errorf("element exists with another value")
				}
				if cs, _ := refs(op.Value); len(cs) > 0 {
					if _, ok := f.rs.Chains[cs[0]]; !ok {
						return fmt.Errorf("element points at missing chain %s", cs[0])
					}
				}
				m.Elements[op.Key] = op.Value
			case OpDelete:
				if !had {
					return fmt.Errorf("no element")
				}
				delete(m.Elements, op.Key)
			}
			return nil
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
		}
		f.rs.Sets[op.Name] = s
	}
	return nil
}

// ruleset is the table as the fake holds it, base chains included, with
// set elements sorted.
func (f *fakeBackend) ruleset() Ruleset {
	c := f.clone().rs
	for k, s := range c.Sets {
		slices.Sort(s.Elements)
		c.Sets[k] = s
	}
	return c
}
