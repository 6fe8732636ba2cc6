package proxy

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// Netlink is the kernel backend: it sends each transaction to nf_tables as
// one netlink batch, without the nft tool. nft reads the whole table into
// its cache before every change, which at 10,000 Services costs about a
// second per change; here a change costs what it sends.
type Netlink struct {
	conn  *nftables.Conn
	table *nftables.Table
	// defs are the sets and maps the table has, as of the last applied
	// transaction: element operations need their types.
	defs map[string]SetDef
}

// elementsPerMessage keeps a message's element list well under netlink's
// 64 KiB attribute limit.
const elementsPerMessage = 256

// NewNetlink returns a backend for the berth-proxy table in the network
// namespace of the calling thread (or the one opts name).
func NewNetlink(opts ...nftables.ConnOption) (*Netlink, error) {
	opts = append(opts, nftables.AsLasting(), nftables.WithSockOptions(largeBuffers))
	conn, err := nftables.New(opts...)
	if err != nil {
		return nil, fmt.Errorf("nftables netlink socket: %w", err)
	}
	return &Netlink{conn: conn, table: &nftables.Table{Name: Table, Family: nftables.TableFamilyINet}, defs: map[string]SetDef{}}, nil
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
	_, err := n.conn.ListTableOfFamily(Table, nftables.TableFamilyINet)
	if err == nil {
		return true, nil
	}
	if errors.Is(err, unix.ENOENT) {
		return false, nil
	}
	return false, fmt.Errorf("list table %s: %w", Table, err)
}

// Apply implements Backend: the whole transaction is one batch, which the
// kernel applies all or nothing.
func (n *Netlink) Apply(_ context.Context, tx *Tx) error {
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
						return err
					}
				}
				n.conn.AddChain(c)
			case OpFlush:
				n.conn.FlushChain(c)
			case OpDelete:
				n.conn.DelChain(c)
			}
		case ObjRule:
			exprs, err := compileRule(op.Rule)
			if err != nil {
				return err
			}
			n.conn.AddRule(&nftables.Rule{Table: n.table, Chain: &nftables.Chain{Name: op.Name, Table: n.table}, Exprs: exprs})
		case ObjSet:
			switch op.Kind {
			case OpAdd:
				s, err := n.setOf(op.Name, *op.Def)
				if err != nil {
					return err
				}
				if err := n.conn.AddSet(s, nil); err != nil {
					return fmt.Errorf("set %s: %w", op.Name, err)
				}
				defs[op.Name] = *op.Def
			case OpFlush, OpDelete:
				s, _, err := set(op.Name)
				if err != nil {
					return err
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
				return err
			}
			elems, err := n.elements(d, ops[i:j+1])
			if err != nil {
				return fmt.Errorf("set %s: %w", op.Name, err)
			}
			for k := 0; k < len(elems); k += elementsPerMessage {
				chunk := elems[k:min(k+elementsPerMessage, len(elems))]
				if op.Kind == OpAdd {
					err = n.conn.SetAddElements(s, chunk)
				} else {
					err = n.conn.SetDeleteElements(s, chunk)
				}
				if err != nil {
					return fmt.Errorf("set %s: %w", op.Name, err)
				}
			}
			i = j
		}
	}
	if err := n.conn.Flush(); err != nil {
		return err
	}
	n.defs = defs
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
	case "output":
		c.Hooknum = nftables.ChainHookOutput
	case "postrouting":
		c.Hooknum = nftables.ChainHookPostrouting
	default:
		return fmt.Errorf("chain %s: hook %q", c.Name, b.Hook)
	}
	prio := map[string]int32{"dstnat": -100, "srcnat": 100}
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

// fieldTypes are the nft types the proxy's sets and maps use.
var fieldTypes = map[string]nftables.SetDatatype{
	"ipv4_addr":    nftables.TypeIPAddr,
	"ipv6_addr":    nftables.TypeIP6Addr,
	"inet_proto":   nftables.TypeInetProto,
	"inet_service": nftables.TypeInetService,
	"verdict":      nftables.TypeVerdict,
	"integer":      nftables.TypeInteger,
}

func parseType(t string) ([]nftables.SetDatatype, error) {
	var out []nftables.SetDatatype
	for _, f := range strings.Split(t, " . ") {
		ft, ok := fieldTypes[strings.TrimSpace(f)]
		if !ok {
			return nil, fmt.Errorf("type %q", f)
		}
		out = append(out, ft)
	}
	return out, nil
}

func (n *Netlink) setOf(name string, d SetDef) (*nftables.Set, error) {
	keyT, dataT, isMap := d.Type, "", false
	if k, v, ok := strings.Cut(d.Type, " : "); ok {
		keyT, dataT, isMap = k, v, true
	}
	keys, err := parseType(keyT)
	if err != nil {
		return nil, err
	}
	s := &nftables.Set{Table: n.table, Name: name, IsMap: isMap, Interval: d.Interval}
	if len(keys) == 1 {
		s.KeyType = keys[0]
	} else {
		s.KeyType = nftables.MustConcatSetType(keys...)
	}
	if s.KeyType.Name == "integer" {
		// Keys drawn by numgen, which writes host order.
		s.KeyByteOrder = binaryutil.NativeEndian
	}
	if isMap {
		data, err := parseType(dataT)
		if err != nil {
			return nil, err
		}
		if len(data) == 1 {
			s.DataType = data[0]
		} else {
			s.DataType = nftables.MustConcatSetType(data...)
		}
	}
	if d.TimeoutSeconds > 0 {
		s.Dynamic, s.HasTimeout, s.Timeout = true, true, time.Duration(d.TimeoutSeconds)*time.Second
	}
	return s, nil
}

// elements encodes element operations (all on one set, all adds or all
// deletes) as netlink set elements. Intervals (CIDRs) become a start and
// an end element, as nft sends them.
func (n *Netlink) elements(d SetDef, ops []Op) ([]nftables.SetElement, error) {
	keyT, dataT, isMap := strings.Cut(d.Type, " : ")
	fields, err := parseType(keyT)
	if err != nil {
		return nil, err
	}
	var dataFields []nftables.SetDatatype
	if isMap && dataT != "verdict" {
		if dataFields, err = parseType(dataT); err != nil {
			return nil, err
		}
	}
	if d.Interval {
		return intervals(ops)
	}
	out := make([]nftables.SetElement, 0, len(ops))
	for _, op := range ops {
		key, err := encodeKey(fields, op.Key)
		if err != nil {
			return nil, err
		}
		e := nftables.SetElement{Key: key}
		if dataFields != nil && op.Kind == OpAdd {
			if e.Val, err = encodeKey(dataFields, op.Value); err != nil {
				return nil, err
			}
		} else if isMap && op.Kind == OpAdd {
			kind, chain, _ := strings.Cut(op.Value, " ")
			v := &expr.Verdict{Kind: expr.VerdictGoto, Chain: chain}
			if kind == "jump" {
				v.Kind = expr.VerdictJump
			}
			e.VerdictData = v
		}
		out = append(out, e)
	}
	return out, nil
}

// encodeKey encodes "10.96.0.10 . udp . 53" for fields; parts of a
// concatenation are padded to 4 bytes.
func encodeKey(fields []nftables.SetDatatype, key string) ([]byte, error) {
	parts := strings.Split(key, " . ")
	if len(parts) != len(fields) {
		return nil, fmt.Errorf("key %q does not fit %d fields", key, len(fields))
	}
	var out []byte
	for i, f := range fields {
		var b []byte
		switch f.Name {
		case "ipv4_addr", "ipv6_addr":
			a, err := netip.ParseAddr(parts[i])
			if err != nil || a.Is4() != (f.Name == "ipv4_addr") {
				return nil, fmt.Errorf("key %q: %q is not an %s", key, parts[i], f.Name)
			}
			b = a.AsSlice()
		case "integer":
			v, err := strconv.ParseUint(parts[i], 10, 32)
			if err != nil {
				return nil, fmt.Errorf("key %q: %q is not an integer", key, parts[i])
			}
			b = binaryutil.NativeEndian.PutUint32(uint32(v))
		case "inet_proto":
			p, err := protoNumber(parts[i])
			if err != nil {
				return nil, err
			}
			b = []byte{p}
		case "inet_service":
			p, err := strconv.ParseUint(parts[i], 10, 16)
			if err != nil {
				return nil, fmt.Errorf("key %q: port %q", key, parts[i])
			}
			b = binaryutil.BigEndian.PutUint16(uint16(p))
		}
		if len(fields) > 1 {
			for len(b)%4 != 0 {
				b = append(b, 0)
			}
		}
		out = append(out, b...)
	}
	return out, nil
}

// intervals turns CIDRs into the kernel's interval elements: sorted
// starts and ends, an end at zero when nothing starts there (as nft
// does), no end past the last address, and adjacent ranges joined.
func intervals(ops []Op) ([]nftables.SetElement, error) {
	type rng struct{ start, end []byte } // end nil: to the last address
	var rs []rng
	for _, op := range ops {
		p, err := netip.ParsePrefix(op.Key)
		if err != nil {
			return nil, fmt.Errorf("interval %q: %w", op.Key, err)
		}
		p = p.Masked()
		start := p.Addr().AsSlice()
		end := append([]byte{}, start...)
		bits := len(end)*8 - p.Bits()
		for i := len(end) - 1; i >= 0 && bits > 0; i-- {
			take := min(bits, 8)
			end[i] |= byte(1<<take - 1)
			bits -= take
		}
		// end+1, or nil when that overflows.
		carry := true
		for i := len(end) - 1; i >= 0 && carry; i-- {
			end[i]++
			carry = end[i] == 0
		}
		if carry {
			end = nil
		}
		rs = append(rs, rng{start, end})
	}
	sort.Slice(rs, func(i, j int) bool { return string(rs[i].start) < string(rs[j].start) })
	var merged []rng
	for _, r := range rs {
		if len(merged) > 0 {
			last := &merged[len(merged)-1]
			if last.end == nil || string(r.start) <= string(last.end) {
				if last.end != nil && (r.end == nil || string(r.end) > string(last.end)) {
					last.end = r.end
				}
				continue
			}
		}
		merged = append(merged, r)
	}
	var out []nftables.SetElement
	if len(merged) > 0 && strings.Trim(string(merged[0].start), "\x00") != "" {
		out = append(out, nftables.SetElement{Key: make([]byte, len(merged[0].start)), IntervalEnd: true})
	}
	for _, r := range merged {
		out = append(out, nftables.SetElement{Key: r.start})
		if r.end != nil {
			out = append(out, nftables.SetElement{Key: r.end, IntervalEnd: true})
		}
	}
	return out, nil
}
