package gatewayapi

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/util/yaml"
	sigyaml "sigs.k8s.io/yaml"
)

// DecodeYAML reads multi-document YAML of Kubernetes objects (as in
// xds/testdata/*.in.yaml, or kubectl get -o yaml of each) into Resources,
// with the EndpointSlices apart since Translate does not read them. A kind
// Translate does not read is an error, so a typo in a test case shows.
func DecodeYAML(data []byte) (*Resources, []discoveryv1.EndpointSlice, error) {
	res := &Resources{}
	var slices []discoveryv1.EndpointSlice
	r := yaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	for n := 0; ; n++ {
		doc, err := r.Read()
		if err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return nil, nil, fmt.Errorf("document %d: %w", n, err)
		}
		if len(bytes.TrimSpace(doc)) == 0 {
			continue
		}
		var meta struct {
			Kind string `json:"kind"`
		}
		if err := sigyaml.Unmarshal(doc, &meta); err != nil {
			return nil, nil, fmt.Errorf("document %d: %w", n, err)
		}
		var dst any
		switch meta.Kind {
		case "":
			continue
		case "GatewayClass":
			dst = grow(&res.GatewayClasses)
		case "Gateway":
			dst = grow(&res.Gateways)
		case "HTTPRoute":
			dst = grow(&res.HTTPRoutes)
		case "GRPCRoute":
			dst = grow(&res.GRPCRoutes)
		case "ReferenceGrant":
			dst = grow(&res.ReferenceGrants)
		case "Namespace":
			dst = grow(&res.Namespaces)
		case "Service":
			dst = grow(&res.Services)
		case "Secret":
			dst = grow(&res.Secrets)
		case "Ingress":
			dst = grow(&res.Ingresses)
		case "IngressClass":
			dst = grow(&res.IngressClasses)
		case "EndpointSlice":
			dst = grow(&slices)
		default:
			return nil, nil, fmt.Errorf("document %d: kind %q is not one Translate reads", n, meta.Kind)
		}
		if err := sigyaml.UnmarshalStrict(doc, dst); err != nil {
			return nil, nil, fmt.Errorf("document %d (%s): %w", n, meta.Kind, err)
		}
		if s, ok := dst.(*corev1.Secret); ok {
			stringData(s)
		}
	}
	return res, slices, nil
}

// grow appends a zero element to *s and returns it, for decoding into.
func grow[T any](s *[]T) *T {
	*s = append(*s, *new(T))
	return &(*s)[len(*s)-1]
}

// stringData folds a Secret's stringData into data, as the API server does.
func stringData(s *corev1.Secret) {
	if len(s.StringData) == 0 {
		return
	}
	if s.Data == nil {
		s.Data = map[string][]byte{}
	}
	for k, v := range s.StringData {
		s.Data[k] = []byte(v)
	}
	s.StringData = nil
}
