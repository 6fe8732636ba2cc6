package adsclient

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"strings"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"sigs.k8s.io/yaml"
)

// Print writes a Config as YAML, one document per resource, in Order, each
// type headed by its version. Private keys never leave: a secret's key and
// certificate show as their size and SHA-256.
func Print(w io.Writer, cfg Config, versions Versions) error {
	for _, t := range Order {
		msgs := cfg[t]
		short := t[strings.LastIndex(t, ".")+1:]
		if _, err := fmt.Fprintf(w, "# %s: %d, version %q\n", short, len(msgs), versions[t]); err != nil {
			return err
		}
		for _, m := range msgs {
			if s, ok := m.(*tlsv3.Secret); ok {
				m = redact(s)
			}
			js, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(m)
			if err != nil {
				return err
			}
			y, err := yaml.JSONToYAML(js)
			if err != nil {
				return err
			}
			if _, err := fmt.Fprintf(w, "---\n%s", y); err != nil {
				return err
			}
		}
	}
	return nil
}

func redact(s *tlsv3.Secret) *tlsv3.Secret {
	c := proto.Clone(s).(*tlsv3.Secret)
	if tc := c.GetTlsCertificate(); tc != nil {
		tc.CertificateChain = digest(tc.GetCertificateChain())
		tc.PrivateKey = digest(tc.GetPrivateKey())
	}
	return c
}

func digest(ds *core.DataSource) *core.DataSource {
	b := ds.GetInlineBytes()
	if b == nil {
		return ds
	}
	sum := sha256.Sum256(b)
	return &core.DataSource{Specifier: &core.DataSource_InlineString{InlineString: fmt.Sprintf("<%d bytes, sha256 %s>", len(b), hex.EncodeToString(sum[:8]))}}
}
