package controllers

import (
	"math/big"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/berthnet/berth/ipam"
)

// ipamMetrics are the address manager's metrics. They are created per
// controller and registered by the caller, never in a global registry.
type ipamMetrics struct {
	addresses *prometheus.GaugeVec
	failures  *prometheus.CounterVec
}

func newIPAMMetrics() *ipamMetrics {
	return &ipamMetrics{
		addresses: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "berth_controller_ipam_addresses",
			Help: "Addresses of each IPPool by family and state (capacity, in_use, available).",
		}, []string{"pool", "family", "state"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "berth_controller_ipam_allocation_failures_total",
			Help: "Services that could not get an address, by reason.",
		}, []string{"reason"}),
	}
}

// Collectors lists the metrics for registration.
func (m *ipamMetrics) Collectors() []prometheus.Collector {
	return []prometheus.Collector{m.addresses, m.failures}
}

// setPools replaces the per-pool gauges with the allocator's reports.
func (m *ipamMetrics) setPools(reports []ipam.PoolReport) {
	m.addresses.Reset()
	for _, r := range reports {
		for f, u := range r.Usage {
			fam := "ipv4"
			if f == ipam.IPv6 {
				fam = "ipv6"
			}
			m.addresses.WithLabelValues(r.Name, fam, "capacity").Set(bigFloat(u.Capacity))
			m.addresses.WithLabelValues(r.Name, fam, "in_use").Set(float64(u.InUse))
			m.addresses.WithLabelValues(r.Name, fam, "available").Set(bigFloat(u.Available))
		}
	}
}

func bigFloat(b *big.Int) float64 {
	f, _ := new(big.Float).SetInt(b).Float64()
	return f
}
