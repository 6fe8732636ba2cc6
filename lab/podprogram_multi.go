package lab

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// MultiEchoImage serves TCP and UDP echo on the pod's port and on every
// port listed in its ECHO_PORTS variable (comma-separated): the NetworkPolicy
// truth tables probe each pod on TCP and UDP 80 and 81.
const MultiEchoImage = "berth.dev/lab/multi-echo"

func multiEcho(ctx context.Context, port int) error {
	ports := []int{port}
	for _, p := range strings.Split(os.Getenv("ECHO_PORTS"), ",") {
		if p = strings.TrimSpace(p); p == "" {
			continue
		}
		n, err := strconv.Atoi(p)
		if err != nil {
			return fmt.Errorf("ECHO_PORTS: %q is not a port", p)
		}
		if n != port {
			ports = append(ports, n)
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make(chan error, 2*len(ports))
	for _, p := range ports {
		go func() { errs <- tcpEcho(ctx, p) }()
		go func() { errs <- udpEcho(ctx, p) }()
	}
	// The first server to stop ends the program (the runner restarts it).
	return <-errs
}
