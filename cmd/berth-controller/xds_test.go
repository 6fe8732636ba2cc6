package main

import (
	"flag"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/berthnet/berth/xds/server"
)

func TestXDSLimitFlags(t *testing.T) {
	parse := func(args ...string) (*server.Limits, error) {
		fs := flag.NewFlagSet("berth-controller", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		l := xdsLimitFlags(fs)
		return l, fs.Parse(args)
	}
	l, err := parse()
	want := server.Limits{MaxRecvMsgBytes: 4 << 20, MaxStreamsPerConn: 8, MaxNodeBytes: 16 << 10, MaxConnsPerGroup: 64, MaxConnAge: 30 * time.Minute, MaxConnAgeGrace: time.Minute}
	if err != nil || *l != want {
		t.Errorf("defaults: %+v, %v; want %+v", *l, err, want)
	}
	l, err = parse("--xds-max-message-bytes=1048576", "--xds-max-streams-per-connection=2", "--xds-max-node-bytes=4096",
		"--xds-max-connections-per-group=500", "--xds-max-connection-age=2h", "--xds-max-connection-age-grace=10s")
	want = server.Limits{MaxRecvMsgBytes: 1 << 20, MaxStreamsPerConn: 2, MaxNodeBytes: 4096, MaxConnsPerGroup: 500, MaxConnAge: 2 * time.Hour, MaxConnAgeGrace: 10 * time.Second}
	if err != nil || *l != want {
		t.Errorf("set: %+v, %v; want %+v", *l, err, want)
	}
	for arg, msg := range map[string]string{
		"--xds-max-message-bytes=0":                  "from 1 to",
		"--xds-max-streams-per-connection=-1":        "from 1 to",
		"--xds-max-node-bytes=lots":                  "not a whole number",
		"--xds-max-connections-per-group=3e9":        "not a whole number",
		"--xds-max-connections-per-group=3000000000": "from 1 to",
		"--xds-max-connection-age=0s":                "longer than zero",
		"--xds-max-connection-age-grace=-5s":         "longer than zero",
		"--xds-max-connection-age=soon":              "invalid duration",
	} {
		if _, err := parse(arg); err == nil || !strings.Contains(err.Error(), msg) {
			t.Errorf("%s: %v, want an error saying %q", arg, err, msg)
		}
	}
}
