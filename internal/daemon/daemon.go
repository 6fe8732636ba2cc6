// Package daemon holds what Berth's long-running binaries share: their common
// flags, logger, version flag and API scheme.
package daemon

import (
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrl "sigs.k8s.io/controller-runtime"
	crcache "sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/berthnet/berth/internal/version"
)

// Options are the flags every Berth daemon takes.
type Options struct {
	MetricsAddr string
	ProbeAddr   string
	PprofAddr   string
	showVersion bool
	zap         zap.Options
}

// Bind registers the flags on fs with the daemon's default ports.
func (o *Options) Bind(fs *flag.FlagSet, metricsAddr, probeAddr string) {
	fs.StringVar(&o.MetricsAddr, "metrics-bind-address", metricsAddr, "where Prometheus metrics are served; 0 turns them off")
	fs.StringVar(&o.ProbeAddr, "health-probe-bind-address", probeAddr, "where /healthz and /readyz are served")
	fs.StringVar(&o.PprofAddr, "pprof-bind-address", "", "where Go's pprof profiles are served (empty: off); for diagnosing CPU and memory")
	fs.BoolVar(&o.showVersion, "version", false, "print the version and exit")
	o.zap.BindFlags(fs)
}

// Start prints the version and reports done when --version was given;
// otherwise it installs the logger and logs the start.
func (o *Options) Start(name string, out io.Writer, kv ...any) (log logr.Logger, done bool) {
	if o.showVersion {
		fmt.Fprintln(out, name, version.Get())
		return logr.Discard(), true
	}
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&o.zap)))
	log = ctrl.Log.WithName(name)
	log.Info("starting", append([]any{"version", version.Get().String()}, kv...)...)
	return log, false
}

// Scheme is the Kubernetes built-in types plus whatever groups are added.
func Scheme(groups ...func(*runtime.Scheme) error) (*runtime.Scheme, error) {
	s := runtime.NewScheme()
	for _, add := range append([]func(*runtime.Scheme) error{clientgoscheme.AddToScheme}, groups...) {
		if err := add(s); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// Main runs a daemon's run function and exits non-zero, naming the daemon,
// when it fails.
func Main(name string, run func() error) {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, name+":", err)
		os.Exit(1)
	}
}

// NewManager builds a controller-runtime manager from the kubeconfig
// (--kubeconfig, or in-cluster) with the scheme's groups, the daemon's
// metrics and probe addresses, and a liveness check. extra sets the rest
// (leader election, cache options).
func (o *Options) NewManager(extra ctrl.Options, groups ...func(*runtime.Scheme) error) (ctrl.Manager, error) {
	scheme, err := Scheme(groups...)
	if err != nil {
		return nil, err
	}
	cfg, err := ctrl.GetConfig()
	if err != nil {
		return nil, fmt.Errorf("kubeconfig: %w", err)
	}
	extra.Scheme = scheme
	if extra.Cache.DefaultTransform == nil {
		// Field-manager bookkeeping is a good part of every object and
		// neither component reads it; the informers keep objects without it.
		extra.Cache.DefaultTransform = crcache.TransformStripManagedFields()
	}
	extra.Metrics = metricsserver.Options{BindAddress: o.MetricsAddr}
	extra.HealthProbeBindAddress = o.ProbeAddr
	extra.PprofBindAddress = o.PprofAddr
	mgr, err := ctrl.NewManager(cfg, extra)
	if err != nil {
		return nil, fmt.Errorf("manager: %w", err)
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return nil, err
	}
	return mgr, nil
}
