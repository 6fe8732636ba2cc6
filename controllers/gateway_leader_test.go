package controllers_test

import (
	"fmt"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/berthnet/berth/controllers"
)

func controllerPod(name string, leader bool) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "berth-system", Name: name, Labels: map[string]string{"app": "berth-controller"}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "controller", Image: "berth-controller"}}},
	}
	if leader {
		p.Labels[controllers.LabelXDSLeader] = "true"
	}
	return p
}

// The replica serving xDS labels its pod for the xDS Service and takes the
// label off a former leader that died with it.
func TestXDSLeaderLabelsItsPod(t *testing.T) {
	e := newGWEnvWith(t, func(o *controllers.GatewayOptions) { o.PodName = "berth-controller-new" },
		controllerPod("berth-controller-new", false), controllerPod("berth-controller-old", true))
	e.eventually("only the serving replica labelled", func() error {
		for name, want := range map[string]string{"berth-controller-new": "true", "berth-controller-old": ""} {
			var p corev1.Pod
			if err := e.c.Get(e.ctx, client.ObjectKey{Namespace: "berth-system", Name: name}, &p); err != nil {
				return err
			}
			if got := p.Labels[controllers.LabelXDSLeader]; got != want {
				return fmt.Errorf("pod %s label %q, want %q", name, got, want)
			}
		}
		return nil
	})
}
