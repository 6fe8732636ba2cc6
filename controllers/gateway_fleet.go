package controllers

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/berthnet/berth/ipam"
	"github.com/berthnet/berth/ipam/kube"
	"github.com/berthnet/berth/xds/gatewayapi"
	"github.com/berthnet/berth/xds/ir"
	"github.com/berthnet/berth/xds/pki"
	"github.com/berthnet/berth/xds/provision"
)

// fieldOwner is the controller's server-side apply field manager.
const fieldOwner = client.FieldOwner("berth-controller")

// fleets returns the Envoy fleet of every node group, all in the
// controller's namespace: one per accepted Gateway, labelled with it (an
// owner reference cannot cross namespaces); one per Berth IngressClass,
// owned by the class.
func (e *gatewayEngine) fleets(ctx context.Context, result *gatewayapi.Result) ([]provision.Fleet, error) {
	var out []provision.Fleet
	for _, g := range result.Gateways {
		if !g.Accepted || len(g.Ports) == 0 {
			continue
		}
		f := provision.Fleet{
			Group: g.Group, Namespace: e.opts.Namespace, Name: provision.GatewayFleetName(g.Namespace, g.Name),
			Gateway: types.NamespacedName{Namespace: g.Namespace, Name: g.Name},
			Ports:   g.Ports, LoadBalancerIPs: g.Addresses,
		}
		if len(f.LoadBalancerIPs) == 0 {
			f.LoadBalancerIPs = e.carriedAddresses(ctx, f)
		}
		out = append(out, f)
	}
	classes := map[string]bool{}
	for _, in := range result.Ingresses {
		classes[in.Group] = true
	}
	for _, grp := range result.Groups {
		class, ok := strings.CutPrefix(grp.Name, "ingress/")
		if !ok {
			continue
		}
		var ic networkingv1.IngressClass
		if err := e.client.Get(ctx, types.NamespacedName{Name: class}, &ic); err != nil {
			if apierrors.IsNotFound(err) {
				continue
			}
			return nil, err
		}
		ports := listenerPorts(grp)
		if len(ports) == 0 {
			continue // no Ingress of the class yet: no Envoys
		}
		out = append(out, provision.Fleet{
			Group: grp.Name, Namespace: e.opts.Namespace, Name: provision.ObjectName("ingress", class),
			Owner: &metav1.OwnerReference{APIVersion: "networking.k8s.io/v1", Kind: "IngressClass", Name: ic.Name, UID: ic.UID, Controller: ptr.To(true)},
			Ports: ports,
		})
	}
	return out, nil
}

func listenerPorts(g *ir.Group) []int32 {
	var ps []int32
	for _, l := range g.HTTP {
		ps = append(ps, int32(l.Port))
	}
	return ps
}

// provision applies every fleet's objects (only those that changed since
// last applied) and removes the fleets of groups that are gone.
func (e *gatewayEngine) provision(ctx context.Context, result *gatewayapi.Result) error {
	fleets, err := e.fleets(ctx, result)
	if err != nil {
		return err
	}
	if _, _, err := e.pki.ensureCA(ctx); err != nil {
		return err
	}
	var errs []error
	for _, f := range fleets {
		if err := e.applyFleet(ctx, f); err != nil {
			errs = append(errs, fmt.Errorf("fleet %s/%s of %s: %w", f.Namespace, f.Name, f.Group, err))
		}
	}
	errs = append(errs, e.removeStaleFleets(ctx, fleets))
	return errors.Join(errs...)
}

func (e *gatewayEngine) applyFleet(ctx context.Context, f provision.Fleet) error {
	boot, err := e.opts.Bootstrap(f.Group)
	if err != nil {
		return fmt.Errorf("bootstrap: %w", err)
	}
	var existing corev1.Secret
	key := types.NamespacedName{Namespace: f.Namespace, Name: provision.SecretName(f.Name)}
	if err := e.client.Get(ctx, key, &existing); err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	data, _, err := e.pki.clientSecretData(f.Group, existing.Data)
	if err != nil {
		return err
	}
	// Envoy reads its client certificate once, at start: a reissued one
	// (renewal, or a new CA) changes the pod template, which rolls the
	// pods, one at a time, well before the old one expires.
	cert, err := pki.DecodeCertPEM(data[corev1.TLSCertKey])
	if err != nil {
		return fmt.Errorf("client certificate: %w", err)
	}
	f.CertSerial = cert.SerialNumber.Text(16)
	sa, cm, dep, svc := provision.Objects(f, boot, e.opts.Envoy)
	sec := &corev1.Secret{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
		ObjectMeta: *sa.ObjectMeta.DeepCopy(),
		Type:       corev1.SecretTypeTLS,
		Data:       data,
	}
	sec.Name = key.Name
	for _, o := range []client.Object{sa, cm, sec, dep, svc} {
		if err := e.apply(ctx, o); err != nil {
			return err
		}
	}
	return nil
}

// apply server-side applies o unless the same content was applied last.
func (e *gatewayEngine) apply(ctx context.Context, o client.Object) error {
	raw, err := json.Marshal(o)
	if err != nil {
		return err
	}
	sum := sha256.Sum256(raw)
	k := fmt.Sprintf("%T/%s/%s", o, o.GetNamespace(), o.GetName())
	h := hex.EncodeToString(sum[:])
	if e.applied[k] == h {
		return nil
	}
	u, err := runtime.DefaultUnstructuredConverter.ToUnstructured(o)
	if err != nil {
		return err
	}
	delete(u, "status")
	unstructured.RemoveNestedField(u, "metadata", "creationTimestamp")
	unstructured.RemoveNestedField(u, "spec", "template", "metadata", "creationTimestamp")
	if err := e.client.Apply(ctx, client.ApplyConfigurationFromUnstructured(&unstructured.Unstructured{Object: u}), fieldOwner, client.ForceOwnership); err != nil {
		return fmt.Errorf("apply %s %s/%s: %w", o.GetObjectKind().GroupVersionKind().Kind, o.GetNamespace(), o.GetName(), err)
	}
	e.applied[k] = h
	return nil
}

// removeStaleFleets deletes the provisioned objects of fleets no longer
// wanted (a Gateway deleted or moved to another class, an IngressClass
// changed controller): by their labels, as a Gateway's fleet has no owner
// reference to take it away. Fleets of the old model, in a Gateway's own
// namespace, go once the fleet of their group in the controller's
// namespace has a ready Envoy, or once their group is not wanted at all.
func (e *gatewayEngine) removeStaleFleets(ctx context.Context, fleets []provision.Fleet) error {
	want := map[string]bool{}
	for _, f := range fleets {
		want[f.Name] = true
	}
	sel := client.MatchingLabels{provision.LabelManagedBy: provision.ManagedBy, provision.LabelComponent: provision.Component}
	var deps appsv1.DeploymentList
	if err := e.client.List(ctx, &deps, sel); err != nil {
		return err
	}
	ready := map[string]bool{} // groups with a ready Envoy in our namespace
	for _, d := range deps.Items {
		if d.Namespace == e.opts.Namespace && want[d.Name] && d.Status.ReadyReplicas > 0 {
			ready[d.Annotations[provision.AnnotationGroup]] = true
		}
	}
	wantGroup := map[string]bool{}
	for _, f := range fleets {
		wantGroup[f.Group] = true
	}
	var errs []error
	for _, d := range deps.Items {
		if d.Namespace == e.opts.Namespace && want[d.Name] {
			continue
		}
		if g := d.Annotations[provision.AnnotationGroup]; wantGroup[g] && !ready[g] {
			continue // the old model's fleet serves until the new one does
		}
		errs = append(errs, e.deleteFleet(ctx, d.Namespace, d.Name))
	}
	return errors.Join(errs...)
}

func (e *gatewayEngine) deleteFleet(ctx context.Context, namespace, name string) error {
	var errs []error
	for _, o := range []client.Object{
		&appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name}},
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name}},
		&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: provision.ConfigMapName(name)}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: provision.SecretName(name)}},
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name}},
	} {
		if err := e.client.Delete(ctx, o); err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("delete %T %s/%s: %w", o, namespace, o.GetName(), err))
		}
		delete(e.applied, fmt.Sprintf("%T/%s/%s", o, o.GetNamespace(), o.GetName()))
	}
	return errors.Join(errs...)
}

// oldFleetService returns the Service of a Gateway's fleet as the old
// model placed it (in the Gateway's namespace), if it is still there.
func (e *gatewayEngine) oldFleetService(ctx context.Context, gw types.NamespacedName) *corev1.Service {
	var svc corev1.Service
	if err := e.client.Get(ctx, types.NamespacedName{Namespace: gw.Namespace, Name: provision.ObjectName("gw", gw.Name)}, &svc); err != nil {
		return nil
	}
	l := svc.Labels
	if l[provision.LabelManagedBy] != provision.ManagedBy || l[provision.LabelComponent] != provision.Component ||
		svc.Annotations[provision.AnnotationGroup] != pki.GatewayGroup(gw.Namespace, gw.Name) {
		return nil // a tenant's own Service of that name
	}
	return &svc
}

// carriedAddresses are the addresses a Gateway with no spec.addresses asks
// for on its fleet's Service while the fleet moves from the old model:
// those of the old Service, so the Gateway keeps its address (the request
// is met once the old fleet is removed), and they stay asked for until
// the new Service holds them, or IPAM refuses them for another reason than
// their being in use. Afterwards the Service asks for none and keeps what
// it holds.
func (e *gatewayEngine) carriedAddresses(ctx context.Context, f provision.Fleet) []string {
	if old := e.oldFleetService(ctx, f.Gateway); old != nil {
		if ips := lbIPs(old); len(ips) > 0 {
			return ips
		}
	}
	var cur corev1.Service
	if err := e.client.Get(ctx, types.NamespacedName{Namespace: f.Namespace, Name: f.Name}, &cur); err != nil {
		return nil
	}
	asked := cur.Annotations[kube.AnnotationIPs]
	if asked == "" {
		return nil
	}
	if c := meta.FindStatusCondition(cur.Status.Conditions, ConditionAddressAllocated); c != nil &&
		c.Status == metav1.ConditionFalse && c.Reason != ipam.ReasonIPInUse {
		// The old address cannot be had here (the pool no longer holds
		// it, or not for this namespace): any address rather than none.
		return nil
	}
	held := lbIPs(&cur)
	for _, a := range strings.Split(asked, ",") {
		if !slices.Contains(held, strings.TrimSpace(a)) {
			return strings.Split(asked, ",")
		}
	}
	return nil
}

func lbIPs(svc *corev1.Service) []string {
	var out []string
	for _, in := range svc.Status.LoadBalancer.Ingress {
		if in.IP != "" {
			out = append(out, in.IP)
		}
	}
	return out
}

// gatewayAddresses returns the load-balancer addresses of a Gateway's
// fleet Service, or while it has none those of its fleet of the old model.
func (e *gatewayEngine) gatewayAddresses(ctx context.Context, namespace, name string) []string {
	if a := e.fleetAddresses(ctx, e.opts.Namespace, provision.GatewayFleetName(namespace, name)); len(a) > 0 {
		return a
	}
	if old := e.oldFleetService(ctx, types.NamespacedName{Namespace: namespace, Name: name}); old != nil {
		return e.fleetAddresses(ctx, old.Namespace, old.Name)
	}
	return nil
}

// fleetAddresses returns the load-balancer addresses of a fleet's Service.
func (e *gatewayEngine) fleetAddresses(ctx context.Context, namespace, name string) []string {
	var svc corev1.Service
	if err := e.client.Get(ctx, types.NamespacedName{Namespace: namespace, Name: name}, &svc); err != nil {
		return nil
	}
	var out []string
	for _, in := range svc.Status.LoadBalancer.Ingress {
		if in.IP != "" {
			out = append(out, in.IP)
		} else if in.Hostname != "" {
			out = append(out, in.Hostname)
		}
	}
	return out
}

// reportAddressProblem tells a Gateway's owners, in a Warning event on the
// Gateway, why its fleet's Service has no address: IPAM's events are on
// that Service, in the controller's namespace, which they may not read.
// Once per distinct problem; the reason is IPAM's (RequestedIPNotInPool,
// PoolExhausted, ...).
func (e *gatewayEngine) reportAddressProblem(ctx context.Context, gw *gwv1.Gateway, addressed bool) {
	key := gw.Namespace + "/" + gw.Name
	var svc corev1.Service
	name := provision.GatewayFleetName(gw.Namespace, gw.Name)
	if addressed || e.client.Get(ctx, types.NamespacedName{Namespace: e.opts.Namespace, Name: name}, &svc) != nil {
		delete(e.addressProblems, key)
		return
	}
	c := meta.FindStatusCondition(svc.Status.Conditions, ConditionAddressAllocated)
	if c == nil || c.Status != metav1.ConditionFalse {
		delete(e.addressProblems, key)
		return
	}
	if problem := c.Reason + ": " + c.Message; e.addressProblems[key] != problem {
		e.addressProblems[key] = problem
		e.recorder.Eventf(gw, nil, corev1.EventTypeWarning, c.Reason, "Allocate", "the Gateway's Service %s/%s has no address: %s", svc.Namespace, svc.Name, c.Message)
	}
}
