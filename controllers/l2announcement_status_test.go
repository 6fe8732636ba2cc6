package controllers_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
	"sigs.k8s.io/controller-runtime/pkg/config"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/berthnet/berth/api/v1alpha1"
	"github.com/berthnet/berth/controllers"
)

// l2Env is a real API server with a controller running only the
// L2Announcement status reconciler, whose client logs, per announcement,
// each read (with the "poke" label it saw) and each status write.
type l2Env struct {
	*lbEnv
	mu    sync.Mutex
	calls map[string][]string
}

func newL2Env(t *testing.T) *l2Env {
	t.Helper()
	e := &l2Env{lbEnv: newLBEnv(t, nil), calls: map[string][]string{}}
	record := func(obj client.Object, call string) {
		if _, ok := obj.(*v1alpha1.L2Announcement); !ok {
			return
		}
		e.mu.Lock()
		defer e.mu.Unlock()
		e.calls[obj.GetName()] = append(e.calls[obj.GetName()], call)
	}
	funcs := interceptor.Funcs{
		Get: func(ctx context.Context, c client.WithWatch, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
			err := c.Get(ctx, key, obj, opts...)
			if err == nil {
				record(obj, "get poke="+obj.GetLabels()["poke"])
			}
			return err
		},
		SubResourcePatch: func(ctx context.Context, c client.Client, sub string, obj client.Object, patch client.Patch, opts ...client.SubResourcePatchOption) error {
			record(obj, "write "+sub)
			return c.SubResource(sub).Patch(ctx, obj, patch, opts...)
		},
		SubResourceUpdate: func(ctx context.Context, c client.Client, sub string, obj client.Object, opts ...client.SubResourceUpdateOption) error {
			record(obj, "write "+sub)
			return c.SubResource(sub).Update(ctx, obj, opts...)
		},
	}
	mgr, err := ctrl.NewManager(e.env.Config, ctrl.Options{
		Scheme:                 e.scheme,
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Controller:             config.Controller{SkipNameValidation: ptr.To(true)},
		NewClient: func(cfg *rest.Config, o client.Options) (client.Client, error) {
			c, err := client.NewWithWatch(cfg, o)
			if err != nil {
				return nil, err
			}
			return interceptor.NewClient(c, funcs), nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := controllers.SetupL2AnnouncementStatus(mgr); err != nil {
		t.Fatal(err)
	}
	runManager(t, context.Background(), mgr)
	return e
}

// callsOf returns a copy of the calls the reconciler made for the announcement.
func (e *l2Env) callsOf(name string) []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.calls[name])
}

// waitCall polls until the reconciler made the call for the announcement
// and returns the calls up to and including the first such one.
func (e *l2Env) waitCall(name, call string) []string {
	e.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		calls := e.callsOf(name)
		if i := slices.Index(calls, call); i >= 0 {
			return calls[:i+1]
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("L2Announcement %s: no %q in %v", name, call, calls)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func l2a(name string, spec v1alpha1.L2AnnouncementSpec) *v1alpha1.L2Announcement {
	return &v1alpha1.L2Announcement{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: spec}
}

func labelledPool(name string, lbls map[string]string, addr v1alpha1.Address) *v1alpha1.IPPool {
	p := ippool(name, addr)
	p.Labels = lbls
	return p
}

// ready polls until the announcement's status describes its current
// generation with a Ready condition of this status and reason whose message
// contains msg.
func (e *l2Env) ready(name string, status metav1.ConditionStatus, reason, msg string) *v1alpha1.L2Announcement {
	e.t.Helper()
	var a v1alpha1.L2Announcement
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := e.c.Get(context.Background(), client.ObjectKey{Name: name}, &a)
		if err == nil {
			err = readyIs(&a, status, reason, msg)
		}
		if err == nil {
			return &a
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("L2Announcement %s: want Ready %s %s %q: %v", name, status, reason, msg, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func readyIs(a *v1alpha1.L2Announcement, status metav1.ConditionStatus, reason, msg string) error {
	if a.Status.ObservedGeneration != a.Generation {
		return fmt.Errorf("status.observedGeneration %d, generation %d", a.Status.ObservedGeneration, a.Generation)
	}
	c := meta.FindStatusCondition(a.Status.Conditions, v1alpha1.ConditionReady)
	switch {
	case c == nil:
		return fmt.Errorf("no Ready condition")
	case c.ObservedGeneration != a.Generation:
		return fmt.Errorf("Ready describes generation %d, generation %d", c.ObservedGeneration, a.Generation)
	case c.Status != status || c.Reason != reason || !strings.Contains(c.Message, msg):
		return fmt.Errorf("Ready %s %s %q", c.Status, c.Reason, c.Message)
	}
	return nil
}

// Ready lists the pools an announcement covers: named ones, ones its
// selectors match, every pool when it names and selects none; and follows
// pools being created, relabelled and deleted.
func TestL2AnnouncementReady(t *testing.T) {
	e := newL2Env(t)
	edge := map[string]string{"tier": "edge"}
	e.create(labelledPool("a", edge, "192.0.2.0/28"))
	e.create(labelledPool("b", edge, "192.0.2.16/28"))
	e.create(labelledPool("c", nil, "192.0.2.32/28"))
	selectEdge := []metav1.LabelSelector{{MatchLabels: edge}}
	e.create(l2a("named", v1alpha1.L2AnnouncementSpec{IPPools: []string{"c", "a"}}))
	e.create(l2a("selected", v1alpha1.L2AnnouncementSpec{IPPoolSelectors: selectEdge}))
	e.create(l2a("every", v1alpha1.L2AnnouncementSpec{}))
	e.create(l2a("either", v1alpha1.L2AnnouncementSpec{IPPools: []string{"c"}, IPPoolSelectors: []metav1.LabelSelector{{
		MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "tier", Operator: metav1.LabelSelectorOpIn, Values: []string{"edge"}}},
	}}}))

	accepted := func(name, pools string) {
		t.Helper()
		a := e.ready(name, metav1.ConditionTrue, controllers.ReasonL2Accepted, "announces "+pools)
		if got := meta.FindStatusCondition(a.Status.Conditions, v1alpha1.ConditionReady).Message; got != "announces "+pools {
			t.Fatalf("%s: message %q, want %q", name, got, "announces "+pools)
		}
	}
	accepted("named", "pools a, c")
	accepted("selected", "pools a, b")
	accepted("every", "pools a, b, c")
	accepted("either", "pools a, b, c")

	var c v1alpha1.IPPool
	c.Name = "c"
	e.update(&c, func() { c.Labels = edge })
	accepted("selected", "pools a, b, c")

	if err := e.c.Delete(context.Background(), &v1alpha1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: "b"}}); err != nil {
		t.Fatal(err)
	}
	accepted("selected", "pools a, c")
	accepted("every", "pools a, c")
	accepted("named", "pools a, c")

	e.create(labelledPool("d", edge, "192.0.2.48/28"))
	accepted("every", "pools a, c, d")
	accepted("selected", "pools a, c, d")
	accepted("named", "pools a, c")
}

// An announcement that matches no existing pool is not Ready and says which
// named pools are missing, with a Warning event; it becomes Ready once a
// pool appears or is labelled to match.
func TestL2AnnouncementNoPools(t *testing.T) {
	e := newL2Env(t)
	e.create(l2a("named", v1alpha1.L2AnnouncementSpec{IPPools: []string{"missing", "a"}}))
	e.ready("named", metav1.ConditionFalse, controllers.ReasonL2NoPools, "pools a, missing do not exist")
	ev := e.event(metav1.NamespaceDefault, "named", controllers.ReasonL2NoPools)
	if ev.Type != "Warning" || !strings.Contains(ev.Note, "pools a, missing do not exist") {
		t.Fatalf("event %s %q", ev.Type, ev.Note)
	}
	e.create(l2a("every", v1alpha1.L2AnnouncementSpec{}))
	e.ready("every", metav1.ConditionFalse, controllers.ReasonL2NoPools, "no IPPool exists")

	e.create(ippool("a", "192.0.2.0/28"))
	e.ready("named", metav1.ConditionTrue, controllers.ReasonL2Accepted, "announces pool a; pool missing does not exist")
	e.ready("every", metav1.ConditionTrue, controllers.ReasonL2Accepted, "announces pool a")

	e.create(l2a("selected", v1alpha1.L2AnnouncementSpec{IPPoolSelectors: []metav1.LabelSelector{{MatchLabels: map[string]string{"tier": "edge"}}}}))
	e.ready("selected", metav1.ConditionFalse, controllers.ReasonL2NoPools, "no IPPool matches ipPoolSelectors")
	var a v1alpha1.IPPool
	a.Name = "a"
	e.update(&a, func() { a.Labels = map[string]string{"tier": "edge"} })
	e.ready("selected", metav1.ConditionTrue, controllers.ReasonL2Accepted, "announces pool a")
}

// Selectors the API server admits but that do not parse (an unknown
// operator, In with no values, a malformed key) make the announcement
// InvalidSelector, naming the selector, with a Warning event; fixing the
// selector makes it Ready for the new generation.
func TestL2AnnouncementInvalidSelector(t *testing.T) {
	e := newL2Env(t)
	e.create(labelledPool("a", map[string]string{"tier": "edge"}, "192.0.2.0/28"))
	badOp := l2a("bad-op", v1alpha1.L2AnnouncementSpec{IPPoolSelectors: []metav1.LabelSelector{
		{MatchLabels: map[string]string{"tier": "edge"}},
		{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "tier", Operator: "Within", Values: []string{"edge"}}}},
	}})
	e.create(badOp)
	e.ready("bad-op", metav1.ConditionFalse, v1alpha1.ReasonInvalidSelector, `ipPoolSelectors[1]: "Within" is not a valid`)
	ev := e.event(metav1.NamespaceDefault, "bad-op", v1alpha1.ReasonInvalidSelector)
	if ev.Type != "Warning" || !strings.Contains(ev.Note, "ipPoolSelectors[1]") {
		t.Fatalf("event %s %q", ev.Type, ev.Note)
	}

	e.create(l2a("bad-nodes", v1alpha1.L2AnnouncementSpec{NodeSelectors: []metav1.LabelSelector{
		{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "edge", Operator: metav1.LabelSelectorOpIn}}},
		{MatchLabels: map[string]string{"bad key!": "x"}},
	}}))
	a := e.ready("bad-nodes", metav1.ConditionFalse, v1alpha1.ReasonInvalidSelector, "nodeSelectors[0]: ")
	if msg := meta.FindStatusCondition(a.Status.Conditions, v1alpha1.ConditionReady).Message; !strings.Contains(msg, "nodeSelectors[1]: ") {
		t.Fatalf("message %q does not name nodeSelectors[1]", msg)
	}

	e.update(badOp, func() { badOp.Spec.IPPoolSelectors[1].MatchExpressions[0].Operator = metav1.LabelSelectorOpNotIn })
	if badOp.Generation < 2 {
		t.Fatalf("generation %d after a spec change", badOp.Generation)
	}
	e.ready("bad-op", metav1.ConditionTrue, controllers.ReasonL2Accepted, "announces pool a")
}

// An interface pattern the API server admits but that does not parse
// ("eth[a-]": it would match no interface) makes the announcement
// InvalidInterface, naming the pattern, with a Warning event, instead of
// Ready; fixing it makes it Ready.
func TestL2AnnouncementInvalidInterface(t *testing.T) {
	e := newL2Env(t)
	e.create(ippool("a", "192.0.2.0/28"))
	bad := l2a("bad-glob", v1alpha1.L2AnnouncementSpec{IPPools: []string{"a"}, Interfaces: []string{"eth0", "eth[a-]"}})
	e.create(bad)
	e.ready("bad-glob", metav1.ConditionFalse, v1alpha1.ReasonInvalidInterface, `interfaces[1] "eth[a-]" is not a valid pattern`)
	ev := e.event(metav1.NamespaceDefault, "bad-glob", v1alpha1.ReasonInvalidInterface)
	if ev.Type != "Warning" || !strings.Contains(ev.Note, `"eth[a-]"`) {
		t.Fatalf("event %s %q; want a Warning naming the pattern", ev.Type, ev.Note)
	}
	e.update(bad, func() { bad.Spec.Interfaces[1] = "eth[a-c]" })
	e.ready("bad-glob", metav1.ConditionTrue, controllers.ReasonL2Accepted, "announces pool a")
}

// status.observedGeneration and the condition's follow spec changes, and
// a reconcile that changes nothing writes nothing: neither a metadata-only
// change of the announcement nor a pool it does not cover.
func TestL2AnnouncementObservedGeneration(t *testing.T) {
	e := newL2Env(t)
	e.create(ippool("a", "192.0.2.0/28"))
	gen := l2a("gen", v1alpha1.L2AnnouncementSpec{IPPools: []string{"a"}})
	e.create(gen)
	first := e.ready("gen", metav1.ConditionTrue, controllers.ReasonL2Accepted, "announces pool a")
	if first.Status.ObservedGeneration != 1 {
		t.Fatalf("observedGeneration %d, want 1", first.Status.ObservedGeneration)
	}

	// Reconciles of one announcement are serial, so once a read sees
	// poke=2 the reconcile that saw poke=1 (and any the new pool caused in
	// between) has finished. The cache that showed poke=1 had already seen
	// the status written before it, so nothing there had cause to write.
	e.update(gen, func() { gen.Labels = map[string]string{"poke": "1"} })
	before := len(e.waitCall("gen", "get poke=1"))
	e.create(ippool("other", "192.0.2.16/28"))
	e.update(gen, func() { gen.Labels = map[string]string{"poke": "2"} })
	calls := e.waitCall("gen", "get poke=2")
	if i := slices.Index(calls[before:], "write status"); i >= 0 {
		t.Fatalf("a reconcile that changed nothing wrote status: %v", calls)
	}
	if g := e.ready("gen", metav1.ConditionTrue, controllers.ReasonL2Accepted, "announces pool a").Generation; g != 1 {
		t.Fatalf("generation %d after metadata changes, want 1", g)
	}

	e.update(gen, func() { gen.Spec.Interfaces = []string{"eth0"} })
	e.ready("gen", metav1.ConditionTrue, controllers.ReasonL2Accepted, "announces pool a")
	e.update(gen, func() { gen.Spec.IPPools = []string{"a", "other"} })
	got := e.ready("gen", metav1.ConditionTrue, controllers.ReasonL2Accepted, "announces pools a, other")
	if got.Generation != 3 {
		t.Fatalf("generation %d after two spec changes, want 3", got.Generation)
	}
	e.update(gen, func() { gen.Spec.IPPools = []string{"gone"} })
	e.ready("gen", metav1.ConditionFalse, controllers.ReasonL2NoPools, "pool gone does not exist")
}
