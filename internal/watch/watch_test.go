package watch

import (
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
)

func TestSpecChanged(t *testing.T) {
	base := func() *gwv1.HTTPRoute {
		return &gwv1.HTTPRoute{ObjectMeta: metav1.ObjectMeta{
			Name: "r", Generation: 3, ResourceVersion: "10",
			Labels: map[string]string{"a": "1"}, Annotations: map[string]string{"b": "2"},
		}}
	}
	now := metav1.Now()
	for _, tc := range []struct {
		name   string
		change func(*gwv1.HTTPRoute)
		want   bool
	}{
		{"status only", func(r *gwv1.HTTPRoute) {
			r.ResourceVersion = "11"
			r.Status.Parents = []gwv1.RouteParentStatus{{ControllerName: "x"}}
		}, false},
		{"generation", func(r *gwv1.HTTPRoute) { r.Generation++ }, true},
		{"label", func(r *gwv1.HTTPRoute) { r.Labels["a"] = "2" }, true},
		{"annotation added", func(r *gwv1.HTTPRoute) { r.Annotations["c"] = "" }, true},
		{"deleting", func(r *gwv1.HTTPRoute) { r.DeletionTimestamp = &now }, true},
		{"no generation", func(r *gwv1.HTTPRoute) { r.Generation = 0 }, true},
	} {
		old, obj := base(), base()
		if tc.name == "no generation" {
			old.Generation = 0
		}
		tc.change(obj)
		if got := SpecChanged(old, obj); got != tc.want {
			t.Errorf("%s: SpecChanged = %v, want %v", tc.name, got, tc.want)
		}
	}
}
