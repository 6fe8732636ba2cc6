package main

import (
	"slices"
	"strings"
	"testing"
)

func TestChoosePort(t *testing.T) {
	for _, c := range []struct {
		flag    int
		env     string
		want    int
		wantErr string
	}{
		{0, "", 8080, ""},
		{0, "9000", 9000, ""},
		{81, "9000", 81, ""}, // --port wins over $PORT
		{0, "http", 0, `PORT="http" is not a port number`},
		{0, "70000", 0, "port 70000 is out of 1-65535"},
		{-1, "", 0, "port -1 is out of 1-65535"},
	} {
		got, err := choosePort(c.flag, c.env)
		if c.wantErr != "" {
			if err == nil || err.Error() != c.wantErr {
				t.Errorf("choosePort(%d, %q) = %d, %v, want error %q", c.flag, c.env, got, err, c.wantErr)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("choosePort(%d, %q) = %d, %v, want %d", c.flag, c.env, got, err, c.want)
		}
	}
}

func TestEchoPorts(t *testing.T) {
	for _, c := range []struct {
		port    int
		list    string
		want    []int
		wantErr string
	}{
		{80, "", []int{80}, ""},
		{80, "81", []int{80, 81}, ""},
		{80, " 80, 81 ,81,", []int{80, 81}, ""},
		{80, "81,x", nil, `ECHO_PORTS: "x" is not a port`},
		{80, "0", nil, `ECHO_PORTS: "0" is not a port`},
	} {
		got, err := echoPorts(c.port, c.list)
		if c.wantErr != "" {
			if err == nil || err.Error() != c.wantErr {
				t.Errorf("echoPorts(%d, %q) = %v, %v, want error %q", c.port, c.list, got, err, c.wantErr)
			}
			continue
		}
		if err != nil || !slices.Equal(got, c.want) {
			t.Errorf("echoPorts(%d, %q) = %v, %v, want %v", c.port, c.list, got, err, c.want)
		}
	}
}

func TestPodFromEnv(t *testing.T) {
	env := map[string]string{
		"POD_NAME": "a", "POD_NAMESPACE": "ns", "POD_IP": "10.0.0.1",
		"POD_IPS": "10.0.0.1, fd00::1", "NODE_NAME": "n1", "ECHO_PORTS": "81",
	}
	p := podFromEnv(func(k string) string { return env[k] })
	if p.name != "a" || p.namespace != "ns" || p.ip != "10.0.0.1" || p.node != "n1" || p.echoPorts != "81" ||
		!slices.Equal(p.ips, []string{"10.0.0.1", "fd00::1"}) {
		t.Errorf("podFromEnv = %+v", p)
	}
	if p := podFromEnv(func(string) string { return "" }); p.ips != nil {
		t.Errorf("no POD_IPS: ips %q, want none", p.ips)
	}
}

func TestRunRefuses(t *testing.T) {
	for args, want := range map[string]string{
		"":                 "usage: berth-echo http|tcp|udp|multi",
		"ftp":              `no program "ftp": choose among http, tcp, udp, multi`,
		"http --port x":    `invalid value "x" for flag -port`,
		"http extra":       `unexpected arguments ["extra"]`,
		"tcp --port 65536": "port 65536 is out of 1-65535",
	} {
		err := run(strings.Fields(args))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("berth-echo %s: %v, want %q", args, err, want)
		}
	}
}
