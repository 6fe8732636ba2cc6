package bootstrap

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/proto"

	"github.com/berthnet/berth/internal/golden"
)

var update = flag.Bool("update", false, "rewrite testdata/*.yaml from the current output")

// goldenCases are the bootstraps the chart and the controller produce: a Gateway's and an
// IngressClass's, with defaults and with everything set.
var goldenCases = map[string]Options{
	"gateway-defaults": {
		Group:   "gateway/default/web",
		XDSHost: "berth-xds.berth-system.svc",
	},
	"ingress-custom": {
		Group:      "ingress/berth",
		NodeID:     "envoy-ingress",
		XDSHost:    "berth-xds.berth-system.svc.cluster.local",
		XDSPort:    8443,
		ServerName: "berth-xds.berth-system.svc",
		CertFile:   "/var/run/xds/cert.pem",
		KeyFile:    "/var/run/xds/key.pem",
		CAFile:     "/var/run/xds/ca.pem",
		AdminPort:  9901,
		ReadyPort:  8002,
	},
}

func TestGoldenBootstrap(t *testing.T) {
	golden.Prune(t, filepath.Join("testdata", "*.yaml"), func(f string) bool {
		_, ok := goldenCases[strings.TrimSuffix(filepath.Base(f), ".yaml")]
		return ok
	}, *update)
	for name, o := range goldenCases {
		t.Run(name, func(t *testing.T) {
			got, err := YAML(o)
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join("testdata", name+".yaml")
			golden.Compare(t, path, got, *update)
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			// The file Envoy gets parses back into the same bootstrap and passes Envoy's
			// validation rules, typed configs included.
			parsed, err := Parse(want)
			if err != nil {
				t.Fatal(err)
			}
			built, err := Build(o)
			if err != nil {
				t.Fatal(err)
			}
			if !proto.Equal(parsed, built) {
				t.Error("the golden file does not parse back into the built bootstrap")
			}
			for _, c := range parsed.GetStaticResources().GetClusters() {
				m, err := c.GetTransportSocket().GetTypedConfig().UnmarshalNew()
				if err != nil {
					t.Fatal(err)
				}
				if err := m.(*tlsv3.UpstreamTlsContext).ValidateAll(); err != nil {
					t.Error(err)
				}
			}
		})
	}
}

func TestBuildChecks(t *testing.T) {
	b, err := Build(Options{Group: "ingress/berth", XDSHost: "xds"})
	if err != nil {
		t.Fatal(err)
	}
	if a := b.GetAdmin().GetAddress().GetSocketAddress().GetAddress(); a != "127.0.0.1" {
		t.Errorf("admin on %q, want loopback only", a)
	}
	if b.GetNode().GetCluster() != "ingress/berth" || b.GetNode().GetId() != "ingress/berth" {
		t.Errorf("node %v", b.GetNode())
	}
	for _, bad := range []Options{
		{Group: "ingress/berth"},
		{Group: "gateway/x", XDSHost: "xds"},
		{Group: "ingress/berth", XDSHost: "xds", AdminPort: 8000, ReadyPort: 8000},
	} {
		if _, err := Build(bad); err == nil {
			t.Errorf("Build(%+v) succeeded", bad)
		}
	}
	if _, err := Parse([]byte("node: {id: x}\nnot_a_field: 1\n")); err == nil {
		t.Error("Parse accepted an unknown field")
	}
	if _, err := Parse([]byte("admin: {address: {socket_address: {address: 127.0.0.1, port_value: 99999999}}}\n")); err == nil {
		t.Error("Parse accepted an invalid port")
	}
}
