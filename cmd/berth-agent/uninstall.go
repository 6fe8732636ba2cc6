package main

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/berthnet/berth/bgp"
	"github.com/berthnet/berth/cni"
	"github.com/berthnet/berth/cni/podnet"
	"github.com/berthnet/berth/netpol"
	"github.com/berthnet/berth/proxy"
)

// How long the shutdown decision may take: the chart's
// terminationGracePeriodSeconds leaves room for the manager's own stop
// (up to 30s), this, and the removal.
const (
	decideTimeout  = 5 * time.Second
	watchGraceTime = 5 * time.Second
	// podsGoneWait: how long the removal waits for the node's pods on the
	// pod network (the controller's, deleted by the same helm uninstall)
	// to be torn down, which needs the CNI config and plugin.
	podsGoneWait = 30 * time.Second
)

// uninstallCheck finds, at start, the DaemonSet that runs the agent's pod
// and watches it, and decides when the agent stops whether Berth is being
// uninstalled, then removes the node's state if it is (onStop).
type uninstallCheck struct {
	node string
	c    kubernetes.Interface
	log  logr.Logger

	watch  *dsWatch
	cancel context.CancelFunc
	self   chan selfRef // holds the resolved selfRef once known
}

// startUninstallCheck resolves the agent's DaemonSet from its pod's
// controller reference (retrying until it can) and starts watching it.
// With no pod name (the agent run by hand) there is nothing to resolve:
// the agent keeps the node's state when it stops, as before.
func startUninstallCheck(cfg *rest.Config, namespace, pod, node string, log logr.Logger) (*uninstallCheck, error) {
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	u := &uninstallCheck{node: node, c: cs, log: log, watch: newDSWatch(), cancel: cancel, self: make(chan selfRef, 1)}
	if pod == "" {
		log.Info("no pod name ($POD_NAME): an uninstall cannot be told from a restart, so this node's state stays when the agent stops")
		return u, nil
	}
	go func() {
		var self selfRef
		_ = wait.PollUntilContextCancel(ctx, 2*time.Second, true, func(ctx context.Context) (bool, error) {
			p, err := cs.CoreV1().Pods(namespace).Get(ctx, pod, metav1.GetOptions{})
			if err != nil {
				log.Error(err, "read own pod, to find its DaemonSet (retrying)", "pod", namespace+"/"+pod)
				return false, nil
			}
			ref := metav1.GetControllerOf(p)
			if ref == nil || ref.Kind != "DaemonSet" {
				log.Info("this pod is not run by a DaemonSet: its node's state stays when the agent stops", "pod", namespace+"/"+pod)
				return false, errors.New("no DaemonSet")
			}
			self = selfRef{Namespace: namespace, DaemonSet: ref.Name, Pod: pod}
			return true, nil
		})
		if self.DaemonSet == "" {
			return
		}
		u.self <- self
		log.Info("watching own DaemonSet: it decides uninstall or restart when the agent stops", "daemonSet", namespace+"/"+self.DaemonSet)
		u.watch.run(ctx, cs, namespace, self.DaemonSet)
	}()
	return u, nil
}

// onStop runs once the manager has stopped (SIGTERM): it decides, and on
// an uninstall removes what Berth owns on this node, then stops the watch.
func (u *uninstallCheck) onStop(pn podnet.AgentOptions) error {
	defer u.cancel()
	var self selfRef
	select {
	case self = <-u.self:
	default:
		u.log.Info("keeping this node's state: the agent's DaemonSet was never resolved, so an uninstall cannot be told from a restart")
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), decideTimeout)
	v := decideUninstall(ctx, u.c, self, u.watch.Seen())
	cancel()
	if v.Unsure {
		// A refused read may be ahead of the watch's deletion event.
		if seen := u.watch.waitGone(context.Background(), watchGraceTime); seen.Gone || seen.Deleting {
			ctx, cancel := context.WithTimeout(context.Background(), decideTimeout)
			v = decideUninstall(ctx, u.c, self, seen)
			cancel()
		}
	}
	if !v.Uninstall {
		u.log.Info("keeping this node's state for the next agent", "reason", v.Reason)
		if v.Unsure {
			u.event("BerthStateKept", corev1.EventTypeWarning, v.Reason)
		}
		return nil
	}
	u.log.Info("Berth is being uninstalled: removing what it owns on this node", "reason", v.Reason)
	summary, err := removeNodeState(context.Background(), pn, u.log)
	msg, typ := fmt.Sprintf("%s: removed %s", v.Reason, summary), corev1.EventTypeNormal
	if err != nil {
		msg, typ = fmt.Sprintf("%s: removed %s; failed: %s", v.Reason, summary, shortErr(err)), corev1.EventTypeWarning
	}
	u.event("BerthUninstalled", typ, msg)
	return err
}

// removeNodeState removes every component's state, whichever the flags
// turned on: a component switched off by an earlier upgrade may have left
// its table. Every step runs even when one fails.
func removeNodeState(ctx context.Context, pn podnet.AgentOptions, log logr.Logger) (string, error) {
	left := waitPodsGone(ctx, podsGoneWait, log)
	r, perr := podnet.Remove(ctx, pn, left > 0)
	if left > 0 {
		perr = errors.Join(perr, fmt.Errorf("%d pods are still on the pod network: kept %s and %s so that the runtime can still tear them down; delete them, then remove those two files", left,
			filepath.Join(pn.ConfDir, cni.ConflistName), filepath.Join(pn.BinDir, cni.PluginType)))
	}
	log.Info("pod network removed", "files", r.Files, "links", r.Links, "routes", r.Routes, "table", r.Table)
	proxyGone, xerr := proxy.RemoveRules(ctx)
	netpolGone, nerr := netpol.RemoveRules(ctx)
	berr := bgp.RemoveRoutes()
	log.Info("service proxy, NetworkPolicy and BGP routes removed", "proxyTable", proxyGone, "netpolTable", netpolGone)
	summary := fmt.Sprintf("%d files, links %v, %d routes, tables:", len(r.Files), r.Links, r.Routes)
	for name, gone := range map[string]bool{podnet.NFTable: r.Table, proxy.Table: proxyGone, netpol.Table: netpolGone} {
		if gone {
			summary += " " + name
		}
	}
	err := errors.Join(wrap("pod network", perr), wrap("service proxy", xerr), wrap("NetworkPolicy", nerr), wrap("BGP routes", berr))
	if err != nil {
		log.Error(err, "removal incomplete")
	}
	return summary, err
}

func wrap(what string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s: %w", what, err)
}

// event records the decision on the Node, if the agent may still write
// Events: helm uninstall has usually taken its rights away by now, which
// the log says.
func (u *uninstallCheck) event(reason, typ, msg string) {
	now := metav1.Now()
	ev := &corev1.Event{
		ObjectMeta:          metav1.ObjectMeta{GenerateName: u.node + ".berth-", Namespace: metav1.NamespaceDefault},
		InvolvedObject:      corev1.ObjectReference{Kind: "Node", APIVersion: "v1", Name: u.node, UID: types.UID(u.node)},
		Reason:              reason,
		Message:             msg,
		Type:                typ,
		Source:              corev1.EventSource{Component: "berth-agent", Host: u.node},
		FirstTimestamp:      now,
		LastTimestamp:       now,
		Count:               1,
		ReportingController: "berth.dev/agent",
		ReportingInstance:   "berth-agent-" + u.node,
	}
	ctx, cancel := context.WithTimeout(context.Background(), decideTimeout)
	defer cancel()
	if _, err := u.c.CoreV1().Events(metav1.NamespaceDefault).Create(ctx, ev, metav1.CreateOptions{}); err != nil {
		u.log.Info("could not post the Event on the Node (the agent's rights are likely gone with the release)", "reason", reason, "error", shortErr(err))
	}
}

// waitPodsGone waits up to d for the pod bridge to have no pod attached,
// and returns how many are left.
func waitPodsGone(ctx context.Context, d time.Duration, log logr.Logger) int {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	for {
		n, err := podnet.PodsAttached()
		if err != nil {
			log.Error(err, "count the pods on the pod bridge")
			return 0
		}
		if n == 0 {
			return 0
		}
		select {
		case <-ctx.Done():
			return n
		case <-time.After(250 * time.Millisecond):
		}
	}
}
