package gatewayapi

import (
	"os"
	"reflect"
	"testing"

	"github.com/google/go-cmp/cmp"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// TestMemoRedirectFollowsListenerProtocol: a route compiled once keeps its
// IR routes per hostname across translations (Memo), but a redirect
// without a port depends on the listener it serves: when listener "http"
// (port 80) turns HTTPS, the redirect with neither scheme nor port must
// now name port 80 (no longer the scheme's own port), as a translation
// from scratch does.
func TestMemoRedirectFollowsListenerProtocol(t *testing.T) {
	data, err := os.ReadFile(testdata + "/redirect-listener-port.in.yaml")
	if err != nil {
		t.Fatal(err)
	}
	res, _, err := DecodeYAML(data)
	if err != nil {
		t.Fatal(err)
	}
	res.HTTPRoutes[0].UID, res.HTTPRoutes[0].Generation, res.HTTPRoutes[0].ResourceVersion = "route-uid", 1, "10"
	res.Gateways[0].UID, res.Gateways[0].Generation, res.Gateways[0].ResourceVersion = "gateway-uid", 1, "11"
	var memo Memo
	memo.Translate(res, Options{})

	gw := res.Gateways[0].DeepCopy()
	gw.Generation, gw.ResourceVersion = 2, "12"
	l := &gw.Spec.Listeners[0]
	if l.Name != "http" || l.Port != 80 {
		t.Fatalf("listener 0 is %s:%d, want http:80", l.Name, l.Port)
	}
	l.Protocol = gwv1.HTTPSProtocolType
	l.TLS = gw.Spec.Listeners[2].TLS.DeepCopy()
	res.Gateways[0] = *gw

	got := memo.Translate(res, Options{})
	want := Translate(res, Options{})
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("memoized translation differs (-memo +full):\n%s", cmp.Diff(got, want))
	}
	var port *uint32
	for _, hl := range want.Groups[0].HTTP {
		if hl.Name == "redir/gw/http" {
			for _, r := range hl.Routes {
				if r.Redirect != nil && r.Redirect.Hostname != nil && *r.Redirect.Hostname == "example.org" {
					port = r.Redirect.Port
				}
			}
		}
	}
	if port == nil || *port != 80 {
		t.Fatalf("redirect port on the HTTPS listener of port 80 = %v, want 80", port)
	}
}
