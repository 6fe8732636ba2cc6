package watch

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func pending(t *Trigger) bool {
	select {
	case <-t.C():
		return true
	default:
		return false
	}
}

func TestTriggerDropsCoveredRequests(t *testing.T) {
	var tr Trigger
	// An update: the handler Fires for the old and the new object.
	tr.Fire()
	<-tr.C()
	tr.Fire()
	m := tr.Take()
	tr.Done(m)
	if pending(&tr) {
		t.Fatal("a Fire before Take asked for the work again")
	}

	tr.Fire()
	<-tr.C()
	m = tr.Take()
	tr.Fire() // during the work: not covered
	tr.Done(m)
	if !pending(&tr) {
		t.Fatal("a Fire after Take was dropped")
	}

}

// TestTriggerNeverLosesAFire: producers publish a version and Fire; the
// owner reads the version after Take. Whatever the interleaving, the owner
// ends up having read the last version.
func TestTriggerNeverLosesAFire(t *testing.T) {
	var (
		tr      Trigger
		version atomic.Int64
		seen    atomic.Int64
		wg      sync.WaitGroup
	)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			case <-tr.C():
				m := tr.Take()
				seen.Store(version.Load())
				tr.Done(m)
			}
		}
	}()
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 20000 {
				version.Add(1)
				tr.Fire()
			}
		}()
	}
	wg.Wait()
	want := version.Load()
	for deadline := time.Now().Add(10 * time.Second); seen.Load() != want; {
		if time.Now().After(deadline) {
			t.Fatalf("the owner read version %d, the last is %d: a Fire was lost", seen.Load(), want)
		}
		time.Sleep(time.Millisecond)
	}
	close(stop)
	<-done
}
