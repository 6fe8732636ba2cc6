package podbench

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/berthnet/berth/lab/realnode/nodetest"
	"github.com/berthnet/berth/test/labtest"
)

// BenchmarkLabUp times `berthctl lab up` of real nodes with the lab's
// default topology and values (three nodes, the kubelet and containerd on
// each, Berth installed by helm, CoreDNS), under a name and LAN of its own
// (test/labtest), from the command's start until it returns, which is when
// every node is Ready, the agents and the controller are ready and DNS
// answers:
//
//   - s-up-cold: the first up of a lab name never used (a fresh state
//     folder under /run/berth-lab), right after its binaries and images
//     were built (labtest.Build, labtest.BuildImages): no node of it has
//     imported an image yet;
//   - s-up-warm: up again, same name and LAN, after a down.
//
// lab down removes the state folder, each node's containerd store with it,
// so a warm up imports every image again as well: what it reuses is the
// host's (page cache, the kernel's), nothing of the lab's. s-down is the
// down between them. Each up's steps are logged with their times.
func BenchmarkLabUp(b *testing.B) {
	in := labtest.BuildImages(b)
	l := labtest.New(b)
	args := []string{"lab", "up", "--name", l.Name, "--lan", l.LAN.String(), "--k8s-bin-dir", l.Bin.K8sDir,
		"--kubelet=true", "--node-bin-dir", in.NodeBinDir, "--images-dir", in.ImagesDir, "--chart", in.Chart, "--helm", in.Helm}
	down := func() (time.Duration, error) {
		start := time.Now()
		out, err := exec.Command(l.Bin.Berthctl, "lab", "down", "--name", l.Name).CombinedOutput()
		if err != nil {
			return 0, fmt.Errorf("lab down: %v\n%s", err, out)
		}
		return time.Since(start), nil
	}
	b.Cleanup(func() {
		if _, err := down(); err != nil {
			b.Error(err)
		}
		if left := l.Leftovers(); len(left) > 0 {
			b.Errorf("lab %s left behind: %v", l.Name, left)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	cold := timedUp(ctx, b, l.Bin.Berthctl, args)
	d, err := down()
	nodetest.Must(b, err)
	warm := timedUp(ctx, b, l.Bin.Berthctl, args)
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(cold.Seconds(), "s-up-cold")
	b.ReportMetric(warm.Seconds(), "s-up-warm")
	b.ReportMetric(d.Seconds(), "s-down")
}

// timedUp runs berthctl lab up and logs each line it prints with the time
// since the start.
func timedUp(ctx context.Context, b *testing.B, berthctl string, args []string) time.Duration {
	b.Helper()
	cmd := exec.CommandContext(ctx, berthctl, args...)
	r, w := io.Pipe()
	cmd.Stdout, cmd.Stderr = w, w
	var log strings.Builder
	lines := make(chan struct{})
	start := time.Now()
	go func() {
		defer close(lines)
		s := bufio.NewScanner(r)
		for s.Scan() {
			fmt.Fprintf(&log, "%6.1fs %s\n", time.Since(start).Seconds(), s.Text())
		}
	}()
	err := cmd.Run()
	took := time.Since(start)
	w.Close()
	<-lines
	if err != nil {
		b.Fatalf("lab up: %v\n%s", err, log.String())
	}
	b.Logf("lab up in %.1f s:\n%s", took.Seconds(), log.String())
	return took
}
