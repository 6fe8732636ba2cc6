package gatewayapi

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/util/yaml"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
	gwv1b1 "sigs.k8s.io/gateway-api/apis/v1beta1"
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
			res.GatewayClasses = append(res.GatewayClasses, gwv1.GatewayClass{})
			dst = &res.GatewayClasses[len(res.GatewayClasses)-1]
		case "Gateway":
			res.Gateways = append(res.Gateways, gwv1.Gateway{})
			dst = &res.Gateways[len(res.Gateways)-1]
		case "HTTPRoute":
			res.HTTPRoutes = append(res.HTTPRoutes, gwv1.HTTPRoute{})
			dst = &res.HTTPRoutes[len(res.HTTPRoutes)-1]
		case "GRPCRoute":
			res.GRPCRoutes = append(res.GRPCRoutes, gwv1.GRPCRoute{})
			dst = &res.GRPCRoutes[len(res.GRPCRoutes)-1]
		case "ReferenceGrant":
			res.ReferenceGrants = append(res.ReferenceGrants, gwv1b1.ReferenceGrant{})
			dst = &res.ReferenceGrants[len(res.ReferenceGrants)-1]
		case "Namespace":
			res.Namespaces = append(res.Namespaces, corev1.Namespace{})
			dst = &res.Namespaces[len(res.Namespaces)-1]
		case "Service":
			res.Services = append(res.Services, corev1.Service{})
			dst = &res.Services[len(res.Services)-1]
		case "Secret":
			res.Secrets = append(res.Secrets, corev1.Secret{})
			dst = &res.Secrets[len(res.Secrets)-1]
		case "Ingress":
			res.Ingresses = append(res.Ingresses, networkingv1.Ingress{})
			dst = &res.Ingresses[len(res.Ingresses)-1]
		case "IngressClass":
			res.IngressClasses = append(res.IngressClasses, networkingv1.IngressClass{})
			dst = &res.IngressClasses[len(res.IngressClasses)-1]
		case "EndpointSlice":
			slices = append(slices, discoveryv1.EndpointSlice{})
			dst = &slices[len(slices)-1]
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
