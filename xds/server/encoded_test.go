package server

import (
	"bytes"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// An assignment served encoded is, on the wire, the assignment given.
func TestEncodedAssignment(t *testing.T) {
	addr := func(ip string) *endpointv3.LbEndpoint {
		return &endpointv3.LbEndpoint{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
			Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
				Address: ip, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 8080}}}}}}}
	}
	for _, cla := range []*endpointv3.ClusterLoadAssignment{
		{ClusterName: "empty"},
		{ClusterName: "shop/web/8080", Endpoints: []*endpointv3.LocalityLbEndpoints{
			{LbEndpoints: []*endpointv3.LbEndpoint{addr("10.1.0.1"), addr("10.1.0.2")}},
			{Priority: 1, LoadBalancingWeight: wrapperspb.UInt32(3), LbEndpoints: []*endpointv3.LbEndpoint{addr("10.1.0.3")}},
		}, Policy: &endpointv3.ClusterLoadAssignment_Policy{OverprovisioningFactor: wrapperspb.UInt32(140)}},
	} {
		raw, err := cachev3.MarshalResource(cla)
		if err != nil {
			t.Fatal(err)
		}
		served, err := encodedAssignment(cla.ClusterName, raw)
		if err != nil {
			t.Fatal(err)
		}
		if got := cachev3.GetResourceName(served); got != cla.ClusterName {
			t.Errorf("served as %q, want %q", got, cla.ClusterName)
		}
		wire, err := cachev3.MarshalResource(served)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(wire, raw) {
			t.Errorf("%s: served encoding differs from the assignment's", cla.ClusterName)
		}
		var back endpointv3.ClusterLoadAssignment
		if err := proto.Unmarshal(wire, &back); err != nil {
			t.Fatal(err)
		}
		if !proto.Equal(&back, cla) {
			t.Errorf("%s: decodes as %v, want %v", cla.ClusterName, &back, cla)
		}
	}
	if _, err := encodedAssignment("x", []byte{0x0a, 0x05, 'x'}); err == nil {
		t.Error("a truncated encoding was taken")
	}
}
