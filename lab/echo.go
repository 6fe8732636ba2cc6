package lab

import (
	"strconv"

	corev1 "k8s.io/api/core/v1"

	"github.com/berthnet/berth/lab/echo"
)

// The lab's echo programs (lab/echo) are images (`make images`:
// build/echo), tagged "lab" and imported on every node.

// EchoImage is the lab's HTTP echo server.
const EchoImage = "berth.dev/lab/http-echo:lab"

// TCPEchoImage and UDPEchoImage echo what they receive, prefixed with the
// pod's name (lab/echo).
const (
	TCPEchoImage = "berth.dev/lab/tcp-echo:lab"
	UDPEchoImage = "berth.dev/lab/udp-echo:lab"
)

// MultiEchoImage serves TCP and UDP echo on the pod's port and on every
// port listed in its ECHO_PORTS variable (comma-separated): the NetworkPolicy
// truth tables probe each pod on TCP and UDP 80 and 81.
const MultiEchoImage = "berth.dev/lab/multi-echo:lab"

// EchoReply is what the HTTP echo server answers.
type EchoReply = echo.Reply

// ToolboxImage has busybox's ping, nslookup, wget and nc, for `kubectl exec`.
const ToolboxImage = "berth.dev/lab/toolbox:lab"

// EchoContainer is a container of one of the echo images serving on port:
// the downward API gives the program the pod's name, namespace, addresses
// and node, which it reports to its clients.
func EchoContainer(name, image string, port int32, protocol corev1.Protocol) corev1.Container {
	field := func(n, path string) corev1.EnvVar {
		return corev1.EnvVar{Name: n, ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: path}}}
	}
	if protocol == "" {
		protocol = corev1.ProtocolTCP
	}
	return corev1.Container{
		Name:            name,
		Image:           image,
		ImagePullPolicy: corev1.PullNever,
		Ports:           []corev1.ContainerPort{{Name: "serve", ContainerPort: port, Protocol: protocol}},
		Env: []corev1.EnvVar{
			{Name: "PORT", Value: strconv.Itoa(int(port))},
			field("POD_NAME", "metadata.name"),
			field("POD_NAMESPACE", "metadata.namespace"),
			field("POD_IP", "status.podIP"),
			field("POD_IPS", "status.podIPs"),
			field("NODE_NAME", "spec.nodeName"),
		},
	}
}
