package l2announce

import (
	"fmt"
	"testing"
	"time"
)

// The limiter as a sequence on one clock: Burst at once per source, then
// Rate a second, capped at Burst; sources do not share an allowance.
func TestReplyLimiter(t *testing.T) {
	now := time.Date(2026, 12, 7, 20, 0, 0, 0, time.UTC)
	l := newReplyLimiter(ReplyLimit{Rate: 10, Burst: 3, Now: func() time.Time { return now }})
	take := func(what, src string, n int, want string) {
		t.Helper()
		got := ""
		for range n {
			if l.allow(src) {
				got += "y"
			} else {
				got += "n"
			}
		}
		if got != want {
			t.Errorf("%s: %s; want %s", what, got, want)
		}
	}
	take("a floods", "a", 5, "yyynn")
	take("b while a is over", "b", 1, "y")
	now = now.Add(100 * time.Millisecond)
	take("a 100 ms later (one earned)", "a", 2, "yn")
	now = now.Add(50 * time.Millisecond)
	take("a 50 ms later (half of one)", "a", 1, "n")
	now = now.Add(50 * time.Millisecond)
	take("a 50 ms more", "a", 1, "y")
	now = now.Add(time.Minute)
	take("a a minute later (no more than Burst)", "a", 4, "yyyn")
	// The clock steps back: nothing is earned, nothing breaks.
	now = now.Add(-time.Hour)
	take("a after the clock stepped back", "a", 1, "n")
	take("b after the clock stepped back", "b", 3, "yyn")

	off := newReplyLimiter(ReplyLimit{})
	for i := range 1000 {
		if !off.allow("a") {
			t.Fatalf("no limit: refused at %d", i)
		}
	}
}

// A flood from made-up sources cannot grow the limiter past maxSources:
// new sources then share one allowance, and the sources it knows keep
// theirs. Sources whose allowance is whole again are forgotten to make
// room.
func TestReplyLimiterManySources(t *testing.T) {
	now := time.Date(2026, 12, 7, 20, 0, 0, 0, time.UTC)
	l := newReplyLimiter(ReplyLimit{Rate: 1, Burst: 2, Now: func() time.Time { return now }})
	for i := range maxSources {
		if !l.allow(fmt.Sprint("s", i)) {
			t.Fatalf("source %d refused its first reply", i)
		}
	}
	got := ""
	for i := range 4 {
		if l.allow(fmt.Sprint("new", i)) {
			got += "y"
		} else {
			got += "n"
		}
	}
	if got != "yynn" {
		t.Errorf("new sources while full: %s; want yynn (one shared allowance of 2)", got)
	}
	if !l.allow("s7") || l.allow("s7") {
		t.Error("a known source lost its own allowance (want one more reply, then none)")
	}
	if len(l.sources) != maxSources {
		t.Errorf("%d sources kept; want %d", len(l.sources), maxSources)
	}
	// Two seconds on, every bucket is whole again: the next new source
	// makes room and gets its own allowance.
	now = now.Add(2 * time.Second)
	got = ""
	for range 3 {
		if l.allow("later") {
			got += "y"
		} else {
			got += "n"
		}
	}
	if got != "yyn" {
		t.Errorf("a new source after the sweep: %s; want yyn (its own allowance of 2)", got)
	}
	if len(l.sources) != 1 {
		t.Errorf("%d sources kept after the sweep; want 1", len(l.sources))
	}
}
