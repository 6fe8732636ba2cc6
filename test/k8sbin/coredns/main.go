// Command coredns is CoreDNS with only the plugins a cluster's Corefile uses
// (kubeadm's, and the lab's): the way CoreDNS documents a custom build
// without editing its plugin.cfg is a main that imports the plugins it wants
// and sets dnsserver.Directives, in the order of upstream's plugin.cfg, which
// is the order a query passes through them. Fewer plugins: a smaller binary
// built in less time. build-coredns.sh builds it into bin/node/coredns;
// hack/images wraps it as registry.k8s.io/coredns/coredns:<version>.
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/forward"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/hosts"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/loadbalance"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/loop"
	_ "github.com/coredns/coredns/plugin/metrics"
	_ "github.com/coredns/coredns/plugin/ready"
	_ "github.com/coredns/coredns/plugin/reload"
)

// directives are the plugins above by their Corefile names, in the order of
// upstream's plugin.cfg (core/dnsserver/zdirectives.go): a Corefile naming
// any other is refused with "unknown directive".
var directives = []string{
	"reload",
	"ready",
	"health",
	"prometheus",
	"errors",
	"log",
	"loadbalance",
	"cache",
	"hosts",
	"kubernetes",
	"loop",
	"forward",
}

func main() {
	dnsserver.Directives = directives
	coremain.Run()
}
