package controllers

import "time"

// How the route status pass follows syncs. Writing the status of
// thousands of routes right after a push competes for the CPU with
// sending that push (at 5,000 routes, a RouteConfiguration of megabytes),
// and during a burst of changes each sync's pass would be stale at once:
// the pass runs once syncs pause for statusSettle, and at most
// statusMaxDelay after the first sync it has not covered.
const (
	statusSettle   = 50 * time.Millisecond
	statusMaxDelay = time.Second
)

// settleTimer fires once syncs pause (see statusSettle). Its zero value is
// disarmed.
type settleTimer struct {
	timer *time.Timer
	due   time.Time // the first sync not yet covered; zero when none
}

// C fires when the work is due; nil (never) while disarmed.
func (s *settleTimer) C() <-chan time.Time {
	if s.timer == nil {
		return nil
	}
	return s.timer.C
}

// arm notes a sync at now.
func (s *settleTimer) arm(now time.Time) {
	d := s.delay(now)
	if s.timer == nil {
		s.timer = time.NewTimer(d)
		return
	}
	s.timer.Reset(d)
}

// delay notes a sync at now and says when the work is due from then.
func (s *settleTimer) delay(now time.Time) time.Duration {
	if s.due.IsZero() {
		s.due = now
	}
	return min(statusSettle, max(statusMaxDelay-now.Sub(s.due), 0))
}

// fired is called when C fired and the work starts.
func (s *settleTimer) fired() { s.due = time.Time{} }

// stop releases the timer.
func (s *settleTimer) stop() {
	if s.timer != nil {
		s.timer.Stop()
	}
}
