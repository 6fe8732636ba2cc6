package server

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// The fields of RouteConfiguration that checkRouteConfig handles itself.
const (
	routeConfigNameField protoreflect.FieldNumber = 1
	virtualHostsField    protoreflect.FieldNumber = 2
)

// vhostSums are the VirtualHosts of a part's RouteConfigurations, each validated with its
// ValidateAll, by message. A RouteConfiguration's own validation is that of its fields
// besides virtual_hosts and that of each VirtualHost (protoc-gen-validate has no rule on
// the list itself), so a changed RouteConfiguration whose VirtualHosts are mostly the very
// messages served costs its changed VirtualHosts only: with one Gateway listener, one
// RouteConfiguration holds every route of the Gateway.
type vhostSums map[*routev3.VirtualHost]vhostSum

// vhostSum is one checked VirtualHost: the digest of its deterministic encoding, and that
// encoding (within the encoding of the RouteConfiguration served with it).
type vhostSum struct {
	sum [sha256.Size]byte
	raw []byte
}

// checkRouteConfig validates, hashes and encodes rc one VirtualHost at a time, reusing the
// VirtualHosts in prev and recording every VirtualHost of rc in next. Its hash is the
// SHA-256 of the deterministic encoding of rc without its name and VirtualHosts followed by
// the digest of each VirtualHost: equal hashes mean equal content. It returns what to serve
// for rc: a RouteConfiguration of rc's name that holds the rest of rc already encoded, as
// unknown fields, so go-control-plane's marshal for each response is a copy (an encoding
// need not list fields in order; it decodes as rc does).
func checkRouteConfig(rc *routev3.RouteConfiguration, prev, next vhostSums) (string, *routev3.RouteConfiguration, error) {
	head := routeConfigHead(rc)
	raw, err := proto.MarshalOptions{Deterministic: true}.Marshal(head)
	if err != nil {
		return "", nil, fmt.Errorf("marshal: %w", err)
	}
	if err := head.ValidateAll(); err != nil {
		return "", nil, err
	}
	h := sha256.New()
	h.Write(binary.AppendUvarint(nil, uint64(len(raw))))
	h.Write(raw)
	vhs := rc.GetVirtualHosts()
	sums := make([]vhostSum, len(vhs))
	size := len(raw)
	for i, vh := range vhs {
		s, ok := prev[vh]
		if !ok {
			s, ok = next[vh]
		}
		if !ok {
			if vh == nil {
				return "", nil, fmt.Errorf("VirtualHosts[%d] is nil", i)
			}
			b, err := proto.MarshalOptions{Deterministic: true}.Marshal(vh)
			if err != nil {
				return "", nil, fmt.Errorf("virtual host %q: marshal: %w", vh.GetName(), err)
			}
			if err := vh.ValidateAll(); err != nil {
				return "", nil, fmt.Errorf("VirtualHosts[%d]: %w", i, err)
			}
			s = vhostSum{sum: sha256.Sum256(b), raw: b}
		}
		sums[i] = s
		h.Write(s.sum[:])
		size += protowire.SizeTag(virtualHostsField) + protowire.SizeBytes(len(s.raw))
	}
	// One buffer for the whole encoding; the VirtualHosts keep slices of it, so the
	// previous buffer goes with the configuration it was served in.
	buf := make([]byte, 0, size)
	buf = append(buf, raw...)
	for i, vh := range vhs {
		buf = protowire.AppendTag(buf, virtualHostsField, protowire.BytesType)
		buf = protowire.AppendVarint(buf, uint64(len(sums[i].raw)))
		start := len(buf)
		buf = append(buf, sums[i].raw...)
		next[vh] = vhostSum{sum: sums[i].sum, raw: buf[start:len(buf):len(buf)]}
	}
	served := &routev3.RouteConfiguration{Name: rc.GetName()}
	served.ProtoReflect().SetUnknown(buf)
	return hex.EncodeToString(h.Sum(nil)), served, nil
}

// carryVirtualHosts records in next what prev holds for rc's VirtualHosts: rc is a message
// served already, whose VirtualHosts were checked with it.
func carryVirtualHosts(rc *routev3.RouteConfiguration, prev, next vhostSums) {
	for _, vh := range rc.GetVirtualHosts() {
		if s, ok := prev[vh]; ok {
			next[vh] = s
		}
	}
}

// routeConfigHead returns a RouteConfiguration sharing every field of rc but its name and
// VirtualHosts (which it leaves empty), for reading only.
func routeConfigHead(rc *routev3.RouteConfiguration) *routev3.RouteConfiguration {
	head := &routev3.RouteConfiguration{}
	dst := head.ProtoReflect()
	src := rc.ProtoReflect()
	src.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if n := fd.Number(); n != virtualHostsField && n != routeConfigNameField {
			dst.Set(fd, v)
		}
		return true
	})
	dst.SetUnknown(src.GetUnknown())
	return head
}
