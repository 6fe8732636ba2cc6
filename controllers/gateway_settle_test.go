package controllers

import (
	"testing"
	"time"
)

func TestSettleTimerDelay(t *testing.T) {
	var s settleTimer
	t0 := time.Unix(1000, 0)
	for _, step := range []struct {
		at   time.Duration // since t0
		want time.Duration
	}{
		{0, statusSettle},
		{30 * time.Millisecond, statusSettle},                         // a burst: wait for the pause
		{statusMaxDelay - 20*time.Millisecond, 20 * time.Millisecond}, // but not past the cap
		{statusMaxDelay + time.Second, 0},                             // overdue: now
	} {
		if got := s.delay(t0.Add(step.at)); got != step.want {
			t.Errorf("sync at +%v: status due in %v, want %v", step.at, got, step.want)
		}
	}
	s.fired()
	if got := s.delay(t0.Add(5 * time.Second)); got != statusSettle {
		t.Errorf("after the pass, the next sync waits %v, want %v", got, statusSettle)
	}
}
