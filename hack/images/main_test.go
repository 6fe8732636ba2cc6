package main

import (
	"testing"

	"github.com/berthnet/berth/test/netnstest"
)

// TestMain sweeps the network namespaces of dead test processes: the lab
// images' programs run in namespaces of their own (netnstest.New).
func TestMain(m *testing.M) { netnstest.Main(m) }
