// Package provision describes the Envoy fleet that serves one node group
// (a Gateway, or an IngressClass): its ServiceAccount, bootstrap ConfigMap,
// Deployment and LoadBalancer Service, and the Secret that carries its xDS
// client certificate. Every fleet lives in Berth's own namespace, where
// only the controller writes (Envoy Gateway's default model): no tenant
// can mount a fleet's client certificate. Pure: the controller applies
// what Objects returns.
package provision

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sort"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
)

// Labels on every provisioned object.
const (
	LabelManagedBy = "app.kubernetes.io/managed-by"
	ManagedBy      = "berth-controller"
	LabelComponent = "app.kubernetes.io/component"
	Component      = "envoy"
	// LabelGroup holds a hash of the node group (label values cannot hold
	// its slashes); AnnotationGroup holds the group itself.
	LabelGroup      = "berth.dev/xds-group-hash"
	AnnotationGroup = "berth.dev/xds-group"
	// LabelGatewayNamespace and LabelGatewayName name the Gateway a fleet
	// serves (owner references cannot cross namespaces). The name label
	// is shortened with a hash past 63 characters; AnnotationGateway holds
	// "<namespace>/<name>" whole.
	LabelGatewayNamespace = "berth.dev/gateway-namespace"
	LabelGatewayName      = "berth.dev/gateway-name"
	AnnotationGateway     = "berth.dev/gateway"
	// AnnotationCertSerial, on the pod template, is the serial of the xDS
	// client certificate the pods were started with: Envoy reads the
	// certificate files once, so a reissued certificate rolls the pods.
	AnnotationCertSerial = "berth.dev/xds-client-cert-serial"
)

// Container-side facts the bootstrap and the Deployment share.
const (
	// BootstrapKey is the ConfigMap key of the bootstrap.
	BootstrapKey = "envoy.yaml"
	// BootstrapDir and CertDir are where the Deployment mounts the bootstrap
	// ConfigMap and the xDS client Secret.
	BootstrapDir = "/etc/envoy"
	CertDir      = "/etc/berth-xds"
	// ReadyPort serves /ready from the Envoy's readiness listener.
	ReadyPort = 19001
	// DefaultImage is the Envoy release the xDS API version matches.
	DefaultImage = "docker.io/envoyproxy/envoy:v1.40.0"
)

// Fleet is what the objects are made for.
type Fleet struct {
	// Group is the xDS node group the Envoys ask for.
	Group string
	// Namespace and Name place the objects; Name is the base of their names.
	Namespace, Name string
	// Owner, when set, owns every object, so they go when it goes (an
	// IngressClass). A Gateway's fleet has none: it lives in another
	// namespace than its Gateway and carries Gateway's labels instead.
	Owner *metav1.OwnerReference
	// Gateway is the Gateway served, empty for an IngressClass's fleet.
	Gateway types.NamespacedName
	// CertSerial is the serial of the fleet's current xDS client
	// certificate; a new one rolls the pods.
	CertSerial string
	// Ports are the listener ports the Service carries.
	Ports []int32
	// LoadBalancerIPs are requested addresses (a Gateway's spec.addresses);
	// empty lets IPAM choose.
	LoadBalancerIPs []string
	// LoadBalancerClass of the Service; Berth's by default.
	LoadBalancerClass string
}

// Options are the operator's choices for every fleet.
type Options struct {
	Image    string
	Replicas int32
}

// ContainerPort is the port Envoy binds for a listener port: ports below
// 1024 move up by 10000 so Envoy runs without NET_BIND_SERVICE (the
// Service still exposes the listener's own port).
func ContainerPort(p int32) int32 {
	if p < 1024 {
		return p + 10000
	}
	return p
}

// maxBase leaves room for "-bootstrap" in a DNS label.
const maxBase = 63 - len("-bootstrap")

// ObjectName is the base name of a fleet's objects: "berth-" plus the
// owner's name, shortened with a hash when it would not fit a DNS label.
// IngressClass fleets use it; GatewayFleetName names a Gateway's.
func ObjectName(kind, name string) string {
	n := "berth-" + kind + "-" + name
	if len(n) <= maxBase {
		return n
	}
	h := sha256.Sum256([]byte(n))
	return n[:40] + "-" + hex.EncodeToString(h[:])[:11]
}

// GatewayFleetName is the base name of a Gateway's fleet objects in
// Berth's namespace: "berth-gw-<namespace>-<name>-<hash>", the readable
// part cut to fit a DNS label and the hash (of "<namespace>/<name>")
// always there, so "a-b"/"c" and "a"/"b-c" get different names, as Envoy
// Gateway names its proxies.
func GatewayFleetName(namespace, name string) string {
	h := sha256.Sum256([]byte(namespace + "/" + name))
	suffix := "-" + hex.EncodeToString(h[:])[:8]
	readable := strings.ReplaceAll("berth-gw-"+namespace+"-"+name, ".", "-")
	if len(readable) > maxBase-len(suffix) {
		readable = readable[:maxBase-len(suffix)]
	}
	return strings.TrimRight(readable, "-") + suffix
}

// GatewayNameLabel is the LabelGatewayName value of a Gateway: its name,
// or past 63 characters its first 54 and a hash of the whole.
func GatewayNameLabel(name string) string {
	if len(name) <= 63 {
		return name
	}
	h := sha256.Sum256([]byte(name))
	return strings.TrimRight(name[:54], "-.") + "-" + hex.EncodeToString(h[:])[:8]
}

// GroupHash is the label value for a node group.
func GroupHash(group string) string {
	h := sha256.Sum256([]byte(group))
	return hex.EncodeToString(h[:])[:16]
}

// SecretName is the Secret holding the fleet's xDS client certificate, key
// and the CA that signs the controller's server certificate.
func SecretName(base string) string { return base + "-xds" }

// ConfigMapName is the bootstrap ConfigMap.
func ConfigMapName(base string) string { return base + "-bootstrap" }

// Labels selects the fleet's pods.
func (f Fleet) Labels() map[string]string {
	return map[string]string{
		LabelManagedBy: ManagedBy,
		LabelComponent: Component,
		LabelGroup:     GroupHash(f.Group),
	}
}

// objectLabels are Labels and, for a Gateway's fleet, the Gateway's.
func (f Fleet) objectLabels() map[string]string {
	l := f.Labels()
	if f.Gateway.Name != "" {
		l[LabelGatewayNamespace] = f.Gateway.Namespace
		l[LabelGatewayName] = GatewayNameLabel(f.Gateway.Name)
	}
	return l
}

func (f Fleet) annotations() map[string]string {
	a := map[string]string{AnnotationGroup: f.Group}
	if f.Gateway.Name != "" {
		a[AnnotationGateway] = f.Gateway.String()
	}
	return a
}

func (f Fleet) meta(name string) metav1.ObjectMeta {
	m := metav1.ObjectMeta{
		Name:        name,
		Namespace:   f.Namespace,
		Labels:      f.objectLabels(),
		Annotations: f.annotations(),
	}
	if f.Owner != nil {
		m.OwnerReferences = []metav1.OwnerReference{*f.Owner}
	}
	return m
}

// Objects returns the ServiceAccount, bootstrap ConfigMap, Deployment and
// Service of the fleet. The Deployment carries a hash of the bootstrap so
// a changed bootstrap rolls the pods.
func Objects(f Fleet, bootstrap []byte, o Options) (*corev1.ServiceAccount, *corev1.ConfigMap, *appsv1.Deployment, *corev1.Service) {
	if o.Image == "" {
		o.Image = DefaultImage
	}
	if o.Replicas == 0 {
		o.Replicas = 2
	}
	sa := &corev1.ServiceAccount{
		TypeMeta:                     metav1.TypeMeta{APIVersion: "v1", Kind: "ServiceAccount"},
		ObjectMeta:                   f.meta(f.Name),
		AutomountServiceAccountToken: ptr.To(false), // Envoy never calls the API
	}
	cm := &corev1.ConfigMap{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
		ObjectMeta: f.meta(ConfigMapName(f.Name)),
		Data:       map[string]string{BootstrapKey: string(bootstrap)},
	}
	return sa, cm, f.deployment(bootstrap, o), f.service()
}

func (f Fleet) ports() []int32 {
	ps := append([]int32(nil), f.Ports...)
	sort.Slice(ps, func(i, j int) bool { return ps[i] < ps[j] })
	out := ps[:0]
	for i, p := range ps {
		if i == 0 || p != ps[i-1] {
			out = append(out, p)
		}
	}
	return out
}

func (f Fleet) deployment(bootstrap []byte, o Options) *appsv1.Deployment {
	sum := sha256.Sum256(bootstrap)
	var ports []corev1.ContainerPort
	for _, p := range f.ports() {
		ports = append(ports, corev1.ContainerPort{Name: fmt.Sprintf("l-%d", p), ContainerPort: ContainerPort(p), Protocol: corev1.ProtocolTCP})
	}
	ports = append(ports, corev1.ContainerPort{Name: "ready", ContainerPort: ReadyPort, Protocol: corev1.ProtocolTCP})
	podMeta := metav1.ObjectMeta{Labels: f.objectLabels(), Annotations: f.annotations()}
	podMeta.Annotations["berth.dev/bootstrap-sha256"] = hex.EncodeToString(sum[:])[:16]
	if f.CertSerial != "" {
		podMeta.Annotations[AnnotationCertSerial] = f.CertSerial
	}
	return &appsv1.Deployment{
		TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"},
		ObjectMeta: f.meta(f.Name),
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(o.Replicas),
			Selector: &metav1.LabelSelector{MatchLabels: f.Labels()},
			Strategy: appsv1.DeploymentStrategy{
				Type:          appsv1.RollingUpdateDeploymentStrategyType,
				RollingUpdate: &appsv1.RollingUpdateDeployment{MaxUnavailable: ptr.To(intstr.FromInt32(0)), MaxSurge: ptr.To(intstr.FromInt32(1))},
			},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: podMeta,
				Spec: corev1.PodSpec{
					ServiceAccountName:            f.Name,
					AutomountServiceAccountToken:  ptr.To(false),
					TerminationGracePeriodSeconds: ptr.To(int64(30)),
					SecurityContext: &corev1.PodSecurityContext{
						RunAsNonRoot:   ptr.To(true),
						RunAsUser:      ptr.To(int64(65532)),
						SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
					},
					Containers: []corev1.Container{{
						Name:  "envoy",
						Image: o.Image,
						Args: []string{
							"--config-path", BootstrapDir + "/" + BootstrapKey,
							"--service-cluster", f.Group,
							// Each replica under its own name in the xDS server's status.
							"--service-node", "$(ENVOY_POD_NAME)",
							"--drain-time-s", "15",
							"--log-level", "info",
						},
						Env:   []corev1.EnvVar{{Name: "ENVOY_POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}}},
						Ports: ports,
						ReadinessProbe: &corev1.Probe{
							ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/ready", Port: intstr.FromInt32(ReadyPort)}},
							PeriodSeconds: 5, FailureThreshold: 1,
						},
						Lifecycle: &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{Sleep: &corev1.SleepAction{Seconds: 15}}},
						Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{
							corev1.ResourceCPU:    resource.MustParse("100m"),
							corev1.ResourceMemory: resource.MustParse("128Mi"),
						}},
						SecurityContext: &corev1.SecurityContext{
							AllowPrivilegeEscalation: ptr.To(false),
							ReadOnlyRootFilesystem:   ptr.To(true),
							Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
						},
						VolumeMounts: []corev1.VolumeMount{
							{Name: "bootstrap", MountPath: BootstrapDir, ReadOnly: true},
							{Name: "xds-certs", MountPath: CertDir, ReadOnly: true},
						},
					}},
					Volumes: []corev1.Volume{
						{Name: "bootstrap", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: ConfigMapName(f.Name)}}}},
						{Name: "xds-certs", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: SecretName(f.Name)}}},
					},
				},
			},
		},
	}
}

func (f Fleet) service() *corev1.Service {
	var ports []corev1.ServicePort
	for _, p := range f.ports() {
		ports = append(ports, corev1.ServicePort{
			Name: fmt.Sprintf("l-%d", p), Port: p, Protocol: corev1.ProtocolTCP,
			TargetPort: intstr.FromInt32(ContainerPort(p)),
		})
	}
	class := f.LoadBalancerClass
	if class == "" {
		class = "berth.dev/lb"
	}
	svc := &corev1.Service{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
		ObjectMeta: f.meta(f.Name),
		Spec: corev1.ServiceSpec{
			Type:              corev1.ServiceTypeLoadBalancer,
			LoadBalancerClass: &class,
			Selector:          f.Labels(),
			Ports:             ports,
			// Keep the client's address visible to Envoy and skip a second hop.
			ExternalTrafficPolicy: corev1.ServiceExternalTrafficPolicyLocal,
		},
	}
	if len(f.LoadBalancerIPs) > 0 {
		svc.Annotations["berth.dev/load-balancer-ips"] = strings.Join(f.LoadBalancerIPs, ",")
	}
	return svc
}
