package l2announce

import (
	"sync"
	"time"
)

// ReplyLimit bounds the ARP replies and neighbour advertisements one
// source (a requester's Ethernet address for ARP, its IPv6 source address
// for NDP) gets from one interface: Burst at once, then Rate a second. A
// request over the limit is not answered and counts in
// berth_agent_l2_frames_total{outcome="limited"}. A flooding host then
// gets no more than that, whatever it sends, while other hosts are
// answered as before.
type ReplyLimit struct {
	// Rate is replies a second per source; 0 or less: no limit.
	Rate float64
	// Burst is how many replies a source may get at once (at least 1).
	Burst int
	// Now is the clock; time.Now when nil.
	Now func() time.Time
}

// DefaultReplyLimit is generous for a LAN router that resolves a thousand
// Service addresses every reachability period (about 30 s each), and
// still caps what one flooding host can make a node send.
var DefaultReplyLimit = ReplyLimit{Rate: 100, Burst: 200}

// LimitedReason starts the reason Serve logs for a request it does not
// answer because its source is over its ReplyLimit.
const LimitedReason = "limited: "

func limitedReason(why, source string) string {
	return LimitedReason + source + " is over its reply limit (would have " + why + ")"
}

// maxSources bounds the sources a limiter remembers; past it (a flood from
// made-up addresses), sources not seen before share one bucket.
const maxSources = 4096

// replyLimiter is a token bucket per source.
type replyLimiter struct {
	limit ReplyLimit
	mu    sync.Mutex
	// sources holds the buckets of sources seen; overflow is shared by
	// new sources while sources is full.
	sources  map[string]*bucket
	overflow bucket
}

type bucket struct {
	tokens float64
	at     time.Time
	// used: the bucket has been drawn from at least once.
	used bool
}

func newReplyLimiter(l ReplyLimit) *replyLimiter {
	if l.Burst < 1 {
		l.Burst = 1
	}
	if l.Now == nil {
		l.Now = time.Now
	}
	return &replyLimiter{limit: l, sources: map[string]*bucket{}}
}

// allow reports whether source may be answered now, and takes one reply
// from its allowance if so.
func (l *replyLimiter) allow(source string) bool {
	if l == nil || l.limit.Rate <= 0 {
		return true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.limit.Now()
	b := l.sources[source]
	if b == nil {
		if len(l.sources) >= maxSources {
			l.sweep(now)
		}
		if len(l.sources) >= maxSources {
			b = &l.overflow
		} else {
			b = &bucket{}
			l.sources[source] = b
		}
	}
	l.refill(b, now)
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// refill adds what the time since the bucket was last drawn from earns,
// up to Burst; a new bucket is full.
func (l *replyLimiter) refill(b *bucket, now time.Time) {
	burst := float64(l.limit.Burst)
	if !b.used {
		b.tokens, b.used = burst, true
	} else if d := now.Sub(b.at); d > 0 {
		b.tokens = min(burst, b.tokens+l.limit.Rate*d.Seconds())
	}
	b.at = now
}

// sweep forgets the sources whose buckets would be full again: they are
// as good as new.
func (l *replyLimiter) sweep(now time.Time) {
	for s, b := range l.sources {
		if b.tokens+l.limit.Rate*now.Sub(b.at).Seconds() >= float64(l.limit.Burst) {
			delete(l.sources, s)
		}
	}
}
