// Package proxybench measures Berth's service proxy against upstream
// kube-proxy (nftables mode): full sync, one change and memory, with the
// same API server and the same objects, each proxy in its own network
// namespace. It holds benchmarks only; `make bench` runs them.
package proxybench

import (
	"testing"

	"github.com/berthnet/berth/test/netnstest"
)

func TestMain(m *testing.M) { netnstest.Main(m) }
