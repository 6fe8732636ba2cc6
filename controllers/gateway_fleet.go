package controllers

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/berthnet/berth/xds/gatewayapi"
	"github.com/berthnet/berth/xds/ir"
	"github.com/berthnet/berth/xds/provision"
)

// fieldOwner is the controller's server-side apply field manager.
const fieldOwner = client.FieldOwner("berth-controller")

// fleets returns the Envoy fleet of every node group: one per accepted
// Gateway, in its namespace and owned by it; one per Berth IngressClass,
// in the controller's namespace and owned by the class.
func (e *gatewayEngine) fleets(ctx context.Context, result *gatewayapi.Result) ([]provision.Fleet, error) {
	var out []provision.Fleet
	for _, g := range result.Gateways {
		if !g.Accepted || len(g.Ports) == 0 {
			continue
		}
		var gw gwv1.Gateway
		if err := e.client.Get(ctx, types.NamespacedName{Namespace: g.Namespace, Name: g.Name}, &gw); err != nil {
			if apierrors.IsNotFound(err) {
				continue
			}
			return nil, err
		}
		out = append(out, provision.Fleet{
			Group: g.Group, Namespace: g.Namespace, Name: provision.ObjectName("gw", g.Name),
			Owner: metav1.OwnerReference{APIVersion: gwv1.GroupVersion.String(), Kind: "Gateway", Name: gw.Name, UID: gw.UID, Controller: ptr.To(true)},
			Ports: g.Ports, LoadBalancerIPs: g.Addresses,
		})
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
			Owner: metav1.OwnerReference{APIVersion: "networking.k8s.io/v1", Kind: "IngressClass", Name: ic.Name, UID: ic.UID, Controller: ptr.To(true)},
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
	want := map[string]bool{}
	for _, f := range fleets {
		want[f.Namespace+"/"+f.Name] = true
		if err := e.applyFleet(ctx, f); err != nil {
			errs = append(errs, fmt.Errorf("fleet %s/%s of %s: %w", f.Namespace, f.Name, f.Group, err))
		}
	}
	errs = append(errs, e.removeStaleFleets(ctx, want))
	return errors.Join(errs...)
}

func (e *gatewayEngine) applyFleet(ctx context.Context, f provision.Fleet) error {
	boot, err := e.opts.Bootstrap(f.Group)
	if err != nil {
		return fmt.Errorf("bootstrap: %w", err)
	}
	sa, cm, dep, svc := provision.Objects(f, boot, e.opts.Envoy)
	var existing corev1.Secret
	key := types.NamespacedName{Namespace: f.Namespace, Name: provision.SecretName(f.Name)}
	if err := e.client.Get(ctx, key, &existing); err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	data, _, err := e.pki.clientSecretData(f.Group, existing.Data)
	if err != nil {
		return err
	}
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

// removeStaleFleets deletes provisioned objects whose fleet is no longer
// wanted (a Gateway moved to another class, an IngressClass changed
// controller). Deleted owners take theirs with them through garbage
// collection; this covers the owners that stay.
func (e *gatewayEngine) removeStaleFleets(ctx context.Context, want map[string]bool) error {
	sel := client.MatchingLabels{provision.LabelManagedBy: provision.ManagedBy, provision.LabelComponent: provision.Component}
	var deps appsv1.DeploymentList
	if err := e.client.List(ctx, &deps, sel); err != nil {
		return err
	}
	var errs []error
	for _, d := range deps.Items {
		if want[d.Namespace+"/"+d.Name] {
			continue
		}
		for _, o := range []client.Object{
			&appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: d.Namespace, Name: d.Name}},
			&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: d.Namespace, Name: d.Name}},
			&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: d.Namespace, Name: provision.ConfigMapName(d.Name)}},
			&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: d.Namespace, Name: provision.SecretName(d.Name)}},
			&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: d.Namespace, Name: d.Name}},
		} {
			if err := e.client.Delete(ctx, o); err != nil && !apierrors.IsNotFound(err) {
				errs = append(errs, err)
			}
			delete(e.applied, fmt.Sprintf("%T/%s/%s", o, o.GetNamespace(), o.GetName()))
		}
	}
	return errors.Join(errs...)
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
