package controllers_test

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

const benchServices = 2000

// BenchmarkController2000Services creates 2,000 LoadBalancer Services at once
// through the real API server and waits until every one has an address. The
// baseline, measured in the same run against the same API server, creates
// 2,000 ClusterIP Services, which no controller touches: the ratio is what
// address management adds on top of the API server's own work.
func BenchmarkController2000Services(b *testing.B) {
	if b.N > 1 {
		b.Skip("one run is the measurement; use -benchtime 1x")
	}
	b.StopTimer()
	e := newLBEnv(b, map[string]string{"service-cluster-ip-range": "10.0.0.0/16"})
	e.startController()
	e.create(ippool("bench", "100.64.0.0/20"))
	e.namespace("base", nil)
	e.namespace("lb", nil)

	b.StartTimer()
	start := time.Now()
	createMany(b, e.c, "base", corev1.ServiceTypeClusterIP)
	baseline := time.Since(start)

	start = time.Now()
	createMany(b, e.c, "lb", corev1.ServiceTypeLoadBalancer)
	for {
		var l corev1.ServiceList
		if err := e.c.List(context.Background(), &l, client.InNamespace("lb")); err != nil {
			b.Fatal(err)
		}
		done := 0
		for _, s := range l.Items {
			if len(s.Status.LoadBalancer.Ingress) > 0 {
				done++
			}
		}
		if done == benchServices {
			break
		}
		if time.Since(start) > 5*time.Minute {
			b.Fatalf("only %d of %d Services got addresses in 5 minutes", done, benchServices)
		}
		time.Sleep(100 * time.Millisecond)
	}
	allocated := time.Since(start)
	b.StopTimer()

	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	b.ReportMetric(allocated.Seconds(), "s/2000-allocated")
	b.ReportMetric(baseline.Seconds(), "s/2000-baseline-created")
	b.ReportMetric(allocated.Seconds()/baseline.Seconds(), "ratio-to-baseline")
	b.ReportMetric(float64(rssBytes())/(1<<20), "MiB-rss")
	b.ReportMetric(float64(ms.HeapInuse)/(1<<20), "MiB-heap")
}

func createMany(b *testing.B, c client.Client, ns string, typ corev1.ServiceType) {
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < benchServices; i += 8 {
				s := lbService(ns, fmt.Sprintf("s%04d", i))
				s.Spec.Type = typ
				if typ == corev1.ServiceTypeLoadBalancer {
					s.Spec.AllocateLoadBalancerNodePorts = ptr.To(false)
				}
				if err := c.Create(context.Background(), s); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
}

// rssBytes is this process's resident set: the controller, plus the test's
// own client, not the API server or etcd, which run as their own processes.
func rssBytes() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}
