package gatewayapi

import (
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/berthnet/berth/xds/provision"
)

// Ports Envoy keeps for itself in every fleet: admin (on loopback) and the
// readiness listener.
const (
	envoyAdminPort = 19000
	envoyReadyPort = provision.ReadyPort
)

// markUnavailablePorts refuses listeners Envoy could not bind: a port Envoy
// keeps for itself, or a port where Envoy already binds another listener
// (ports below 1024 are bound at +10000, so a listener on 10080 would share
// a socket with one on 80).
func markUnavailablePorts(ls []*listenerState, gen int64) {
	shifted := map[int32]gwv1.PortNumber{}
	for _, l := range ls {
		if p := int32(l.spec.Port); provision.ContainerPort(p) != p {
			shifted[provision.ContainerPort(p)] = l.spec.Port
		}
	}
	for _, l := range ls {
		if l.accepted.Status != metav1.ConditionTrue {
			continue
		}
		p := int32(l.spec.Port)
		var msg string
		switch {
		case p == envoyAdminPort || p == envoyReadyPort:
			msg = fmt.Sprintf("port %d is Envoy's own (admin %d, readiness %d); use another port", p, envoyAdminPort, envoyReadyPort)
		case shifted[p] != 0:
			msg = fmt.Sprintf("port %d is where Envoy binds the listeners on port %d (ports below 1024 are bound 10000 higher); use another port", p, shifted[p])
		default:
			continue
		}
		l.accepted = condition(string(gwv1.ListenerConditionAccepted), false, string(gwv1.ListenerReasonPortUnavailable), msg, gen)
	}
}
