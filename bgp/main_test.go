package bgp

import (
	"testing"

	"github.com/berthnet/berth/test/netnstest"
)

// The speaker runs in the test process: its tests run in a network
// namespace of their own, where they link it to each peer daemon's.
func TestMain(m *testing.M) { netnstest.MainIsolated(m) }
