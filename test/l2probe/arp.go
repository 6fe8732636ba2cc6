package l2probe

import (
	"context"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/mdlayher/arp"

	"github.com/berthnet/berth/lab/netns"
)

// Answerers asks "who has addr?" every Every from ns's link and records
// every answer: which MACs answered each request.
type Answerers struct {
	client *arp.Client
	addr   netip.Addr
	cancel context.CancelFunc
	done   chan struct{}
	mu     sync.Mutex
	// rounds[i] holds the MACs that answered the i-th request (answers
	// are put on the latest request sent).
	rounds []map[string]bool
}

// StartAnswerers begins asking on link in ns.
func StartAnswerers(ns *netns.Namespace, link string, addr netip.Addr, every time.Duration) (*Answerers, error) {
	a := &Answerers{addr: addr, done: make(chan struct{})}
	if err := ns.Do(func() error {
		ifi, err := net.InterfaceByName(link)
		if err != nil {
			return err
		}
		a.client, err = arp.Dial(ifi)
		return err
	}); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	a.cancel = cancel
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		for ctx.Err() == nil {
			_ = a.client.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
			p, _, err := a.client.Read()
			if err != nil || p.Operation != arp.OperationReply || p.SenderIP != addr {
				continue
			}
			a.mu.Lock()
			if n := len(a.rounds); n > 0 {
				a.rounds[n-1][p.SenderHardwareAddr.String()] = true
			}
			a.mu.Unlock()
		}
	}()
	go func() {
		defer close(a.done)
		defer func() { <-readDone }()
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			a.mu.Lock()
			a.rounds = append(a.rounds, map[string]bool{})
			a.mu.Unlock()
			_ = a.client.Request(addr)
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return a, nil
}

// Rounds is how many requests went out so far.
func (a *Answerers) Rounds() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.rounds)
}

// Answers sums up who answered.
type Answers struct {
	Requests int
	// ByMAC counts the requests each MAC answered.
	ByMAC map[string]int
	// Both counts requests that two or more MACs answered.
	Both int
	// Flips counts changes of answerer from one answered request to the
	// next.
	Flips int
}

// Stop ends the run and sums it up.
func (a *Answerers) Stop() Answers {
	a.cancel()
	<-a.done
	a.client.Close()
	a.mu.Lock()
	defer a.mu.Unlock()
	out := Answers{Requests: len(a.rounds), ByMAC: map[string]int{}}
	last := ""
	for _, r := range a.rounds {
		if len(r) > 1 {
			out.Both++
		}
		for mac := range r {
			out.ByMAC[mac]++
			if len(r) == 1 {
				if last != "" && mac != last {
					out.Flips++
				}
				last = mac
			}
		}
	}
	return out
}
