package echo

import (
	"slices"
	"testing"
)

func TestPorts(t *testing.T) {
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
		got, err := Ports(c.port, c.list)
		if c.wantErr != "" {
			if err == nil || err.Error() != c.wantErr {
				t.Errorf("Ports(%d, %q) = %v, %v, want error %q", c.port, c.list, got, err, c.wantErr)
			}
			continue
		}
		if err != nil || !slices.Equal(got, c.want) {
			t.Errorf("Ports(%d, %q) = %v, %v, want %v", c.port, c.list, got, err, c.want)
		}
	}
}

func TestFromEnv(t *testing.T) {
	env := map[string]string{
		"POD_NAME": "a", "POD_NAMESPACE": "ns", "POD_IP": "10.0.0.1",
		"POD_IPS": "10.0.0.1, fd00::1", "NODE_NAME": "n1", "ECHO_PORTS": "81",
	}
	p := FromEnv(func(k string) string { return env[k] })
	if p.name != "a" || p.namespace != "ns" || p.ip != "10.0.0.1" || p.node != "n1" || p.echoPorts != "81" ||
		!slices.Equal(p.ips, []string{"10.0.0.1", "fd00::1"}) {
		t.Errorf("podFromEnv = %+v", p)
	}
	if p := FromEnv(func(string) string { return "" }); p.ips != nil {
		t.Errorf("no POD_IPS: ips %q, want none", p.ips)
	}
}
