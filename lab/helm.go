package lab

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"
)

// A lab of real nodes installs Berth as users do: `helm install` of
// charts/berth into berth-system, with the values an operator of this LAN
// would write (ChartValues): the images imported on every node, the API
// server's address for the agents (they program the kubernetes Service
// themselves), the cluster's Service and pod ranges, the LAN's pools with
// their L2Announcement, the router as BGPPeer and the pod network mode.

// ReleaseName is the lab's Helm release of Berth.
const ReleaseName = "berth"

// ValuesFile is where the lab writes the values it installs Berth with.
func (c Config) ValuesFile() string { return filepath.Join(c.StateDir, "berth-values.yaml") }

// ChartValues are the Helm values the lab installs Berth with.
func (c Config) ChartValues(images Images, apiPort int) (map[string]any, error) {
	image := func(name string) (map[string]any, error) {
		im, err := images.Named(name)
		if err != nil {
			return nil, err
		}
		repo, tag := splitRef(im.Ref)
		// Imported on every node: a pull could only fail.
		return map[string]any{"repository": repo, "tag": tag, "pullPolicy": "Never"}, nil
	}
	controller, err := image("berth-controller")
	if err != nil {
		return nil, err
	}
	agent, err := image("berth-agent")
	if err != nil {
		return nil, err
	}
	lb := map[string]any{
		"serviceCIDRs": []string{c.ServiceCIDR.String(), c.ServiceCIDR6.String()},
		"clusterCIDRs": []string{c.ClusterCIDR.String(), c.ClusterCIDR6.String()},
	}
	objects := append(append([]byte{}, c.LBPoolManifest()...), "\n---\n"...)
	objects = append(objects, c.BGPManifest()...)
	for _, doc := range bytes.Split(objects, []byte("\n---\n")) {
		var o struct {
			Kind     string `json:"kind"`
			Metadata struct {
				Name   string            `json:"name"`
				Labels map[string]string `json:"labels,omitempty"`
			} `json:"metadata"`
			Spec map[string]any `json:"spec"`
		}
		if err := yaml.Unmarshal(doc, &o); err != nil {
			return nil, err
		}
		key := map[string]string{"IPPool": "ipPools", "L2Announcement": "l2Announcements", "BGPPeer": "bgpPeers", "BGPAnnouncement": "bgpAnnouncements"}[o.Kind]
		if key == "" {
			return nil, fmt.Errorf("lab manifest of kind %q has no chart value", o.Kind)
		}
		entry := map[string]any{"name": o.Metadata.Name, "spec": o.Spec}
		if len(o.Metadata.Labels) > 0 {
			entry["labels"] = o.Metadata.Labels
		}
		list, _ := lb[key].([]any)
		lb[key] = append(list, entry)
	}
	return map[string]any{
		"controller":    map[string]any{"image": controller},
		"agent":         map[string]any{"image": agent},
		"podNetwork":    map[string]any{"mode": c.PodNetworkMode},
		"serviceProxy":  map[string]any{"enabled": c.ServiceProxy},
		"kubernetesAPI": map[string]any{"host": c.HostLAN().String(), "port": apiPort},
		"loadBalancer":  lb,
	}, nil
}

// helm runs the lab's helm against the lab as cluster admin.
func (c Config) helm(ctx context.Context, args ...string) (string, error) {
	cmd := childCommand(ctx, c.Helm, append(args, "--kubeconfig", c.AdminKubeconfig(), "--namespace", Namespace)...)
	// helm keeps its cache and config in the lab's folder, not root's home.
	cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+filepath.Join(c.StateDir, "helm", "cache"),
		"HELM_CONFIG_HOME="+filepath.Join(c.StateDir, "helm", "config"), "HELM_DATA_HOME="+filepath.Join(c.StateDir, "helm", "data"))
	out, err := runChild(cmd)
	if err != nil {
		return string(out), fmt.Errorf("helm %s: %v: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return string(out), nil
}

// helmInstall writes the values file and installs the chart.
func (c Config) helmInstall(ctx context.Context, images Images, apiPort int) error {
	values, err := c.ChartValues(images, apiPort)
	if err != nil {
		return err
	}
	b, err := yaml.Marshal(values)
	if err != nil {
		return err
	}
	head := "# The values `berthctl lab up` installed Berth with:\n#   helm install " + ReleaseName + " " + c.ChartDir +
		" --namespace " + Namespace + " --create-namespace -f " + c.ValuesFile() + "\n"
	if err := os.WriteFile(c.ValuesFile(), append([]byte(head), b...), 0o644); err != nil {
		return err
	}
	_, err = c.helm(ctx, "install", ReleaseName, c.ChartDir, "--create-namespace", "-f", c.ValuesFile(), "--timeout", "2m")
	return err
}

// waitBerth waits until the agent DaemonSet is ready on every node and the
// controller Deployment is available.
func waitBerth(ctx context.Context, client kubernetes.Interface, cfg Config, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last string
	for {
		ds, err := client.AppsV1().DaemonSets(Namespace).Get(ctx, "berth-agent", metav1.GetOptions{})
		var dep *appsv1.Deployment
		if err == nil {
			dep, err = client.AppsV1().Deployments(Namespace).Get(ctx, "berth-controller", metav1.GetOptions{})
		}
		if err != nil {
			last = err.Error()
		} else {
			last = fmt.Sprintf("agents ready on %d of %d nodes, controller %d of %d replicas available",
				ds.Status.NumberReady, cfg.Nodes, dep.Status.AvailableReplicas, ptr.Deref(dep.Spec.Replicas, 1))
			if int(ds.Status.NumberReady) == cfg.Nodes && ds.Status.UpdatedNumberScheduled == ds.Status.DesiredNumberScheduled &&
				dep.Status.AvailableReplicas >= 1 {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("berth not ready after %s: %s:%s", timeout, last, podsState(ctx, client, Namespace, ""))
		case <-time.After(500 * time.Millisecond):
		}
	}
}
