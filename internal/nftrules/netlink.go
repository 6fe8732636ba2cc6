package nftrules

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// Netlink is the kernel backend: it sends each transaction to nf_tables as
// one netlink batch, without the nft tool. nft reads the whole table into
// its cache before every change, which at 10,000 Services costs about a
// second per change; here a change costs what it sends.
type Netlink struct {
	// mu keeps one use of the socket at a time: a counter read (a metrics
	// scrape) between a transaction's batch and its answers would read
	// the answers.
	mu    sync.Mutex
	conn  *nftables.Conn
	table *nftables.Table
	// defs are the sets and maps the table has, as of the last applied
	// transaction: element operations need their types.
	defs map[string]SetDef
}

// elementsPerMessage keeps a message's element list well under netlink's
// 64 KiB attribute limit.
const elementsPerMessage = 256

// NewNetlink returns a backend for the inet table named table in the
// network namespace of the calling thread (or the one opts name).
func NewNetlink(table string, opts ...nftables.ConnOption) (*Netlink, error) {
	opts = append(opts, nftables.AsLasting(), nftables.WithSockOptions(largeBuffers))
	conn, err := nftables.New(opts...)
	if err != nil {
		return nil, fmt.Errorf("nftables netlink socket: %w", err)
	}
	return &Netlink{conn: conn, table: &nftables.Table{Name: table, Family: nftables.TableFamilyINet}, defs: map[string]SetDef{}}, nil
}

// largeBuffers lets one batch carry a whole table: the kernel answers
// every message of a batch before the reader runs, so the receive buffer
// must hold all the answers. The sizes are limits, not allocations.
func largeBuffers(c *netlink.Conn) error {
	raw, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := raw.Control(func(fd uintptr) {
		for _, o := range []int{unix.SO_SNDBUFFORCE, unix.SO_RCVBUFFORCE} {
			if e := unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, o, 256<<20); e != nil {
				serr = e
			}
		}
	}); err != nil {
		return err
	}
	if serr != nil {
		// Without CAP_NET_ADMIN the kernel's maximums apply.
		_ = c.SetReadBuffer(256 << 20)
		_ = c.SetWriteBuffer(256 << 20)
	}
	return nil
}

// Close closes the socket.
func (n *Netlink) Close() error { return n.conn.CloseLasting() }

// TableExists implements Backend.
func (n *Netlink) TableExists(context.Context) (bool, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	_, err := n.conn.ListTableOfFamily(n.table.Name, nftables.TableFamilyINet)
	if err == nil {
		return true, nil
	}
	if errors.Is(err, unix.ENOENT) {
		return false, nil
	}
	return false, fmt.Errorf("list table %s: %w", n.table.Name, err)
}

// Counters reads the packets counted on each named counter of the table.
func (n *Netlink) Counters(context.Context) (map[string]uint64, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	objs, err := n.conn.GetNamedObjects(n.table)
	if err != nil {
		return nil, fmt.Errorf("list counters of table %s: %w", n.table.Name, err)
	}
	out := map[string]uint64{}
	for _, o := range objs {
		if n, ok := o.(*nftables.NamedObj); ok {
			if c, ok := n.Obj.(*expr.Counter); ok {
				out[n.Name] = c.Packets
			}
		}
	}
	return out, nil
}

// Apply implements Backend: the whole transaction is one batch, which the
// kernel applies all or nothing.
func (n *Netlink) Apply(_ context.Context, tx *Tx) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	defs, err := n.queue(tx)
	if err != nil {
		n.discard()
		return err
	}
	if err := n.conn.Flush(); err != nil {
		return err
	}
	n.defs = defs
	return nil
}

// discard empties the connection's queue of a half-built batch (a rule
// that did not compile, say), which the next Flush would otherwise send
// with the next transaction: it sends it with one more operation the
// kernel refuses, deleting a table that does not exist, so none of it is
// applied.
func (n *Netlink) discard() {
	n.conn.DelTable(&nftables.Table{Name: "berth-nftrules-discarded-batch", Family: nftables.TableFamilyINet})
	_ = n.conn.Flush()
}

// queue adds a transaction's operations to the connection's batch and
// returns the sets and maps the table will have once it is applied.
func (n *Netlink) queue(tx *Tx) (map[string]SetDef, error) {
	defs := make(map[string]SetDef, len(n.defs))
	for k, v := range n.defs {
		defs[k] = v
	}
	set := func(name string) (*nftables.Set, SetDef, error) {
		d, ok := defs[name]
		if !ok {
			return nil, d, fmt.Errorf("set %s is not in the table", name)
		}
		s, err := n.setOf(name, d)
		return s, d, err
	}
	ops := tx.Ops
	for i := 0; i < len(ops); i++ {
		op := ops[i]
		switch op.Obj {
		case ObjTable:
			switch op.Kind {
			case OpAdd:
				n.conn.AddTable(n.table)
			case OpDelete:
				n.conn.DelTable(n.table)
				defs = map[string]SetDef{}
			}
		case ObjChain:
			c := &nftables.Chain{Name: op.Name, Table: n.table}
			switch op.Kind {
			case OpAdd:
				if op.Base != nil {
					if err := baseChain(c, op.Base); err != nil {
						return nil, err
					}
				}
				n.conn.AddChain(c)
			case OpFlush:
				n.conn.FlushChain(c)
			case OpDelete:
				n.conn.DelChain(c)
			}
		case ObjRule:
			r, err := compileRule(op.Rule)
			if err != nil {
				return nil, fmt.Errorf("chain %s: %w", op.Name, err)
			}
			if err := n.addRule(op.Name, r); err != nil {
				return nil, fmt.Errorf("chain %s: rule %q: %w", op.Name, op.Rule, err)
			}
		case ObjCounter:
			c := &nftables.CounterObj{Table: n.table, Name: op.Name}
			if op.Kind == OpAdd {
				n.conn.AddObj(c)
			} else {
				n.conn.DeleteObject(c)
			}
		case ObjSet:
			switch op.Kind {
			case OpAdd:
				s, err := n.setOf(op.Name, *op.Def)
				if err != nil {
					return nil, err
				}
				if err := n.conn.AddSet(s, nil); err != nil {
					return nil, fmt.Errorf("set %s: %w", op.Name, err)
				}
				defs[op.Name] = *op.Def
			case OpFlush, OpDelete:
				s, _, err := set(op.Name)
				if err != nil {
					return nil, err
				}
				if op.Kind == OpFlush {
					n.conn.FlushSet(s)
				} else {
					n.conn.DelSet(s)
					delete(defs, op.Name)
				}
			}
		case ObjElement:
			// Consecutive operations of one kind on one set go together.
			j := i
			for j+1 < len(ops) && ops[j+1].Obj == ObjElement && ops[j+1].Kind == op.Kind && ops[j+1].Name == op.Name {
				j++
			}
			s, d, err := set(op.Name)
			if err != nil {
				return nil, err
			}
			elems, err := n.elements(d, ops[i:j+1])
			if err != nil {
				return nil, fmt.Errorf("set %s: %w", op.Name, err)
			}
			for k := 0; k < len(elems); k += elementsPerMessage {
				chunk := elems[k:min(k+elementsPerMessage, len(elems))]
				if op.Kind == OpAdd {
					err = n.conn.SetAddElements(s, chunk)
				} else {
					err = n.conn.SetDeleteElements(s, chunk)
				}
				if err != nil {
					return nil, fmt.Errorf("set %s: %w", op.Name, err)
				}
			}
			i = j
		}
	}
	return defs, nil
}

// addRule adds a compiled rule, with the anonymous sets it looks up and
// its comment.
func (n *Netlink) addRule(chain string, r compiledRule) error {
	for i, a := range r.anon {
		s := &nftables.Set{Table: n.table, Anonymous: true, Constant: true, KeyType: a.keyType}
		var elems []nftables.SetElement
		for _, k := range a.keys {
			elems = append(elems, nftables.SetElement{Key: k})
		}
		if err := n.conn.AddSet(s, elems); err != nil {
			return fmt.Errorf("anonymous set: %w", err)
		}
		r.lookups[i].SetName, r.lookups[i].SetID = s.Name, s.ID
	}
	rule := &nftables.Rule{Table: n.table, Chain: &nftables.Chain{Name: chain, Table: n.table}, Exprs: r.exprs}
	if r.comment != "" {
		rule.UserData = userdata.Append(nil, userdata.TypeComment, []byte(r.comment+"\x00")) // nft reads it NUL-terminated
	}
	n.conn.AddRule(rule)
	return nil
}

func baseChain(c *nftables.Chain, b *BaseChain) error {
	switch b.Type {
	case "nat":
		c.Type = nftables.ChainTypeNAT
	case "filter":
		c.Type = nftables.ChainTypeFilter
	default:
		return fmt.Errorf("chain %s: type %q", c.Name, b.Type)
	}
	switch b.Hook {
	case "prerouting":
		c.Hooknum = nftables.ChainHookPrerouting
	case "input":
		c.Hooknum = nftables.ChainHookInput
	case "forward":
		c.Hooknum = nftables.ChainHookForward
	case "output":
		c.Hooknum = nftables.ChainHookOutput
	case "postrouting":
		c.Hooknum = nftables.ChainHookPostrouting
	default:
		return fmt.Errorf("chain %s: hook %q", c.Name, b.Hook)
	}
	prio := map[string]int32{"dstnat": -100, "filter": 0, "srcnat": 100}
	p, ok := prio[b.Priority]
	if !ok {
		v, err := strconv.Atoi(b.Priority)
		if err != nil {
			return fmt.Errorf("chain %s: priority %q", c.Name, b.Priority)
		}
		p = int32(v)
	}
	c.Priority = nftables.ChainPriorityRef(nftables.ChainPriority(p))
	return nil
}

func (n *Netlink) setOf(name string, d SetDef) (*nftables.Set, error) {
	t, err := parseSetType(d.Type)
	if err != nil {
		return nil, fmt.Errorf("set %s: %w", name, err)
	}
	s := &nftables.Set{Table: n.table, Name: name, IsMap: t.isMap, Interval: d.Interval}
	if len(t.key) == 1 {
		s.KeyType = t.key[0]
	} else {
		s.KeyType = nftables.MustConcatSetType(t.key...)
		// A set of concatenated intervals is the kernel's pipapo set.
		s.Concatenation = d.Interval
	}
	if s.KeyType.Name == "integer" {
		// Keys drawn by numgen, which writes host order.
		s.KeyByteOrder = binaryutil.NativeEndian
	}
	if t.isMap {
		if t.verdict {
			s.DataType = nftables.TypeVerdict
		} else if len(t.data) == 1 {
			s.DataType = t.data[0]
		} else {
			s.DataType = nftables.MustConcatSetType(t.data...)
		}
	}
	if d.TimeoutSeconds > 0 {
		s.Dynamic, s.HasTimeout, s.Timeout = true, true, time.Duration(d.TimeoutSeconds)*time.Second
	}
	return s, nil
}

// elements encodes element operations (all on one set, all adds or all
// deletes) as netlink set elements. Intervals of one field become a start
// and an end element, as nft sends them; intervals of a concatenation
// carry their end in the element.
func (n *Netlink) elements(d SetDef, ops []Op) ([]nftables.SetElement, error) {
	t, err := parseSetType(d.Type)
	if err != nil {
		return nil, err
	}
	if d.Interval && len(t.key) == 1 {
		var rs []keyRange
		for _, op := range ops {
			r, err := t.parseKey(op.Key, true)
			if err != nil {
				return nil, err
			}
			rs = append(rs, r)
		}
		return intervals(rs), nil
	}
	out := make([]nftables.SetElement, 0, len(ops))
	for _, op := range ops {
		r, err := t.parseKey(op.Key, d.Interval)
		if err != nil {
			return nil, err
		}
		e := nftables.SetElement{Key: r.lo}
		if d.Interval {
			e.KeyEnd = r.hi
		}
		if t.isMap && op.Kind == OpAdd {
			if t.verdict {
				v, err := parseVerdict(op.Value)
				if err != nil {
					return nil, fmt.Errorf("element %q: %w", op.Key, err)
				}
				e.VerdictData = v
			} else if e.Val, err = t.parseData(op.Value); err != nil {
				return nil, err
			}
		}
		out = append(out, e)
	}
	return out, nil
}
