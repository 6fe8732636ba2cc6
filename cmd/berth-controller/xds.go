package main

import (
	"flag"
	"fmt"
	"math"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/berthnet/berth/xds/bootstrap"
	"github.com/berthnet/berth/xds/pki"
	"github.com/berthnet/berth/xds/provision"
	"github.com/berthnet/berth/xds/server"
)

// serverNames are the names the xDS server certificate carries: those
// given, else the --xds-address host with the short and long forms of its
// Service name (berth-xds, berth-xds.berth-system, ...svc, ...svc.cluster.local).
func serverNames(address string, given []string) pki.ServerNames {
	var n pki.ServerNames
	add := func(s string) {
		if ip := net.ParseIP(s); ip != nil {
			n.IPs = append(n.IPs, ip)
		} else if s != "" {
			n.DNSNames = append(n.DNSNames, s)
		}
	}
	if len(given) > 0 {
		for _, s := range given {
			add(s)
		}
		return n
	}
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		host = address
	}
	add(host)
	if parts := strings.Split(strings.TrimSuffix(host, ".cluster.local"), "."); net.ParseIP(host) == nil && len(parts) >= 2 {
		svc, ns := parts[0], parts[1]
		for _, s := range []string{svc, svc + "." + ns, svc + "." + ns + ".svc", svc + "." + ns + ".svc.cluster.local"} {
			if s != host {
				add(s)
			}
		}
	}
	return n
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// replicasFlag is a flag.Value for a replica count of at least 1: a
// negative count would only fail later, at every fleet's Deployment.
type replicasFlag struct{ p *int32 }

func (f replicasFlag) String() string {
	if f.p == nil {
		return "0"
	}
	return strconv.Itoa(int(*f.p))
}

func (f replicasFlag) Set(s string) error {
	v, err := strconv.ParseInt(s, 10, 32)
	if err != nil {
		return fmt.Errorf("%q is not a whole number", s)
	}
	if v < 1 {
		return fmt.Errorf("%d: each fleet needs at least 1 Envoy (delete the Gateway to remove its fleet)", v)
	}
	*f.p = int32(v)
	return nil
}

// bootstrapFor renders the bootstrap of a node group's Envoys: ADS to the
// xDS Service at address with the client certificate the fleet's Secret
// mounts, admin on loopback, readiness on provision.ReadyPort.
func bootstrapFor(address string) func(group string) ([]byte, error) {
	return func(group string) ([]byte, error) {
		host, port, err := net.SplitHostPort(address)
		if err != nil {
			return nil, fmt.Errorf("--xds-address %q: %w", address, err)
		}
		p, err := strconv.ParseUint(port, 10, 16)
		if err != nil {
			return nil, fmt.Errorf("--xds-address %q: port: %w", address, err)
		}
		return bootstrap.YAML(bootstrap.Options{
			Group: group, XDSHost: host, XDSPort: uint32(p),
			CertFile: provision.CertDir + "/tls.crt", KeyFile: provision.CertDir + "/tls.key", CAFile: provision.CertDir + "/ca.crt",
			ReadyPort: provision.ReadyPort,
		})
	}
}

// xdsLimitFlags registers the xDS server's limits (docs/xds.md) on fs, each
// with its default, and returns them as parsed.
func xdsLimitFlags(fs *flag.FlagSet) *server.Limits {
	l := &server.Limits{
		MaxRecvMsgBytes: server.DefaultMaxRecvMsgBytes, MaxStreamsPerConn: server.DefaultMaxStreamsPerConn,
		MaxNodeBytes: server.DefaultMaxNodeBytes, MaxConnsPerGroup: server.DefaultMaxConnsPerGroup,
		MaxConnAge: server.DefaultMaxConnAge, MaxConnAgeGrace: server.DefaultMaxConnAgeGrace,
	}
	fs.Var(positive[int]{&l.MaxRecvMsgBytes}, "xds-max-message-bytes", "largest xDS request a client may send, in bytes")
	fs.Var(positive[uint32]{&l.MaxStreamsPerConn}, "xds-max-streams-per-connection", "concurrent xDS streams per connection (HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS)")
	fs.Var(positive[int]{&l.MaxNodeBytes}, "xds-max-node-bytes", "largest node id, cluster and metadata an xDS client may send, in bytes; a larger node's stream is refused")
	fs.Var(positive[int]{&l.MaxConnsPerGroup}, "xds-max-connections-per-group", "open xDS connections per node group (per fleet client certificate); one more is closed after its handshake")
	fs.Var(positiveDuration{&l.MaxConnAge}, "xds-max-connection-age", "xDS connections are closed at this age (±10%), so Envoys reconnect with their current certificate")
	fs.Var(positiveDuration{&l.MaxConnAgeGrace}, "xds-max-connection-age-grace", "time an xDS connection past its age has before it is closed (for its Envoy to reconnect)")
	return l
}

// positive is a flag.Value for a whole number of at least 1: the xDS
// limits have no "unlimited".
type positive[T int | uint32] struct{ p *T }

func (f positive[T]) String() string {
	if f.p == nil {
		return "0"
	}
	return strconv.FormatUint(uint64(*f.p), 10)
}

func (f positive[T]) Set(s string) error {
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return fmt.Errorf("%q is not a whole number", s)
	}
	if v < 1 || v > math.MaxInt32 {
		return fmt.Errorf("%d: give a number from 1 to %d", v, math.MaxInt32)
	}
	*f.p = T(v)
	return nil
}

// positiveDuration is a flag.Value for a duration longer than zero.
type positiveDuration struct{ p *time.Duration }

func (f positiveDuration) String() string {
	if f.p == nil {
		return "0s"
	}
	return f.p.String()
}

func (f positiveDuration) Set(s string) error {
	d, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	if d <= 0 {
		return fmt.Errorf("%s: give a duration longer than zero", s)
	}
	*f.p = d
	return nil
}
