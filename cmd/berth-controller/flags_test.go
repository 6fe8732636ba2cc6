package main

import (
	"flag"
	"io"
	"strings"
	"testing"
)

func TestEnvoyReplicasFlag(t *testing.T) {
	for _, tc := range []struct {
		arg  string
		want int32
		err  string
	}{
		{"--envoy-replicas=1", 1, ""},
		{"--envoy-replicas=5", 5, ""},
		{"--envoy-replicas=0", 0, "at least 1 Envoy"},
		{"--envoy-replicas=-3", 0, "at least 1 Envoy"},
		{"--envoy-replicas=two", 0, "not a whole number"},
		{"--envoy-replicas=3000000000", 0, "not a whole number"},
	} {
		var got int32
		fs := flag.NewFlagSet("berth-controller", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		fs.Var(replicasFlag{&got}, "envoy-replicas", "")
		err := fs.Parse([]string{tc.arg})
		switch {
		case tc.err == "" && (err != nil || got != tc.want):
			t.Errorf("%s: %d, %v; want %d", tc.arg, got, err, tc.want)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%s: error %v, want one saying %q", tc.arg, err, tc.err)
		case tc.err != "" && got != 0:
			t.Errorf("%s: refused but set %d", tc.arg, got)
		}
	}
}
