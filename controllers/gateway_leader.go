package controllers

import (
	"context"
	"encoding/json"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// LabelXDSLeader marks the controller pod that serves xDS (the leader); the
// xDS Service selects it.
const LabelXDSLeader = "berth.dev/xds-leader"

// The leader labels its own pod and takes the label off any other
// controller pod (a previous leader that died without cleaning up).
//
// +kubebuilder:rbac:groups="",namespace=berth-system,resources=pods,verbs=get;list;patch

// markLeader labels this pod as the xDS leader and unlabels the others; the
// label comes off again when ctx ends (leadership lost or shutdown).
func (e *gatewayEngine) markLeader(ctx context.Context, log logr.Logger) {
	if e.opts.PodName == "" {
		return
	}
	set := func(ctx context.Context, name string, on bool) error {
		val := any(nil)
		if on {
			val = "true"
		}
		patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{"labels": map[string]any{LabelXDSLeader: val}}})
		pod := &corev1.Pod{}
		pod.Namespace, pod.Name = e.opts.Namespace, name
		return e.client.Patch(ctx, pod, client.RawPatch(types.MergePatchType, patch))
	}
	if err := set(ctx, e.opts.PodName, true); err != nil {
		log.Error(err, "label this pod as the xDS leader: Envoys cannot reach it through the xDS Service", "pod", e.opts.PodName)
	}
	var pods corev1.PodList
	if err := e.reader.List(ctx, &pods, client.InNamespace(e.opts.Namespace), client.MatchingLabels{LabelXDSLeader: "true"}); err != nil {
		log.Error(err, "list former xDS leaders")
	}
	for _, p := range pods.Items {
		if p.Name != e.opts.PodName {
			if err := set(ctx, p.Name, false); err != nil {
				log.Error(err, "unlabel a former xDS leader", "pod", p.Name)
			}
		}
	}
	go func() {
		<-ctx.Done()
		c, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if err := set(c, e.opts.PodName, false); err != nil {
			log.Error(err, "unlabel this pod as it stops serving xDS", "pod", e.opts.PodName)
		}
	}()
}
