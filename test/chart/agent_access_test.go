package chart_test

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"strings"
	"testing"

	"github.com/go-logr/logr/testr"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/berthnet/berth/api/v1alpha1"
	"github.com/berthnet/berth/bgp"
	bgpkube "github.com/berthnet/berth/bgp/kube"
	"github.com/berthnet/berth/l2announce"
	l2kube "github.com/berthnet/berth/l2announce/kube"
)

// What an agent's credentials may do, with the chart's roles and admission
// policy in a real API server: read the Secrets the chart names and no
// other (not the xDS CA's key); write its layer-2 report on a Service and
// never the Service's addresses.
func TestAgentAccess(t *testing.T) {
	in := install(t, append(withObjects,
		"loadBalancer.bgpPeers[0].spec.passwordSecret.name=tor-md5", "loadBalancer.bgpPeers[0].spec.passwordSecret.key=password",
		"agent.extraSecretNames={outside-md5}")...)
	agent := in.as(t, "berth-agent")
	ctx := in.ctx

	t.Run("Secrets", func(t *testing.T) {
		for _, s := range []*corev1.Secret{
			{ObjectMeta: metav1.ObjectMeta{Name: "berth-xds-issuer"}, Type: "berth.dev/xds-ca"},
			{ObjectMeta: metav1.ObjectMeta{Name: "berth-xds-ca"}, Type: corev1.SecretTypeOpaque},
			{ObjectMeta: metav1.ObjectMeta{Name: "berth-l2-key"}},
			{ObjectMeta: metav1.ObjectMeta{Name: "tor-md5"}},
			{ObjectMeta: metav1.ObjectMeta{Name: "outside-md5"}},
			{ObjectMeta: metav1.ObjectMeta{Name: "fleet-xds"}, Type: corev1.SecretTypeOpaque},
		} {
			s.Namespace, s.Data = namespace, map[string][]byte{"key": []byte("secret of " + s.Name)}
			in.create(t, s)
		}
		in.create(t, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "agent-access-tenant"}})
		in.create(t, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "agent-access-tenant", Name: "tor-md5"}})
		for _, c := range []struct {
			ns, name string
			readable bool
		}{
			{namespace, "berth-l2-key", true},
			{namespace, "tor-md5", true},
			{namespace, "outside-md5", true},
			{namespace, "berth-xds-issuer", false},
			{namespace, "berth-xds-ca", false},
			{namespace, "fleet-xds", false},
			{"agent-access-tenant", "tor-md5", false},
		} {
			var s corev1.Secret
			err := agent.Get(ctx, client.ObjectKey{Namespace: c.ns, Name: c.name}, &s)
			switch {
			case c.readable && (err != nil || string(s.Data["key"]) != "secret of "+c.name):
				t.Errorf("the agent reading Secret %s/%s: %v, want it read", c.ns, c.name, err)
			case !c.readable && !apierrors.IsForbidden(err):
				t.Errorf("the agent reading Secret %s/%s: %v (data %q), want Forbidden", c.ns, c.name, err, s.Data)
			}
		}
		// Nor list or watch them: that would reach every one.
		if err := agent.List(ctx, &corev1.SecretList{}, client.InNamespace(namespace)); !apierrors.IsForbidden(err) {
			t.Errorf("the agent listing the Secrets of %s: %v, want Forbidden", namespace, err)
		}
		if w, err := agent.(client.WithWatch).Watch(ctx, &corev1.SecretList{}, client.InNamespace(namespace)); !apierrors.IsForbidden(err) {
			if w != nil {
				w.Stop()
			}
			t.Errorf("the agent watching the Secrets of %s: %v, want Forbidden", namespace, err)
		}
	})

	t.Run("Service status", func(t *testing.T) {
		policyReady(t, in)
		const ns = "agent-access-status"
		in.create(t, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})
		svc := &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web", Labels: map[string]string{"app": "web"}, Annotations: map[string]string{"team": "shop"}},
			Spec:       corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, Ports: []corev1.ServicePort{{Port: 80}}},
		}
		in.create(t, svc)
		svc.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "192.0.2.10"}}
		svc.Status.Conditions = []metav1.Condition{{Type: "example.com/Other", Status: metav1.ConditionTrue, Reason: "Set", LastTransitionTime: metav1.Now()}}
		if err := in.admin.Status().Update(ctx, svc); err != nil {
			t.Fatal(err)
		}
		key := client.ObjectKeyFromObject(svc)

		// The agent's own write, by the agent's own code, goes through.
		w := &l2kube.StatusWriter{Client: agent, Log: testr.New(t)}
		wctx, stop := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- w.Start(wctx) }()
		t.Cleanup(func() { stop(); <-done })
		w.Report(l2announce.Report{Addr: netip.MustParseAddr("192.0.2.10"), Services: []string{ns + "/web"}, State: l2announce.Announcing, Node: "node-a", Interfaces: []string{"eth0"}})
		eventually(t, "the agent's layer-2 report on the Service", func() error {
			var got corev1.Service
			if err := in.admin.Get(ctx, key, &got); err != nil {
				return err
			}
			recs, err := l2kube.Records(&got)
			if err != nil {
				return err
			}
			if recs[netip.MustParseAddr("192.0.2.10")].Node != "node-a" || meta.FindStatusCondition(got.Status.Conditions, l2kube.ConditionAnnounced) == nil {
				return fmt.Errorf("annotation %q, conditions %v", got.Annotations[l2kube.AnnotationState], got.Status.Conditions)
			}
			return nil
		})

		// Anything else it writes there is refused, each for its reason.
		for _, c := range []struct {
			what, patch, says string
		}{
			{"an address of its choosing", `{"status":{"loadBalancer":{"ingress":[{"ip":"203.0.113.66"}]}}}`, "status.loadBalancer"},
			{"one more address", `{"status":{"loadBalancer":{"ingress":[{"ip":"192.0.2.10"},{"ip":"203.0.113.66"}]}}}`, "status.loadBalancer"},
			{"no address", `{"status":{"loadBalancer":{"ingress":null}}}`, "status.loadBalancer"},
			{"another condition", `{"status":{"conditions":[{"type":"example.com/Other","status":"False","reason":"Cleared","message":"","lastTransitionTime":"2026-01-01T00:00:00Z"}]}}`, "condition"},
			{"another annotation", `{"metadata":{"annotations":{"team":"evil"}}}`, "annotation"},
			{"an annotation removed", `{"metadata":{"annotations":{"team":null}}}`, "annotation"},
			{"an annotation added", `{"metadata":{"annotations":{"service.beta.kubernetes.io/x":"y"}}}`, "annotation"},
			{"a label", `{"metadata":{"labels":{"app":"evil"}}}`, "labels"},
			{"a finalizer", `{"metadata":{"finalizers":["example.com/hold"]}}`, "finalizers"},
		} {
			err := agent.Status().Patch(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web"}},
				client.RawPatch(types.MergePatchType, []byte(c.patch)))
			if err == nil || !strings.Contains(err.Error(), "berth-agent may") || !strings.Contains(err.Error(), c.says) {
				t.Errorf("the agent writing %s: %v, want refused by the policy (%s)", c.what, err, c.says)
			}
		}
		var got corev1.Service
		if err := in.admin.Get(ctx, key, &got); err != nil {
			t.Fatal(err)
		}
		if len(got.Status.LoadBalancer.Ingress) != 1 || got.Status.LoadBalancer.Ingress[0].IP != "192.0.2.10" || got.Labels["app"] != "web" || got.Annotations["team"] != "shop" {
			t.Errorf("after the refused writes: ingress %v, labels %v, annotations %v", got.Status.LoadBalancer.Ingress, got.Labels, got.Annotations)
		}
		// The policy binds the agent alone: the controller assigns addresses.
		ctl := in.as(t, "berth-controller")
		if err := ctl.Status().Patch(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web"}},
			client.RawPatch(types.MergePatchType, []byte(`{"status":{"loadBalancer":{"ingress":[{"ip":"192.0.2.11"}]}}}`))); err != nil {
			t.Errorf("the controller writing an address: %v", err)
		}
	})
}

// Each agent writes its own node's entry of a BGPPeer's status (the node
// its token is bound to), with the agent's own status writer; another
// node's entry, the peer's conditions, or a write by credentials bound to
// no node are refused.
func TestAgentBGPPeerStatus(t *testing.T) {
	in := install(t, withObjects...)
	ctx := in.ctx
	in.create(t, &v1alpha1.BGPPeer{ObjectMeta: metav1.ObjectMeta{Name: "agent-status-tor"},
		Spec: v1alpha1.BGPPeerSpec{Address: "192.0.2.1", PeerASN: 64500, LocalASN: 64512}})
	write := func(asNode, entryNode string) {
		w := &bgpkube.StatusWriter{Node: entryNode, Client: in.asOnNode(t, "berth-agent", asNode), Log: testr.New(t)}
		w.Write(ctx, []bgp.PeerState{{Name: "agent-status-tor", State: "Established", Advertised: 2}}, nil)
	}
	nodes := func() map[string]string {
		var p v1alpha1.BGPPeer
		if err := in.admin.Get(ctx, client.ObjectKey{Name: "agent-status-tor"}, &p); err != nil {
			t.Fatal(err)
		}
		out := map[string]string{}
		for _, n := range p.Status.Nodes {
			out[n.Node] = string(n.State)
		}
		return out
	}
	eventually(t, "node-a's agent writing its own entry (once the policy is in force)", func() error {
		write("node-a", "node-a")
		if nodes()["node-a"] != "Established" {
			return fmt.Errorf("entries %v", nodes())
		}
		// In force: another node's entry is refused.
		err := in.asOnNode(t, "berth-agent", "node-b").Status().Patch(ctx, &v1alpha1.BGPPeer{ObjectMeta: metav1.ObjectMeta{Name: "agent-status-tor"}},
			client.RawPatch(types.MergePatchType, []byte(`{"status":{"nodes":[{"node":"node-a","state":"Idle"}]}}`)))
		if err == nil || !strings.Contains(err.Error(), "its own node's entry") {
			return fmt.Errorf("node-b writing node-a's entry: %v", err)
		}
		return nil
	})
	// node-b's agent posing as node-a: refused, node-a's entry stays.
	write("node-b", "node-a")
	write("node-b", "node-b")
	if got, want := nodes(), map[string]string{"node-a": "Established", "node-b": "Established"}; !maps.Equal(got, want) {
		t.Errorf("entries %v, want %v", got, want)
	}
	for _, c := range []struct {
		what, node, patch, says string
	}{
		{"another node's entry, directly", "node-b", `{"status":{"nodes":[{"node":"node-b","state":"Established"}]}}`, "its own node's entry"},
		{"the peer's conditions", "node-b", `{"status":{"conditions":[{"type":"Ready","status":"True","reason":"Fake","message":"","lastTransitionTime":"2026-01-01T00:00:00Z"}]}}`, "conditions"},
		{"its entry, from credentials of no node", "", `{"status":{"nodes":[]}}`, "name no node"},
	} {
		err := in.asOnNode(t, "berth-agent", c.node).Status().Patch(ctx, &v1alpha1.BGPPeer{ObjectMeta: metav1.ObjectMeta{Name: "agent-status-tor"}},
			client.RawPatch(types.MergePatchType, []byte(c.patch)))
		if err == nil || !strings.Contains(err.Error(), c.says) {
			t.Errorf("the agent writing %s: %v, want refused (%s)", c.what, err, c.says)
		}
	}
	if got, want := nodes(), map[string]string{"node-a": "Established", "node-b": "Established"}; !maps.Equal(got, want) {
		t.Errorf("after the refused writes: entries %v, want %v", got, want)
	}
}

// policyReady waits until the API server enforces the chart's policy on
// the agent (policies take effect a moment after they are created), and
// checks that its expressions type-checked.
func policyReady(t *testing.T, in *installed) {
	t.Helper()
	const ns = "agent-access-probe"
	in.create(t, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})
	in.create(t, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "probe"},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, Ports: []corev1.ServicePort{{Port: 80}}}})
	agent := in.as(t, "berth-agent")
	eventually(t, "the policy refusing a dry-run address write", func() error {
		err := agent.Status().Patch(in.ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "probe"}},
			client.RawPatch(types.MergePatchType, []byte(`{"status":{"loadBalancer":{"ingress":[{"ip":"203.0.113.1"}]}}}`)), client.DryRunAll)
		if err == nil {
			return fmt.Errorf("accepted")
		}
		if !strings.Contains(err.Error(), "berth-agent may not change") {
			return err
		}
		return nil
	})
	var p admissionregistrationv1.ValidatingAdmissionPolicy
	if err := in.admin.Get(in.ctx, client.ObjectKey{Name: "berth-agent-service-status"}, &p); err != nil {
		t.Fatal(err)
	}
	if tc := p.Status.TypeChecking; tc != nil && len(tc.ExpressionWarnings) > 0 {
		t.Errorf("the policy's expressions: %+v", tc.ExpressionWarnings)
	}
}
