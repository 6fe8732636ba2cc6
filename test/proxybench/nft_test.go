package proxybench

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink/nl"
	vnetns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/berthnet/berth/lab/netns"
)

// The benchmark asks the kernel, never the proxies, whether rules are in
// place, the same way for both proxies, over netfilter netlink:
//
//   - full sync: the ruleset generation (one tiny request, bumped by every
//     committed transaction) is polled every few milliseconds; when it moves,
//     one dump of the service-ips map (the map both proxies key by ClusterIP
//     . protocol . port) counts the benchmark's Services in it. A Service's
//     element can only exist once its chains and endpoint chains do (the
//     element jumps to them, in the same transaction), so "all N elements"
//     is "all N Services applied".
//   - one change: a listener on the nftables notification group, opened
//     after the full sync so that the full sync does not make the kernel
//     build notifications for it, sees the commit that adds the new map
//     element (Service change) or the first rule or set element with the
//     new endpoint's address (endpoint change).
//
// Running nft instead would distort what is measured: `nft get element`
// or `nft list chain` load the whole table first, seconds of kernel time
// per call with 10,000 Services (100,000+ chains) on this kind of machine.

// nfConn is a netfilter netlink socket inside one network namespace.
type nfConn struct {
	h *nl.SocketHandle
}

func openNF(tb testing.TB, ns *netns.Namespace) *nfConn {
	tb.Helper()
	s, err := nl.GetNetlinkSocketAt(vnetns.NsHandle(ns.Fd()), vnetns.None(), unix.NETLINK_NETFILTER)
	if err != nil {
		tb.Fatalf("netfilter netlink socket in %s: %v", ns.Name, err)
	}
	tv := unix.NsecToTimeval(int64(30 * time.Second))
	_ = s.SetSendTimeout(&tv)
	_ = s.SetReceiveTimeout(&tv)
	tb.Cleanup(s.Close)
	return &nfConn{h: &nl.SocketHandle{Socket: s}}
}

// nfgenmsg is the header of every nftables netlink message.
type nfgenmsg uint8

func (f nfgenmsg) Len() int          { return 4 }
func (f nfgenmsg) Serialize() []byte { return []byte{byte(f), unix.NFNETLINK_V0, 0, 0} }

func (c *nfConn) do(msg uint16, flags int, family uint8, attrs []*nl.RtAttr, each func(data []byte)) error {
	req := nl.NewNetlinkRequest(int(unix.NFNL_SUBSYS_NFTABLES<<8|msg), flags)
	req.Sockets = map[int]*nl.SocketHandle{unix.NETLINK_NETFILTER: c.h}
	req.AddData(nfgenmsg(family))
	for _, a := range attrs {
		req.AddData(a)
	}
	return req.ExecuteIter(unix.NETLINK_NETFILTER, 0, func(data []byte) bool {
		each(data)
		return true
	})
}

// generation is the namespace's ruleset generation.
func (c *nfConn) generation() (uint32, error) {
	var gen uint32
	found := false
	err := c.do(unix.NFT_MSG_GETGEN, 0, unix.NFPROTO_UNSPEC, nil, func(data []byte) {
		for _, a := range attrs(data) {
			if a.Attr.Type&nl.NLA_TYPE_MASK == unix.NFTA_GEN_ID && len(a.Value) == 4 {
				gen, found = binary.BigEndian.Uint32(a.Value), true
			}
		}
	})
	if err == nil && !found {
		err = errors.New("no generation in the kernel's answer")
	}
	return gen, err
}

// countKeys counts the elements of a map whose key starts with one of the
// IPv4 addresses in want (the benchmark's ClusterIPs; other Services, such
// as the API server's own, do not count). A missing table or map counts 0.
func (c *nfConn) countKeys(family uint8, table, set string, want map[[4]byte]bool) (int, error) {
	n := 0
	err := c.do(unix.NFT_MSG_GETSETELEM, unix.NLM_F_DUMP, family, []*nl.RtAttr{
		nl.NewRtAttr(unix.NFTA_SET_ELEM_LIST_TABLE, nl.ZeroTerminated(table)),
		nl.NewRtAttr(unix.NFTA_SET_ELEM_LIST_SET, nl.ZeroTerminated(set)),
	}, func(data []byte) {
		for _, list := range attrs(data) {
			if list.Attr.Type&nl.NLA_TYPE_MASK != unix.NFTA_SET_ELEM_LIST_ELEMENTS {
				continue
			}
			for _, elem := range nested(list.Value) {
				if key, ok := elementKey(elem.Value); ok && len(key) >= 4 && want[[4]byte(key[:4])] {
					n++
				}
			}
		}
	})
	if errors.Is(err, syscall.ENOENT) {
		return 0, nil
	}
	return n, err
}

// elementKey is NFTA_SET_ELEM_KEY / NFTA_DATA_VALUE of one element.
func elementKey(elem []byte) ([]byte, bool) {
	for _, a := range nested(elem) {
		if a.Attr.Type&nl.NLA_TYPE_MASK != unix.NFTA_SET_ELEM_KEY {
			continue
		}
		for _, v := range nested(a.Value) {
			if v.Attr.Type&nl.NLA_TYPE_MASK == unix.NFTA_DATA_VALUE {
				return v.Value, true
			}
		}
	}
	return nil, false
}

// attrs parses the attributes after an nftables message's nfgenmsg.
func attrs(data []byte) []syscall.NetlinkRouteAttr {
	if len(data) < 4 {
		return nil
	}
	return nested(data[4:])
}

func nested(b []byte) []syscall.NetlinkRouteAttr {
	as, err := nl.ParseRouteAttr(b)
	if err != nil {
		return nil
	}
	return as
}

// serviceKey is a service-ips key as the kernel stores it: address,
// protocol and port, each in its own 32-bit register.
func serviceKey(addr netip.Addr, proto uint8, port uint16) []byte {
	a := addr.As4()
	return []byte{a[0], a[1], a[2], a[3], proto, 0, 0, 0, byte(port >> 8), byte(port), 0, 0}
}

// nfEvent is one nftables notification.
type nfEvent struct {
	at   time.Time
	msg  uint16 // NFT_MSG_*
	data []byte
}

// nfWatch records the nftables notifications of one namespace.
type nfWatch struct {
	s      *nl.NetlinkSocket
	mu     sync.Mutex
	events []nfEvent
	err    error
	more   chan struct{}
}

func watchNF(tb testing.TB, ns *netns.Namespace) *nfWatch {
	tb.Helper()
	s, err := nl.SubscribeAt(vnetns.NsHandle(ns.Fd()), vnetns.None(), unix.NETLINK_NETFILTER, unix.NFNLGRP_NFTABLES)
	if err != nil {
		tb.Fatalf("subscribe to nftables notifications in %s: %v", ns.Name, err)
	}
	// Room for a resync's worth of notifications while nobody reads.
	_ = s.SetReceiveBufferSize(16<<20, true)
	w := &nfWatch{s: s, more: make(chan struct{}, 1)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			msgs, _, err := s.Receive()
			now := time.Now()
			w.mu.Lock()
			if err != nil {
				w.err = err
				w.mu.Unlock()
				w.signal()
				return
			}
			for _, m := range msgs {
				w.events = append(w.events, nfEvent{at: now, msg: m.Header.Type & 0xff, data: m.Data})
			}
			w.mu.Unlock()
			w.signal()
		}
	}()
	tb.Cleanup(func() {
		s.Close()
		<-done
	})
	return w
}

func (w *nfWatch) signal() {
	select {
	case w.more <- struct{}{}:
	default:
	}
}

// mark is where the events after now will start.
func (w *nfWatch) mark() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.events)
}

// wait returns when the first event after mark that matches arrived.
func (w *nfWatch) wait(mark int, timeout time.Duration, match func(nfEvent) bool) (time.Time, error) {
	deadline := time.After(timeout)
	for {
		w.mu.Lock()
		for ; mark < len(w.events); mark++ {
			if match(w.events[mark]) {
				at := w.events[mark].at
				w.mu.Unlock()
				return at, nil
			}
		}
		err := w.err
		w.mu.Unlock()
		if err != nil {
			return time.Time{}, fmt.Errorf("nftables notifications: %w", err)
		}
		select {
		case <-w.more:
		case <-deadline:
			return time.Time{}, fmt.Errorf("no matching nftables change within %s", timeout)
		}
	}
}

// newElement matches the commit that adds key to the map named set.
func newElement(set string, key []byte) func(nfEvent) bool {
	name := nl.ZeroTerminated(set)
	return func(e nfEvent) bool {
		return e.msg == unix.NFT_MSG_NEWSETELEM && bytes.Contains(e.data, name) && bytes.Contains(e.data, key)
	}
}

// newEndpoint matches the commit that brings the endpoint's address into
// the ruleset: kube-proxy puts it in an anonymous map of its Service's DNAT
// rule, Berth in the rules of its Service's chain. Nothing held it before:
// the address is new.
func newEndpoint(ip netip.Addr) func(nfEvent) bool {
	a := ip.As4()
	return func(e nfEvent) bool {
		switch e.msg {
		case unix.NFT_MSG_NEWRULE, unix.NFT_MSG_NEWSETELEM:
			return bytes.Contains(e.data, a[:])
		}
		return false
	}
}
