package lab

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// On real nodes the demo ends with the troubleshooting commands an operator
// types, run for real and printed as typed: kubectl exec into a toolbox pod
// (ping to a pod on another node, nslookup of the echo Service, a request to
// it by name), kubectl logs of an agent, and the node's own view (its
// nftables service proxy table and its addresses).

// ToolboxPod is the demo's toolbox pod, on node1.
const ToolboxPod = "toolbox"

func demoTroubleshooting(ctx context.Context, cfg Config, client kubernetes.Interface, echo []corev1.Pod, out io.Writer) int {
	failed := 0
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: ToolboxPod, Namespace: DemoNamespace, Labels: map[string]string{"app": "toolbox"}},
		Spec: corev1.PodSpec{NodeName: cfg.NodeName(1), Containers: []corev1.Container{{
			// The image's command waits until stopped, for kubectl exec.
			Name: "toolbox", Image: ToolboxImage, ImagePullPolicy: corev1.PullNever,
		}}},
	}
	if _, err := client.CoreV1().Pods(DemoNamespace).Create(ctx, pod, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		fmt.Fprintf(out, "• toolbox pod: FAILED: %v\n", err)
		return 1
	}
	if _, err := WaitEchoPods(ctx, client, DemoNamespace, "app=toolbox", 1, 2*time.Minute); err != nil {
		fmt.Fprintf(out, "• toolbox pod: FAILED: %v\n", err)
		return 1
	}
	fmt.Fprintf(out, "• troubleshooting as an operator would (export KUBECONFIG=%s):\n", cfg.AdminKubeconfig())
	var far corev1.Pod
	for _, p := range echo {
		if p.Spec.NodeName != cfg.NodeName(1) {
			far = p
			break
		}
	}
	agent := ""
	if pods, err := client.CoreV1().Pods(Namespace).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/component=agent",
		FieldSelector: "spec.nodeName=" + cfg.NodeName(1)}); err == nil && len(pods.Items) > 0 {
		agent = pods.Items[0].Name
	}
	type command struct {
		shown string
		run   []string // argv; kubectl is the lab's, with the admin kubeconfig
		lines int      // how many lines of output to show (0: all)
		want  string   // output that proves it worked
	}
	kubectl := func(args ...string) []string {
		return append([]string{cfg.bin("kubectl"), "--kubeconfig", cfg.AdminKubeconfig()}, args...)
	}
	node := cfg.NodeNamespace(1)
	svcName := "echo." + DemoNamespace + ".svc.cluster.local"
	cmds := []command{
		{shown: "kubectl -n " + DemoNamespace + " exec " + ToolboxPod + " -- ping -c 2 " + far.Status.PodIP,
			run: kubectl("-n", DemoNamespace, "exec", ToolboxPod, "--", "ping", "-c", "2", "-W", "2", far.Status.PodIP), want: " 0% packet loss"},
		{shown: "kubectl -n " + DemoNamespace + " exec " + ToolboxPod + " -- nslookup " + svcName,
			run: kubectl("-n", DemoNamespace, "exec", ToolboxPod, "--", "nslookup", svcName), want: "Name:\t" + svcName},
		// By the Service's short name, through the search domains. With nc:
		// Debian's busybox-static wget crashes (SIGSEGV) on names it resolves.
		{shown: "kubectl -n " + DemoNamespace + " exec " + ToolboxPod + ` -- sh -c 'printf "GET / HTTP/1.0\r\n\r\n" | nc -w 5 echo 8080'`,
			run: kubectl("-n", DemoNamespace, "exec", ToolboxPod, "--", "sh", "-c", `printf "GET / HTTP/1.0\r\n\r\n" | nc -w 5 echo 8080`), want: `"pod"`},
		{shown: "kubectl -n " + Namespace + " logs " + agent + " --tail 5",
			run: kubectl("-n", Namespace, "logs", agent, "--tail", "5"), lines: 5},
		{shown: "ip netns exec " + node + " nft list table inet berth-proxy | head -n 15",
			run: []string{"ip", "netns", "exec", node, "nft", "list", "table", "inet", "berth-proxy"}, lines: 15, want: "table inet berth-proxy"},
		{shown: "ip netns exec " + node + " ip -brief addr show",
			run: []string{"ip", "netns", "exec", node, "ip", "-brief", "addr", "show"}, want: cfg.NodeAddr(1).String()},
	}
	for _, c := range cmds {
		fmt.Fprintf(out, "  $ %s\n", c.shown)
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		var b bytes.Buffer
		cmd := exec.CommandContext(cctx, c.run[0], c.run[1:]...)
		cmd.Stdout, cmd.Stderr = &b, &b
		err := cmd.Run()
		cancel()
		text := strings.TrimRight(b.String(), "\n")
		lines := strings.Split(text, "\n")
		if c.lines > 0 && len(lines) > c.lines {
			lines = append(lines[:c.lines], "    …")
		}
		for _, l := range lines {
			fmt.Fprintf(out, "    %s\n", l)
		}
		if err != nil || (c.want != "" && !strings.Contains(text, c.want)) {
			failed++
			fmt.Fprintf(out, "    FAILED (%v)\n", err)
		}
	}
	fmt.Fprintf(out, "  (kubectl is %s; the nodes' kubelet and containerd logs are in %s)\n", cfg.bin("kubectl"), filepath.Join(cfg.StateDir, "nodes", "*", "real"))
	return failed
}
