package kube

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/berthnet/berth/proxy"
)

// recorder is a backend that keeps the last transaction.
type recorder struct{ last string }

func (r *recorder) Apply(_ context.Context, tx *proxy.Tx) error {
	r.last = tx.String()
	return nil
}

func (r *recorder) TableExists(context.Context) (bool, error) { return false, nil }

// The runner sends a delta for the Service a watch says changed, nothing
// when nothing changed, and the removal of a Service that is gone.
func TestRunnerFollowsChanges(t *testing.T) {
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web"},
		Spec: corev1.ServiceSpec{ClusterIP: "10.96.0.5", ClusterIPs: []string{"10.96.0.5"}, Ports: []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}}}}
	slice := &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web-1", Labels: map[string]string{discoveryv1.LabelServiceName: "web"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To(int32(8080)), Protocol: ptr.To(corev1.ProtocolTCP)}},
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{"10.244.1.5"}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}}}}
	c := fake.NewClientBuilder().WithScheme(scheme.Scheme).WithObjects(svc, slice).
		WithIndex(&discoveryv1.EndpointSlice{}, SliceIndex, func(o client.Object) []string {
			return []string{o.GetNamespace() + "/" + o.GetLabels()[discoveryv1.LabelServiceName]}
		}).Build()
	rec := &recorder{}
	r := NewRunner("node1", c, proxy.NewSyncer(rec, nil), nil, time.Hour, logr.Discard())
	ctx := context.Background()
	if err := r.sync(ctx); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(rec.last, ": 10.244.1.5 . 8080 }") {
		t.Fatalf("first sync lacks the endpoint:\n%s", rec.last)
	}
	slice.Endpoints = append(slice.Endpoints, discoveryv1.Endpoint{Addresses: []string{"10.244.2.6"}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}})
	if err := c.Update(ctx, slice); err != nil {
		t.Fatal(err)
	}
	// The watch says which Service changed: a delta for it alone.
	r.ServiceChanged("shop", "web")
	rec.last = ""
	if err := r.sync(ctx); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(rec.last, ": 10.244.2.6 . 8080 }") || strings.Contains(rec.last, "add table") {
		t.Fatalf("after a slice changed: want an incremental transaction with the new endpoint:\n%s", rec.last)
	}
	rec.last = ""
	if err := r.sync(ctx); err != nil {
		t.Fatal(err)
	}
	if rec.last != "" {
		t.Fatalf("nothing changed, yet the runner sent:\n%s", rec.last)
	}
	if err := c.Delete(ctx, svc); err != nil {
		t.Fatal(err)
	}
	r.ServiceChanged("shop", "web")
	if err := r.sync(ctx); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(rec.last, "delete chain") || len(r.cache) != 0 {
		t.Fatalf("after the Service went: cache %d, transaction:\n%s", len(r.cache), rec.last)
	}
}
