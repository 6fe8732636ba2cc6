package server

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// virtualHostsField is RouteConfiguration.virtual_hosts.
const virtualHostsField protoreflect.FieldNumber = 2

// vhostSums are the digests of the VirtualHosts of a part's RouteConfigurations, each
// validated with its ValidateAll, by message. A RouteConfiguration's own validation is
// that of its fields besides virtual_hosts and that of each VirtualHost
// (protoc-gen-validate has no rule on the list itself), so a changed RouteConfiguration
// whose VirtualHosts are mostly the very messages served costs its changed VirtualHosts
// only: with one Gateway listener, one RouteConfiguration holds every route of the Gateway.
type vhostSums map[*routev3.VirtualHost][sha256.Size]byte

// checkRouteConfig validates and hashes rc one VirtualHost at a time, reusing the digests of
// VirtualHosts in prev's sums and recording every VirtualHost's digest in next. Its hash is
// the SHA-256 of the deterministic encoding of rc without its VirtualHosts followed by the
// digest of each VirtualHost's deterministic encoding: equal hashes mean equal content.
func checkRouteConfig(name string, rc *routev3.RouteConfiguration, prev, next vhostSums) (string, error) {
	head := withoutVirtualHosts(rc)
	raw, err := proto.MarshalOptions{Deterministic: true}.Marshal(head)
	if err != nil {
		return "", fmt.Errorf("marshal: %w", err)
	}
	if err := head.ValidateAll(); err != nil {
		return "", err
	}
	h := sha256.New()
	h.Write(binary.AppendUvarint(nil, uint64(len(raw))))
	h.Write(raw)
	for i, vh := range rc.GetVirtualHosts() {
		sum, ok := prev[vh]
		if !ok {
			sum, ok = next[vh]
		}
		if !ok {
			if vh == nil {
				return "", fmt.Errorf("VirtualHosts[%d] is nil", i)
			}
			b, err := proto.MarshalOptions{Deterministic: true}.Marshal(vh)
			if err != nil {
				return "", fmt.Errorf("virtual host %q: marshal: %w", vh.GetName(), err)
			}
			if err := vh.ValidateAll(); err != nil {
				return "", fmt.Errorf("VirtualHosts[%d]: %w", i, err)
			}
			sum = sha256.Sum256(b)
		}
		next[vh] = sum
		h.Write(sum[:])
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// carryVirtualHosts records in next the digests prev holds for rc's VirtualHosts: rc is a
// message served already, whose VirtualHosts were checked with it.
func carryVirtualHosts(rc *routev3.RouteConfiguration, prev, next vhostSums) {
	for _, vh := range rc.GetVirtualHosts() {
		if sum, ok := prev[vh]; ok {
			next[vh] = sum
		}
	}
}

// withoutVirtualHosts returns a RouteConfiguration sharing every field of rc but its
// VirtualHosts (which it leaves empty), for reading only.
func withoutVirtualHosts(rc *routev3.RouteConfiguration) *routev3.RouteConfiguration {
	head := &routev3.RouteConfiguration{}
	dst := head.ProtoReflect()
	src := rc.ProtoReflect()
	src.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if fd.Number() != virtualHostsField {
			dst.Set(fd, v)
		}
		return true
	})
	dst.SetUnknown(src.GetUnknown())
	return head
}
