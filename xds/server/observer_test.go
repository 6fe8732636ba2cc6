package server

import (
	"context"
	"testing"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	sotw "github.com/envoyproxy/go-control-plane/pkg/client/sotw/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
)

// A tool that reads a group's configuration (berthctl) is served like an
// Envoy but never makes the group look in sync: a Gateway must not turn
// Programmed because someone printed its configuration.
func TestObserverNeverCountsAsEnvoy(t *testing.T) {
	e := newEnv(t)
	cfg := config{prefix: "a", backends: 1, endpointIP: 1}
	if err := e.srv.Set(context.Background(), groupA, "v1", cfg.all(t)); err != nil {
		t.Fatal(err)
	}
	conn, _ := e.dial(groupA)
	n := &core.Node{Id: "berthctl/1", Cluster: groupA, Metadata: ObserverMetadata()}
	c := sotw.NewADSClient(e.ctx, n, resource.ListenerType)
	if err := c.InitConnect(conn); err != nil {
		t.Fatal(err)
	}
	if got := names(t, fetch(t, c)); len(got) != 1 || got[0] != "a-http" {
		t.Fatalf("observer got listeners %v, want a-http", got)
	}
	if err := c.Ack(); err != nil {
		t.Fatal(err)
	}
	e.waitStatus(groupA, "one observer and no Envoy", func(st GroupStatus) bool {
		return st.Observers == 1 && len(st.Nodes) == 0 && !st.InSync()
	})
}
