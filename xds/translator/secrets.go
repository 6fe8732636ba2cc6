package translator

import (
	"bytes"
	"fmt"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"

	"github.com/berthnet/berth/xds/ir"
)

// buildSecrets is one SDS secret per certificate the group's HTTPS
// listeners serve, named as the filter chains ask for it. Two listeners
// may serve the same certificate; the same name with other bytes is an
// error (a Secret read twice while it changed).
func buildSecrets(ls []*ir.HTTPListener) ([]types.Resource, error) {
	seen := map[string]*ir.Certificate{}
	var out []types.Resource
	for _, l := range ls {
		if l.TLS == nil {
			continue
		}
		for _, c := range l.TLS.Certificates {
			if prev, ok := seen[c.Name]; ok {
				if !bytes.Equal(prev.Chain, c.Chain) || !bytes.Equal(prev.Key, c.Key) {
					return nil, fmt.Errorf("listener %s: certificate %s differs from the one of the same name on another listener", l.Name, c.Name)
				}
				continue
			}
			seen[c.Name] = c
			out = append(out, buildSecret(c))
		}
	}
	return out, nil
}

// buildSecret carries the PEM chain and key inline (copied: the secret
// must not share memory with the IR).
func buildSecret(c *ir.Certificate) *tlsv3.Secret {
	return &tlsv3.Secret{
		Name: c.Name,
		Type: &tlsv3.Secret_TlsCertificate{TlsCertificate: &tlsv3.TlsCertificate{
			CertificateChain: &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: bytes.Clone(c.Chain)}},
			PrivateKey:       &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: bytes.Clone(c.Key)}},
		}},
	}
}
