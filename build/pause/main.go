// Command pause is the lab's pod sandbox image: the process that holds a pod's
// namespaces. It sleeps until SIGINT or SIGTERM and, as PID 1 of the pod, reaps
// the children that end up with it. It is static (CGO_ENABLED=0) and has no
// flags; hack/images wraps it as the image `<registry>/pause`.
package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "--version" {
		fmt.Println("berth-pause")
		return
	}
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	// Said once the handler is in place: a SIGTERM before it would end the
	// process by the runtime's default action, with a non-zero status.
	fmt.Fprintln(os.Stderr, "berth-pause: waiting for SIGTERM or SIGINT")
	for s := range sigs {
		if s != syscall.SIGCHLD {
			return
		}
		for {
			pid, err := syscall.Wait4(-1, nil, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}
