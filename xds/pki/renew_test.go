package pki

import (
	"net"
	"testing"
	"time"
)

// TestRenewalSequence walks one CA and its certificates through their lives.
func TestRenewalSequence(t *testing.T) {
	ca := newTestCA(t)
	names := ServerNames{DNSNames: []string{"berth-xds.berth-system.svc"}, IPs: []net.IP{net.ParseIP("10.96.0.20")}}
	life := 90 * 24 * time.Hour
	srv, err := ca.IssueServer(names, t0, life)
	if err != nil {
		t.Fatal(err)
	}
	cli, err := ca.IssueClient("ingress/berth", t0, life)
	if err != nil {
		t.Fatal(err)
	}
	// NotBefore is backdated by 5 minutes: the lifetime is life+5m, renewal at NotAfter - (life+5m)/3.
	due := srv.Cert.NotAfter.Add(-(life + backdate) / 3)

	steps := []struct {
		name  string
		check func() Decision
		renew bool
	}{
		{"fresh CA", func() Decision { return CheckCA(ca.Cert, t0) }, false},
		{"fresh server", func() Decision { return CheckServer(srv.Cert, ca.Cert, names, t0) }, false},
		{"fresh client", func() Decision { return CheckClient(cli.Cert, ca.Cert, "ingress/berth", t0) }, false},
		{"server just before due", func() Decision { return CheckServer(srv.Cert, ca.Cert, names, due.Add(-time.Second)) }, false},
		{"server due", func() Decision { return CheckServer(srv.Cert, ca.Cert, names, due) }, true},
		{"client expired", func() Decision { return CheckClient(cli.Cert, ca.Cert, "ingress/berth", t0.Add(life)) }, true},
		{"server names changed", func() Decision {
			return CheckServer(srv.Cert, ca.Cert, ServerNames{DNSNames: names.DNSNames, IPs: []net.IP{net.ParseIP("10.96.0.21")}}, t0)
		}, true},
		{"server names reordered", func() Decision {
			return CheckServer(srv.Cert, ca.Cert, ServerNames{DNSNames: names.DNSNames, IPs: []net.IP{net.ParseIP("10.96.0.20").To16()}}, t0)
		}, false},
		{"client for another group", func() Decision { return CheckClient(cli.Cert, ca.Cert, "ingress/other", t0) }, true},
		{"client missing", func() Decision { return CheckClient(nil, ca.Cert, "ingress/berth", t0) }, true},
		{"client signed by an older CA", func() Decision {
			newCA := newTestCA(t)
			return CheckClient(cli.Cert, newCA.Cert, "ingress/berth", t0)
		}, true},
		{"CA due after 2/3 of its life", func() Decision { return CheckCA(ca.Cert, RenewAt(ca.Cert)) }, true},
		{"not yet valid", func() Decision { return CheckCA(ca.Cert, t0.Add(-time.Hour)) }, true},
	}
	for _, s := range steps {
		d := s.check()
		if d.Renew != s.renew {
			t.Errorf("%s: Renew = %v (%s), want %v", s.name, d.Renew, d.Reason, s.renew)
		}
		if d.Renew && d.Reason == "" {
			t.Errorf("%s: renewal without a reason", s.name)
		}
	}
	if !DueForRenewal(srv.Cert, due) || DueForRenewal(srv.Cert, due.Add(-time.Nanosecond)) {
		t.Error("DueForRenewal disagrees with RenewAt")
	}
	if d := CheckServer(srv.Cert, ca.Cert, names, t0); !d.At.Equal(due) {
		t.Errorf("At = %s, want %s", d.At, due)
	}
}
