// Package l2probe measures a LoadBalancer address from a client on the
// LAN, for the layer-2 tests and benchmarks: a request every few
// milliseconds and the gaps between answers, and who answers ARP for it.
package l2probe

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/berthnet/berth/lab/netns"
)

// Requests sends a UDP request to a udp-echo Service every Every from one
// socket in ns and records when answers come.
type Requests struct {
	conn    *net.UDPConn
	cancel  context.CancelFunc
	done    chan struct{}
	mu      sync.Mutex
	sent    int
	answers []time.Time
	started time.Time
}

// StartRequests begins sending to target from ns.
func StartRequests(ns *netns.Namespace, target netip.AddrPort, every time.Duration) (*Requests, error) {
	r := &Requests{done: make(chan struct{}), started: time.Now()}
	if err := ns.Do(func() (err error) {
		r.conn, err = net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(target))
		return err
	}); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	go func() {
		buf := make([]byte, 1500)
		for {
			if _, err := r.conn.Read(buf); err != nil {
				if ctx.Err() != nil {
					return
				}
				continue // ICMP errors while nobody answers ARP
			}
			r.mu.Lock()
			r.answers = append(r.answers, time.Now())
			r.mu.Unlock()
		}
	}()
	go func() {
		defer close(r.done)
		t := time.NewTicker(every)
		defer t.Stop()
		for i := 0; ; i++ {
			_, _ = r.conn.Write([]byte(strconv.Itoa(i)))
			r.mu.Lock()
			r.sent++
			r.mu.Unlock()
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return r, nil
}

// AnsweredSince reports whether an answer came after t.
func (r *Requests) AnsweredSince(t time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.answers) > 0 && r.answers[len(r.answers)-1].After(t)
}

// FirstAnswer is when the first answer came (zero: none yet).
func (r *Requests) FirstAnswer() time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.answers) == 0 {
		return time.Time{}
	}
	return r.answers[0]
}

// Result sums up a run.
type Result struct {
	Sent, Answered int
	// LongestGap is the longest time without an answer, between two
	// answers (or from the start to the first).
	LongestGap time.Duration
	// GapStart is when it began.
	GapStart time.Time
}

func (r Result) String() string {
	return fmt.Sprintf("%d of %d requests answered, longest gap %s", r.Answered, r.Sent, r.LongestGap.Round(time.Millisecond))
}

// Stop ends the run and sums it up.
func (r *Requests) Stop() Result {
	r.cancel()
	<-r.done
	r.conn.Close()
	r.mu.Lock()
	defer r.mu.Unlock()
	res := Result{Sent: r.sent, Answered: len(r.answers)}
	prev := r.started
	for _, t := range r.answers {
		if g := t.Sub(prev); g > res.LongestGap {
			res.LongestGap, res.GapStart = g, prev
		}
		prev = t
	}
	return res
}
